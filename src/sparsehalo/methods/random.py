"""Random pruning at initialization with prescribed per-layer densities (the floor of any method).

``densities`` picks them: ``"uniform"`` (every tensor keeps ``1 - sparsity``), ``"snip"`` (the
per-tensor densities SNIP would choose at this initialization) or ``"magnitude"`` (those of global
magnitude pruning at initialization).  Within each tensor, exactly ``round(density * n)`` entries are
kept, chosen uniformly at random from a generator seeded by the run's seed.
"""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from ..pruning import mask_from_scores, prune, random_mask, snip_scores
from .base import Method, register
from .snip import init_batches


@register
class Random(Method):
    name = "random"

    @dataclasses.dataclass
    class Options:
        densities: str = "uniform"

    def label(self, penalty: str) -> str:
        return f"random ({self.opts.densities} densities)"

    def layer_densities(self, run) -> dict[str, float]:
        params = run.prunable()
        source = self.opts.densities
        if source == "uniform":
            return {n: 1.0 - self.sparsity for n in params}
        if source == "snip":
            ref = mask_from_scores(snip_scores(run.model, params, init_batches(run, 1)), self.sparsity)
        elif source == "magnitude":
            ref = prune(run.model, self.sparsity, params=params, apply=False)
        else:
            raise ConfigError(f"random pruning: densities must be uniform, snip or magnitude, got {source!r}")
        return {s["name"]: s["kept"] / s["total"] for s in ref.layer_stats()}

    def begin_phase(self, run, phase: int) -> None:
        params = run.prunable()
        dens = self.layer_densities(run)
        mask = random_mask({n: p.shape for n, p in params.items()}, dens, run.config.train.seed + 7919, run.device)
        run.set_mask(mask)
