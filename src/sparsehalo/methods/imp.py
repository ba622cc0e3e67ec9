"""Iterative magnitude pruning with rewinding (lottery tickets; Frankle & Carbin 2019, Frankle et al. 2020).

``rounds`` prune-and-rewind rounds split the epoch budget into ``rounds + 1`` equal trainings.  After
training ``k`` (k = 1..rounds) the surviving weights are pruned by global magnitude to
``s_k = 1 - (1 - s) ** (k / rounds)`` (a constant fraction of the survivors each round), then the
survivors are rewound to their values at initialization (``rewind_step = 0``) or after
``rewind_step`` optimizer steps of the first training, and training restarts with a fresh optimizer
and schedule.  Pruned weights are zero, hence the smallest, so a pruned weight is never revived.
"""

from __future__ import annotations

import dataclasses

import torch

from ..pruning import prune
from .base import Method, register, split_epochs


@register
class IMP(Method):
    name = "imp"
    has_step_hook = True

    @dataclasses.dataclass
    class Options:
        rounds: int = 3
        rewind_step: int = 0

    def __init__(self, sparsity: float = 0.0, options=None):
        super().__init__(sparsity, options)
        self.rewind: dict[str, torch.Tensor] | None = None

    def label(self, penalty: str) -> str:
        return "IMP (rewind to init)" if self.opts.rewind_step == 0 else f"IMP (rewind to step {self.opts.rewind_step})"

    def phases(self, epochs: int) -> list[int]:
        return split_epochs(epochs, self.opts.rounds + 1)

    def round_sparsity(self, k: int) -> float:
        return 1.0 - (1.0 - self.sparsity) ** (k / self.opts.rounds)

    def begin_phase(self, run, phase: int) -> None:
        if phase == 0:
            if self.opts.rewind_step == 0:
                self.rewind = run.model_state()
            return
        mask = prune(run.model, self.round_sparsity(phase), scope=run.config.prune.scope, params=run.prunable())
        run.model.load_state_dict(self.rewind)
        run.set_mask(mask)  # applies the mask to the rewound weights

    def after_step(self, run, step: int) -> None:
        if self.rewind is None and step == self.opts.rewind_step:
            self.rewind = run.model_state()

    def state_dict(self):
        return {"rewind": self.rewind} if self.rewind is not None else {}

    def load_state_dict(self, state):
        self.rewind = state.get("rewind")
