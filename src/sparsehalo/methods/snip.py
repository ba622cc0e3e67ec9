"""SNIP (Lee et al., 2019): prune at initialization by connection sensitivity ``|g * w|``, then train.

Scores are ``|dL/dw * w|`` with the gradient of the mean cross-entropy summed over ``batches``
training batches at initialization; the lowest-scoring ``sparsity`` fraction of the prunable weights
(one global ranking) is removed before training and kept at zero throughout.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..pruning import Mask, prune
from .base import Method, set_mask


def snip_scores(model: nn.Module, params: Mapping[str, torch.Tensor], batches: Iterable) -> dict[str, torch.Tensor]:
    """``|g * w|`` per entry, ``g`` the gradient of the cross-entropy summed over ``batches``."""
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    tensors = list(params.values())
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        for n, g in zip(params, torch.autograd.grad(loss, tensors)):
            grads[n] += g
    return {n: (grads[n] * p.detach()).abs() for n, p in params.items()}


def mask_from_scores(scores: Mapping[str, torch.Tensor], sparsity: float, scope: str = "global") -> Mask:
    """Keep the highest scores: magnitude pruning applied to the score tensors."""
    holder = nn.Module()
    return prune(holder, sparsity, scope=scope, params=dict(scores), apply=False)


def init_batches(exp, count: int):
    """The first ``count`` training batches of a fixed shuffle (seed-dependent, epoch -1)."""
    it = exp.data.train.batches(exp.config.data.batch_size, shuffle=True, seed=exp.config.train.seed, epoch=-1)
    for i, batch in enumerate(it):
        if i >= count:
            break
        yield batch


class SNIP(Method):
    name = "snip"

    @dataclasses.dataclass
    class Options:
        batches: int = 1

    def label(self, penalty: str) -> str:
        return "SNIP"

    def begin_phase(self, exp, phase: int) -> None:
        params = exp.prunable()
        scores = snip_scores(exp.model, params, init_batches(exp, self.opts.batches))
        set_mask(exp, mask_from_scores(scores, self.sparsity, exp.config.prune.scope))
