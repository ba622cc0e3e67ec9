"""A pruning mask: which entries of which parameters are kept, and the hooks that keep the rest at zero.

A :class:`Mask` maps full parameter names (as in ``model.named_parameters()``) to bool tensors of the
same shape, ``True`` meaning *kept*.  It is a read-only ``Mapping`` so it can be iterated, saved with
:meth:`Mask.state_dict` and checked against a model before use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Iterator

import torch
from torch import nn

from ..errors import CheckpointError, SparsehaloError
from ..measure.sparsity import count_nonzero
from ..selection import strip_wrapper_prefixes, unwrap
from . import torchprune


class MaskHandle:
    """The hooks installed by :meth:`Mask.enforce`; :meth:`remove` uninstalls all of them."""

    def __init__(self, handles: list) -> None:
        self._handles = list(handles)

    def remove(self) -> None:
        """Remove every gradient and optimizer hook (safe to call twice)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __len__(self) -> int:
        return len(self._handles)

    def __enter__(self) -> "MaskHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


class TensorMapping(Mapping):
    """A read-only mapping ``{name: tensor}`` over ``self._masks`` (the masks' shared protocol)."""

    _masks: dict[str, torch.Tensor]

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)


class Mask(TensorMapping):
    """Bool keep-masks keyed by full parameter name.

    Args:
        masks: ``{name: bool tensor}``; ``True`` marks an entry that is kept.

    Raises:
        SparsehaloError: if a value is not a bool tensor.
    """

    def __init__(self, masks: Mapping[str, torch.Tensor], aliases: Mapping[str, tuple[str, ...]] | None = None) -> None:
        #: ``{name: (other names of the same tied tensor, ...)}`` for the masked tensors that have some
        self.aliases: dict[str, tuple[str, ...]] = {n: tuple(a) for n, a in (aliases or {}).items() if n in masks and a}
        self._masks: dict[str, torch.Tensor] = {}
        for name, m in masks.items():
            if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
                got = m.dtype if isinstance(m, torch.Tensor) else type(m).__name__
                raise SparsehaloError(f"mask for {name} must be a torch.bool tensor, got {got}")
            self._masks[str(name)] = m

    def __eq__(self, other: object) -> bool:
        # Mapping.__eq__ would call bool() on an element-wise tensor comparison and fail.
        if not isinstance(other, Mapping) or set(self) != set(other):
            return False
        return all(
            isinstance(other[n], torch.Tensor)
            and other[n].shape == m.shape
            and torch.equal(m.cpu(), other[n].cpu())
            for n, m in self._masks.items()
        )

    __hash__ = None  # mutable contents, like dict

    def __repr__(self) -> str:
        return f"Mask({len(self)} tensors, {self.num_kept:,}/{self.num_total:,} kept, sparsity {self.sparsity:.4f})"

    # Counts -----------------------------------------------------------------------------------------
    @property
    def num_total(self) -> int:
        """Number of entries covered by the mask."""
        return sum(m.numel() for m in self._masks.values())

    @property
    def num_kept(self) -> int:
        """Number of kept (``True``) entries."""
        return count_nonzero(self._masks)[1]

    @property
    def num_pruned(self) -> int:
        """Number of pruned (``False``) entries."""
        return self.num_total - self.num_kept

    @property
    def sparsity(self) -> float:
        """Pruned / total entries (0.0 for an empty mask)."""
        total = self.num_total
        return self.num_pruned / total if total else 0.0

    @property
    def empty_layers(self) -> list[str]:
        """Names of non-empty tensors whose every entry is pruned."""
        return [n for n, m in self._masks.items() if m.numel() and not bool(m.any())]

    def layer_stats(self) -> list[dict]:
        """Per-tensor counts: ``name``, ``shape``, ``total``, ``kept``, ``pruned``, ``sparsity``."""
        stats = []
        for name, m in self._masks.items():
            total, kept = count_nonzero([m])
            stats.append(
                {
                    "name": name,
                    "shape": _shape(m),
                    "total": total,
                    "kept": kept,
                    "pruned": total - kept,
                    "sparsity": (total - kept) / total if total else 0.0,
                }
            )
        return stats

    # Model interaction ------------------------------------------------------------------------------
    def check(self, model: nn.Module) -> None:
        """Verify that every mask names a parameter of ``model`` with the same shape.

        Raises:
            CheckpointError: naming the unknown parameters or the first shape mismatch.
        """
        self._params(model)

    def _params(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """``{mask name: the model's parameter}``: any alias of a tied tensor, wrapper prefixes ignored."""
        params = dict(unwrap(model).named_parameters(remove_duplicate=False))
        found, missing = {}, []
        for name in self._masks:
            plain = name if name in params else next(iter(strip_wrapper_prefixes({name: None})))
            if plain not in params and f"{plain}_orig" in params:
                plain = f"{plain}_orig"  # a layer reparametrized by torch.nn.utils.prune (see from_torch_prune)
            if plain in params:
                found[name] = params[plain]
            else:
                missing.append(name)
        if missing:
            raise CheckpointError(f"mask names parameter(s) the model lacks: {', '.join(missing)}")
        for name, m in self._masks.items():
            if found[name].shape != m.shape:
                raise CheckpointError(
                    f"mask for {name} has shape {_shape(m)} but the parameter has shape {_shape(found[name])}"
                )
        return found

    def _bound(self, model: nn.Module) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """Pair each masked parameter with its mask moved to the parameter's device."""
        return [(p, self._masks[n].to(p.device)) for n, p in self._params(model).items()]

    def apply(self, model: nn.Module) -> None:
        """Zero the pruned entries of ``model`` in place (the Parameter objects stay the same).

        Raises:
            CheckpointError: if the mask does not match the model.
        """
        with torch.no_grad():
            for p, m in self._bound(model):
                p.masked_fill_(~m, 0)

    def enforce(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> MaskHandle:
        """Keep the pruned entries exactly zero during further training.

        Applies the mask now, then installs gradient hooks that zero the gradient of pruned entries.
        With ``optimizer``, a step post hook re-applies the mask and zeros the pruned entries of
        per-entry optimizer state (``momentum_buffer``, Adam moments, ...), because momentum from before
        pruning and weight decay would otherwise move pruned weights off zero.

        Args:
            model: the network the mask was made for.
            optimizer: the optimizer training ``model``, if any.

        Returns:
            A :class:`MaskHandle`; call ``remove()`` to stop enforcing.
        """
        bound = self._bound(model)
        with torch.no_grad():
            for p, m in bound:
                p.masked_fill_(~m, 0)
        handles = []
        for p, m in bound:
            if p.requires_grad:
                handles.append(p.register_hook(lambda g, m=m: g.masked_fill(~m, 0)))
        if optimizer is not None:

            def _after_step(opt, args, kwargs) -> None:
                with torch.no_grad():
                    for p, m in bound:
                        p.masked_fill_(~m, 0)
                        for value in opt.state.get(p, {}).values():
                            # Any state tensor shaped like the parameter is per-entry state.
                            if isinstance(value, torch.Tensor) and value.shape == p.shape:
                                value.masked_fill_(~m.to(value.device), 0)

            handles.append(optimizer.register_step_post_hook(_after_step))
        return MaskHandle(handles)

    # torch.nn.utils.prune ------------------------------------------------------------------------------
    def to_torch_prune(self, model: nn.Module) -> list[str]:
        """Apply the mask as ``torch.nn.utils.prune.custom_from_mask`` reparametrizations (``weight_orig``,
        ``weight_mask``), in every module that uses a tied tensor; returns the names pruned, one per use.

        ``prune.remove(module, "weight")`` afterwards leaves the weights :meth:`apply` gives.

        Raises:
            CheckpointError: if the mask does not match the model (nothing is changed then).
        """
        return torchprune.to_torch_prune(self._masks, model)

    @classmethod
    def from_torch_prune(cls, model: nn.Module) -> "Mask":
        """The mask of the layers ``torch.nn.utils.prune`` reparametrized, keyed ``layer.weight`` (not
        ``weight_orig``; wrappers looked through); a tied tensor once, with ``aliases``.

        Raises:
            SparsehaloError: a tied tensor pruned in one use but not, or differently, in another.
        """
        masks, tied = torchprune.from_torch_prune(model)
        return cls(masks, tied)

    # Persistence ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Return ``{name: bool tensor}`` (the mask's own tensors, suitable for ``torch.save``)."""
        return dict(self._masks)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> "Mask":
        """Rebuild a mask saved with :meth:`state_dict`.

        Raises:
            CheckpointError: if ``state`` is not a mapping of bool tensors.
        """
        if not isinstance(state, Mapping):
            raise CheckpointError(f"mask state must be a dict of bool tensors, got {type(state).__name__}")
        try:
            return cls(state)
        except SparsehaloError as e:
            raise CheckpointError(str(e)) from None

    def to(self, device: torch.device | str) -> "Mask":
        """Return a copy of the mask with every tensor on ``device``."""
        return Mask({n: m.to(device) for n, m in self._masks.items()}, self.aliases)
