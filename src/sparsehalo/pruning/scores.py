"""Importance scores of individual weights (higher = keep): magnitude, SNIP's ``|g * w|``, random.

A score tensor has the shape of its weight; :func:`sparsehalo.pruning.threshold.mask_from_scores`
turns a ``{name: score}`` dict into a :class:`~sparsehalo.pruning.Mask` at an exact sparsity.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SparsehaloError
from .mask import Mask


def magnitude_scores(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``|w|`` per entry.

    Raises:
        SparsehaloError: for non-finite weights (NaN would sort as the largest and silently survive).
    """
    with torch.no_grad():
        scores = {name: t.detach().abs() for name, t in params.items()}
    bad = [n for n, s in scores.items() if not bool(torch.isfinite(s).all())]
    if bad:
        raise SparsehaloError(f"cannot prune non-finite weights in {', '.join(bad)}")
    return scores


def snip_scores(model: nn.Module, params: Mapping[str, torch.Tensor], batches: Iterable) -> dict[str, torch.Tensor]:
    """SNIP's connection sensitivity (Lee et al., 2019): ``|g * w|`` per entry, ``g`` the gradient of
    the mean cross-entropy summed over ``batches`` of ``(x, y)``."""
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    tensors = list(params.values())
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        for n, g in zip(params, torch.autograd.grad(loss, tensors)):
            grads[n] += g
    return {n: (grads[n] * p.detach()).abs() for n, p in params.items()}


def random_mask(shapes: Mapping[str, torch.Size], densities: Mapping[str, float], seed: int, device=None) -> Mask:
    """Keep exactly ``round(d * n)`` entries of each tensor, chosen uniformly at random.

    Random scores with a per-tensor threshold at its own density; drawn as one ``randperm`` per
    tensor from a generator seeded with ``seed``, so the mask is a pure function of its arguments.
    """
    g = torch.Generator().manual_seed(seed)
    masks = {}
    for name, shape in shapes.items():
        n = int(torch.Size(shape).numel())
        keep = round(densities[name] * n)
        flat = torch.zeros(n, dtype=torch.bool)
        flat[torch.randperm(n, generator=g)[:keep]] = True
        masks[name] = flat.view(shape).to(device)
    return Mask(masks)
