"""The :class:`Penalty` base class shared by every shrinkage penalty.

A penalty is an ``nn.Module`` so that its own trainable state (HALO's scales) moves with ``.to()``,
lives in ``state_dict`` and gets its own optimizer parameter group.  It does *not* own the network
parameters it penalizes: it keeps references to them, so ``model.parameters()`` and
``penalty.parameters()`` never overlap.

Typical use (three lines in a user's loop)::

    penalty = sparsehalo.HALO.for_model(model, xi=1e-4, psi=1e-4)
    opt = torch.optim.SGD([{"params": model.parameters()}, *penalty.param_groups(lr=0.1)],
                          lr=0.1, momentum=0.9)
    loss = F.cross_entropy(model(x), y) + penalty()

Each penalty class states its settings once, as an ``Options`` dataclass (type, default and help of
every keyword its constructor takes, like a method's ``Options``); the config reads and checks a
penalty's settings against it, by the penalty's name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..selection import check_partition, select_parameters, summarize, unwrap
from .kernels.fused import fused as fused_apply

#: the keywords of :meth:`Penalty.for_model` that choose the parameters (not the penalty's settings)
SELECTION_KEYS = ("types", "biases", "include", "exclude", "embeddings")


def scale_key(name: str) -> str:
    """State-dict-safe key for a parameter name (``nn.ParameterDict`` keys cannot hold dots)."""
    return name.replace(".", "__")


def option(default: Any, help: str, *, stored_as: str | None = None) -> Any:
    """A field of a penalty's ``Options``.

    Args:
        default: the value the penalty uses when the setting is not given.
        help: one line for ``--help`` and the config reference.
        stored_as: the key the setting is written under in ``config.json`` and the config hash, when
            that differs from its name (an old spelling kept so that old runs keep their hash).
    """
    meta = {"help": help} if stored_as is None else {"help": help, "stored_as": stored_as}
    return dataclasses.field(default=default, metadata=meta)


def scale_summary(scales: Iterable[torch.Tensor]) -> dict[str, float]:
    """``scale_min`` / ``scale_median`` / ``scale_mean`` / ``scale_max`` of ``|lambda|`` over ``scales``."""
    flat = torch.cat([lam.detach().abs().flatten() for lam in scales])
    return {
        "scale_min": flat.min().item(),
        "scale_median": flat.median().item(),
        "scale_mean": flat.mean().item(),
        "scale_max": flat.max().item(),
    }


class Penalty(nn.Module):
    """Base class: a scalar function of a fixed, named set of network parameters.

    Subclasses set ``name`` and ``Options`` (their settings: the keywords of their constructor) and
    implement :meth:`reference` (returning a 0-dim tensor), optionally :meth:`kernel_call` for the
    fused fast path; they may own trainable parameters (their *scales*), which
    :meth:`param_groups` hands to the optimizer.

    Args:
        params: ``{name: parameter}`` to penalize, usually from :meth:`for_model`.
        xi: strength of the weight penalty (>= 0).
        scale_weight_decay: weight decay applied to the penalty's own trainable scales in the
            optimizer group returned by :meth:`param_groups`. Default 0: the scales are governed by
            the hyper-penalty alone (sharing the network's weight decay silently changes the method).
    """

    name: str = "penalty"
    #: use the fused kernel (see :mod:`sparsehalo.penalties.kernels`) when the class has one;
    #: set ``penalty.fused = False`` to run the plain autograd :meth:`reference` instead.
    fused: bool = True
    #: whether an empty selection is an error (not for the zero penalty)
    needs_params: bool = True

    @dataclasses.dataclass
    class Options:
        """The penalty's settings (none here)."""

    @classmethod
    def option_fields(cls) -> tuple[dataclasses.Field, ...]:
        """The fields of :attr:`Options`: every setting with its type, default and help."""
        return dataclasses.fields(cls.Options)

    @classmethod
    def check_settings(cls, keys: Iterable[str]) -> None:
        """Raise for a setting this penalty does not take.

        Raises:
            ConfigError: naming the penalty, the key and the settings it does take.
        """
        known = [f.name for f in cls.option_fields()]
        aliases = [f.metadata["stored_as"] for f in cls.option_fields() if "stored_as" in f.metadata]
        unknown = [k for k in keys if k not in known and k not in aliases]
        if unknown:
            takes = ", ".join(known) if known else "no settings"
            raise ConfigError(f"penalty {cls.name!r} has no setting {unknown[0]!r}; it takes: {takes}")

    def __init__(self, params: Mapping[str, torch.Tensor], *, xi: float = 0.0, scale_weight_decay: float = 0.0):
        super().__init__()
        if not params:
            raise ConfigError(f"{type(self).__name__}: the selection of parameters to penalize is empty")
        if xi < 0:
            raise ConfigError(f"{type(self).__name__}: xi must be >= 0, got {xi}")
        if scale_weight_decay < 0:
            raise ConfigError(f"{type(self).__name__}: scale_weight_decay must be >= 0, got {scale_weight_decay}")
        self.xi = float(xi)
        self.scale_weight_decay = float(scale_weight_decay)
        self.names: tuple[str, ...] = tuple(params)
        # A plain tuple is not registered by nn.Module: the penalty references, but does not own,
        # the network's parameters.
        self._static_targets: tuple[torch.Tensor, ...] = tuple(params.values())
        self._owners: tuple[tuple[nn.Module, str], ...] | None = None

    @property
    def _targets(self) -> tuple[torch.Tensor, ...]:
        """The penalized tensors: the owning modules' *current* parameters once :meth:`follow` was called."""
        if self._owners is None:
            return self._static_targets
        return tuple(module._parameters[attr] for module, attr in self._owners)

    def follow(self, model: nn.Module) -> "Penalty":
        """Look the penalized tensors up in ``model``'s modules at every call, by name.

        So the penalty keeps acting on the model's parameters after ``model.to_empty(device=...)``,
        ``load_state_dict(..., assign=True)`` or ``.to()`` replace them (:meth:`for_model` calls this).
        The owners are kept in a plain tuple, so the model is not registered as a submodule.

        Raises:
            ConfigError: if a penalized name is not a parameter of ``model``.
        """
        model = unwrap(model)
        owners = []
        for name in self.names:
            owner, _, attr = name.rpartition(".")
            try:
                module = model.get_submodule(owner) if owner else model
            except AttributeError:
                module = None
            if module is None or attr not in module._parameters:
                raise ConfigError(f"{type(self).__name__}: {name} is not a parameter of the model it should follow")
            owners.append((module, attr))
        self._owners = tuple(owners)
        return self

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        *,
        types: Sequence[str | type] | None = None,
        biases: bool = False,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        embeddings: bool = False,
        **kwargs: Any,
    ) -> "Penalty":
        """Penalize the parameters of ``model`` chosen by :func:`sparsehalo.selection.select_parameters`.

        Args:
            model: the network (plain, ``torch.compile``-d or DDP-wrapped: names are the plain model's).
            types: restrict to these module classes (``isinstance``); default every weight matrix or
                kernel (Linear-/Conv-like weights, attention projections).
            biases: penalize biases as well as weights.
            include: ``fnmatch`` patterns; if given, only matching parameter names are penalized.
            exclude: ``fnmatch`` patterns of parameter names left alone.
            embeddings: penalize embedding tables too.
            **kwargs: the penalty's own settings (``xi``, ``psi``, ...: see its ``Options``).

        Raises:
            ConfigError: for a setting the penalty does not take, or an empty selection.
        """
        cls.check_settings(kwargs)
        params = select_parameters(model, types=types, biases=biases, include=include, exclude=exclude,
                                   embeddings=embeddings)
        if not params and cls.needs_params:
            raise ConfigError(f"{cls.__name__}: the selection of parameters to penalize is empty "
                              f"({summarize(model, params)})")
        return cls(params, **kwargs).follow(model)

    # -- value -------------------------------------------------------------------------------
    def forward(self) -> torch.Tensor:
        """The penalty value (a 0-dim tensor), differentiable in the weights and scales."""
        call = self.kernel_call() if self.fused else None
        if call is None:
            return self.reference()
        kernel, tensors, consts = call
        return fused_apply(kernel, tensors, consts)

    def reference(self) -> torch.Tensor:
        """The plain autograd formulation (the definition the fast path is tested against)."""
        raise NotImplementedError

    def kernel_call(self):
        """``(kernel, tensors, consts)`` for the fused fast path, or None where there is none."""
        return None

    # -- what is penalized -------------------------------------------------------------------
    def penalized(self) -> dict[str, torch.Tensor]:
        """``{name: parameter}`` of the network tensors this penalty acts on (a tied tensor once)."""
        return dict(zip(self.names, self._targets))

    def summary(self, model: nn.Module) -> str:
        """One line: tensors and entries penalized / left out of ``model`` (warns about large ones left out)."""
        return summarize(model, self.penalized(), "penalized")

    def check_partition(self, model: nn.Module) -> None:
        """Assert that penalized / not penalized covers every parameter of ``model`` exactly once."""
        ids = {id(p) for p in self._targets}
        check_partition(
            model,
            {
                "penalized": list(self._targets),
                "not penalized": [p for p in model.parameters() if id(p) not in ids],
            },
        )

    # -- optimization ------------------------------------------------------------------------
    def param_groups(self, lr: float | None = None, momentum: float | None = None, **options: Any) -> list[dict]:
        """Optimizer parameter groups for the penalty's trainable scales ([] when it has none).

        The group's weight decay is :attr:`scale_weight_decay` (explicit, default 0), never the
        optimizer's default.  ``lr`` / ``momentum`` / other options default to the optimizer's.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return []
        group: dict[str, Any] = {"params": params, "weight_decay": self.scale_weight_decay, "name": f"penalty:{self.name}"}
        if lr is not None:
            group["lr"] = lr
        if momentum is not None:
            group["momentum"] = momentum
        group.update(options)
        return [group]

    def stats(self) -> dict[str, float]:
        """Summary numbers for logging (host values; call once per epoch, not per step)."""
        return {}

    def extra_repr(self) -> str:
        n = sum(t.numel() for t in self._targets)
        return f"xi={self.xi:g}, tensors={len(self.names)}, penalized_entries={n:,}"


class NoPenalty(Penalty):
    """The zero penalty (dense training), with the same interface."""

    name = "none"
    needs_params = False

    def __init__(self, params: Mapping[str, torch.Tensor] | None = None):
        nn.Module.__init__(self)
        self.xi = 0.0
        self.scale_weight_decay = 0.0
        self.names = tuple(params or {})
        self._static_targets = tuple((params or {}).values())
        self._owners = None
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def forward(self) -> torch.Tensor:
        return self._zero

    reference = forward

    def extra_repr(self) -> str:
        return ""
