"""What the framework callbacks share (no framework imports): building the penalty, its optimizer
group, its checkpoint entry, its logged numbers, and the prune at the end of training."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..measure import sparsity_table
from ..measure.sparsity import SparsityTable
from ..penalties import Penalty, build
from ..pruning import Mask, prune


def require(module: str, extra: str, who: str):
    """Import ``module`` or raise one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{who} needs {module.split('.')[0]} ({exc}): pip install 'sparsehalo[{extra}]'") from None


class PenaltySpec:
    """A penalty given by name and settings (built once the run's steps are known) or as a built one.

    Args:
        penalty: a registered penalty name (``"halo"``, ``"l1"``, ...) or a built :class:`Penalty`.
        options: the penalty's settings and selection keywords (with a name only); in target mode
            (``target_sparsity``) ``total_steps`` is filled in from the trainer unless given.
        prune_sparsity: prune to this exact sparsity at the end of training (None: no prune).
        prune_scope: ``"global"`` or ``"layer"`` (see :func:`sparsehalo.prune`).
    """

    def __init__(self, penalty: str | Penalty, options: Mapping[str, Any], prune_sparsity: float | None,
                 prune_scope: str):
        if isinstance(penalty, Penalty):
            if options:
                raise ConfigError(f"settings {sorted(options)} go with a penalty name, not a built penalty")
        elif not isinstance(penalty, str):
            raise ConfigError(f"penalty must be a name or a sparsehalo Penalty, got {type(penalty).__name__}")
        if prune_sparsity is not None and not 0.0 <= prune_sparsity < 1.0:
            raise ConfigError(f"prune_sparsity must be in [0, 1), got {prune_sparsity}")
        self.spec = penalty
        self.options = dict(options)
        self.prune_sparsity = prune_sparsity
        self.prune_scope = prune_scope
        self.penalty: Penalty | None = penalty if isinstance(penalty, Penalty) else None

    @property
    def name(self) -> str:
        return self.spec if isinstance(self.spec, str) else self.spec.name

    def needs_steps(self) -> bool:
        return self.options.get("target_sparsity") is not None and self.options.get("total_steps") is None

    def build(self, model: nn.Module, steps: Callable[[], float]) -> Penalty:
        """The penalty for ``model`` (built on the first call); ``steps()`` gives the penalty calls of the run."""
        if self.penalty is None:
            options = dict(self.options)
            if self.needs_steps():
                total = steps()
                if not (isinstance(total, int) or float(total).is_integer()) or total == float("inf") or total < 1:
                    raise ConfigError(f"target mode needs a finite number of training steps, the trainer gives {total}")
                options["total_steps"] = int(total)
            self.penalty = build(self.spec, model, **options)
        return self.penalty

    # -- optimizer ---------------------------------------------------------------------------
    def in_optimizer(self, optimizer: torch.optim.Optimizer) -> bool:
        """Whether the penalty's scales are already in ``optimizer`` (the user put them there)."""
        ids = {id(p) for g in optimizer.param_groups for p in g["params"]}
        return any(id(p) in ids for p in self.penalty.parameters())

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The checkpoint entry: the penalty's state dict (scales, controller) and what it belongs to."""
        p = self.penalty
        entry: dict[str, Any] = {"name": p.name, "names": list(p.names),
                                 "state": {k: v.detach().clone() for k, v in p.state_dict().items()}}
        controller = getattr(p, "controller", None)
        if controller is not None:
            entry["total_steps"] = int(controller.total_steps)
        return entry

    def load(self, entry: Mapping[str, Any]) -> list[str]:
        """Restore :meth:`state`'s entry into the built penalty; returns warnings (a changed step count).

        Raises:
            CheckpointError: the entry is another penalty's or penalizes other tensors.
        """
        p = self.penalty
        if entry.get("name") != p.name or list(entry.get("names", ())) != list(p.names):
            raise CheckpointError(f"the checkpoint's penalty ({entry.get('name')}, {len(entry.get('names', ()))} "
                                  f"tensors) is not this run's ({p.name}, {len(p.names)} tensors)")
        p.load_state_dict(entry["state"])
        controller = getattr(p, "controller", None)
        if controller is not None and entry.get("total_steps") not in (None, controller.total_steps):
            return [(f"the checkpoint's penalty was scheduled over {entry['total_steps']} steps, this run has "
                     f"{controller.total_steps}: the target schedule changes on resume")]
        return []

    # -- logging and the end of training -----------------------------------------------------
    def metrics(self, prefix: str = "penalty/") -> dict[str, float]:
        """The penalty's statistics as ``{prefix + name: float}``."""
        return {prefix + k: float(v) for k, v in self.penalty.stats().items()}

    def prune(self, model: nn.Module) -> tuple[Mask, SparsityTable, dict[str, float]]:
        """Prune ``model``'s penalized tensors to ``prune_sparsity`` (no fine-tuning) and measure them:
        ``(mask, table, {"sparsity": ..., "sparsity/natural": ..., "sparsity/<tensor>": ...})``."""
        params = self.penalty.penalized() if self.penalty is not None and self.penalty.names else None
        mask = prune(model, self.prune_sparsity, scope=self.prune_scope, params=params)
        table = sparsity_table(model, params=params, label="penalized entries" if params else None)
        metrics = {"sparsity": table.sparsity, "sparsity/natural": table.natural_sparsity}
        metrics.update({f"sparsity/{row.name}": row.sparsity for row in table.rows})
        return mask, table, metrics
