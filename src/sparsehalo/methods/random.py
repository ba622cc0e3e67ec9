"""Random pruning at initialization with prescribed per-layer densities (the floor of any method).

``densities`` picks them: ``"uniform"`` (every tensor keeps ``1 - sparsity``), ``"snip"`` (the
per-tensor densities SNIP would choose at this initialization) or ``"magnitude"`` (those of global
magnitude pruning at initialization).  Within each tensor, exactly ``round(density * n)`` entries are
kept, chosen uniformly at random from a generator seeded by the run's seed.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import torch

from ..errors import ConfigError
from ..pruning import Mask, prune
from .base import Method, set_mask
from .snip import init_batches, mask_from_scores, snip_scores


def random_mask(shapes: Mapping[str, torch.Size], densities: Mapping[str, float], seed: int, device=None) -> Mask:
    """Keep exactly ``round(d * n)`` random entries of each tensor."""
    g = torch.Generator().manual_seed(seed)
    masks = {}
    for name, shape in shapes.items():
        n = int(torch.Size(shape).numel())
        keep = round(densities[name] * n)
        flat = torch.zeros(n, dtype=torch.bool)
        flat[torch.randperm(n, generator=g)[:keep]] = True
        masks[name] = flat.view(shape).to(device)
    return Mask(masks)


class Random(Method):
    name = "random"

    @dataclasses.dataclass
    class Options:
        densities: str = "uniform"

    def label(self, penalty: str) -> str:
        return f"random ({self.opts.densities} densities)"

    def layer_densities(self, exp) -> dict[str, float]:
        params = exp.prunable()
        source = self.opts.densities
        if source == "uniform":
            return {n: 1.0 - self.sparsity for n in params}
        if source == "snip":
            ref = mask_from_scores(snip_scores(exp.model, params, init_batches(exp, 1)), self.sparsity)
        elif source == "magnitude":
            ref = prune(exp.model, self.sparsity, params=params, apply=False)
        else:
            raise ConfigError(f"random pruning: densities must be uniform, snip or magnitude, got {source!r}")
        return {s["name"]: s["kept"] / s["total"] for s in ref.layer_stats()}

    def begin_phase(self, exp, phase: int) -> None:
        params = exp.prunable()
        dens = self.layer_densities(exp)
        mask = random_mask({n: p.shape for n, p in params.items()}, dens, exp.config.train.seed + 7919, exp.device)
        set_mask(exp, mask)
