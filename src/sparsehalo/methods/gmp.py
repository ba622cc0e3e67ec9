"""Gradual magnitude pruning (Zhu & Gupta, 2017) with the cubic schedule.

Sparsity at step ``t`` (pruning happens at ``t0, t0 + dt, ...`` up to ``t1``)::

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** 3

and stays at ``s_f`` after ``t1``.  Each pruning step is a global magnitude prune of the (masked)
weights to ``s_t``; pruned weights are exactly zero, hence the smallest, so the masks are nested.
"""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from ..pruning import prune
from .base import Method, register


def cubic_sparsity(step: int, start: int, end: int, initial: float, final: float) -> float:
    """Zhu & Gupta's cubic schedule; ``initial`` before ``start``, ``final`` after ``end``."""
    if step < start:
        return initial
    if step >= end:
        return final
    return final + (initial - final) * (1.0 - (step - start) / (end - start)) ** 3


@register
class GMP(Method):
    """Options: ``start_epoch`` / ``end_epoch`` (fractions allowed), ``frequency`` in steps, and the
    ``initial_sparsity`` of the first pruning step."""

    name = "gmp"
    has_step_hook = True

    @dataclasses.dataclass
    class Options:
        start_epoch: float = 1.0
        end_epoch: float = -1.0  # < 0: counted from the end, e.g. -5 = five epochs before the end
        frequency: int = 100
        initial_sparsity: float = 0.0

    def label(self, penalty: str) -> str:
        return "GMP"

    def phases(self, epochs: int) -> list[int]:
        """One phase; checks the pruning window against ``epochs`` (before any data is read)."""
        end = self.opts.end_epoch if self.opts.end_epoch >= 0 else epochs + self.opts.end_epoch
        if not 0 <= self.opts.start_epoch < end <= epochs or self.opts.frequency < 1:
            raise ConfigError(f"GMP prunes from start_epoch to end_epoch: needs 0 <= {self.opts.start_epoch:g} < {end:g} <= "
                              f"train.epochs={epochs} (end_epoch {self.opts.end_epoch:g}; < 0 counts from the end) and frequency >= 1")
        return super().phases(epochs)

    def _bounds(self, run) -> tuple[int, int]:
        spe, total = run.steps_per_epoch, run.steps_per_epoch * run.config.train.epochs
        start = int(round(self.opts.start_epoch * spe))
        end_epoch = self.opts.end_epoch if self.opts.end_epoch >= 0 else run.config.train.epochs + self.opts.end_epoch
        end = int(round(end_epoch * spe))
        if not 0 <= start < end <= total or self.opts.frequency < 1:
            raise ConfigError(f"GMP needs 0 <= start < end <= {total} steps and frequency >= 1 (got start {start}, end {end})")
        return start, end

    def schedule_steps(self, run) -> list[tuple[int, float]]:
        """The (step, sparsity) pairs at which this run prunes."""
        start, end = self._bounds(run)
        steps = list(range(start, end, self.opts.frequency)) + [end]
        return [(t, cubic_sparsity(t, start, end, self.opts.initial_sparsity, self.sparsity)) for t in steps]

    def _planned(self, run) -> dict[int, float]:
        # Built lazily so that a resumed run (which skips begin_phase) has it too.
        if getattr(self, "_plan", None) is None:
            self._plan = dict(self.schedule_steps(run))
        return self._plan

    def begin_phase(self, run, phase: int) -> None:
        if 0 in self._planned(run):
            self._prune_to(run, self._plan[0])

    def after_step(self, run, step: int) -> None:
        s = self._planned(run).get(step)
        if s is not None:
            self._prune_to(run, s)

    def _prune_to(self, run, sparsity: float) -> None:
        if sparsity > 0:
            run.set_mask(prune(run.model, sparsity, scope=run.config.prune.scope, params=run.prunable()))
