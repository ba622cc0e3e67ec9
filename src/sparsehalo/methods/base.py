"""How a run turns training into a sparse network: the :class:`Method` interface.

A method splits the epoch budget into *phases* (one optimizer and one learning-rate schedule each)
and acts at phase starts (prune, rewind) and, optionally, after optimizer steps (gradual pruning).
The training loop calls these hooks; it never branches on a method's name.

Methods come in two kinds:

- *one-shot* methods train a dense (possibly penalized) network and are evaluated after magnitude
  pruning at every level of ``prune.levels``, with no fine-tuning (HALO, L1, no penalty, ...);
- *fixed-sparsity* methods reach ``method.sparsity`` themselves (fine-tuning, GMP, IMP, SNIP,
  random) and are evaluated once, as trained.

Methods see the run through :class:`RunStateLike`, the few things of
:class:`sparsehalo.training.RunState` they use, so this package never imports the training package.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from ..config import Config
from ..config import from_section
from ..errors import ConfigError
from ..pruning import Mask
from ..registry import Registry


class RunStateLike(Protocol):
    """What a method may use of the run state."""

    config: Config
    model: nn.Module
    device: torch.device
    data: Any  # sparsehalo.data.Splits
    steps_per_epoch: int
    mask: Mask | None

    def prunable(self) -> dict[str, torch.Tensor]: ...

    def set_mask(self, mask: Mask | None) -> None: ...

    def model_state(self) -> dict[str, torch.Tensor]: ...


def split_epochs(total: int, parts: int) -> list[int]:
    """Split ``total`` epochs into ``parts`` phases as evenly as possible (earlier phases get the extra)."""
    if parts < 1 or total < parts:
        raise ConfigError(f"cannot split {total} epochs into {parts} phases of at least one epoch")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class Method:
    """Base class; subclasses set ``name``, ``Options`` and override the hooks they need.

    Args:
        sparsity: the target of a fixed-sparsity method (ignored by one-shot methods).
        options: the method's settings, validated against its ``Options`` dataclass.
    """

    name: ClassVar[str] = "method"
    fixed_sparsity: ClassVar[bool] = True
    has_step_hook: ClassVar[bool] = False

    @dataclasses.dataclass
    class Options:
        pass

    def __init__(self, sparsity: float = 0.0, options: dict[str, Any] | None = None):
        if self.fixed_sparsity and not 0.0 < sparsity < 1.0:
            raise ConfigError(f"method {self.name!r} needs method.sparsity in (0, 1), got {sparsity}")
        self.sparsity = float(sparsity)
        # The same validation (unknown keys, types) as config files.
        self.opts = from_section(self.Options, dict(options or {}), prefix="method.options.")

    # -- plan ------------------------------------------------------------------------------
    def phases(self, epochs: int) -> list[int]:
        """Epochs of each phase; they sum to the run's budget ``train.epochs``."""
        return [epochs]

    def phase_lr(self, run: RunStateLike, phase: int) -> float:
        """Initial learning rate of the network group in ``phase``."""
        return run.config.optim.lr

    def label(self, penalty: str) -> str:
        """Human name in tables."""
        return self.name

    # -- hooks -----------------------------------------------------------------------------
    def begin_phase(self, run: RunStateLike, phase: int) -> None:
        """Called before the first epoch of ``phase`` (after the optimizer of the phase is built)."""

    def after_step(self, run: RunStateLike, step: int) -> None:
        """Called after optimizer step ``step`` (1-based, counted over the whole run) when
        ``has_step_hook`` is true."""

    # -- state carried in checkpoints -----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


#: Methods by ``method.name``.
METHODS: Registry[type[Method]] = Registry("method")


def build(name: str, sparsity: float = 0.0, options: dict | None = None) -> Method:
    """The method ``name`` with its target and options (unknown name: ConfigError with the known ones)."""
    return METHODS.get(name)(sparsity, options)


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to :data:`METHODS` under its ``name``."""
    METHODS.add(cls.name, cls)
    return cls
