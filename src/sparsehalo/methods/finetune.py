"""Dense training, one-shot global magnitude pruning, then fine-tuning within the same epoch budget."""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from ..pruning import prune
from .base import Method, register


@register
class FineTune(Method):
    """Phases: ``epochs - finetune_epochs`` of training, then prune to ``sparsity`` and fine-tune
    ``finetune_epochs`` with the mask enforced, starting at ``lr`` (default: ``optim.lr * 0.1``)."""

    name = "finetune"

    @dataclasses.dataclass
    class Options:
        finetune_epochs: int = 5
        lr: float | None = None

    def phases(self, epochs: int) -> list[int]:
        ft = self.opts.finetune_epochs
        if not 0 < ft < epochs:
            raise ConfigError(f"finetune_epochs must be in (0, train.epochs={epochs}), got {ft}")
        return [epochs - ft, ft]

    def phase_lr(self, run, phase: int) -> float:
        if phase == 0:
            return run.config.optim.lr
        return self.opts.lr if self.opts.lr is not None else 0.1 * run.config.optim.lr

    def label(self, penalty: str) -> str:
        return "magnitude+FT" if penalty == "none" else f"{penalty}+FT"

    def begin_phase(self, run, phase: int) -> None:
        if phase == 1:
            run.set_mask(prune(run.model, self.sparsity, scope=run.config.prune.scope, params=run.prunable()))
