"""SNIP (Lee et al., 2019): prune at initialization by connection sensitivity ``|g * w|``, then train.

Scores are ``|dL/dw * w|`` with the gradient of the mean cross-entropy summed over ``batches``
training batches at initialization; the lowest-scoring ``sparsity`` fraction of the prunable weights
(one global ranking) is removed before training and kept at zero throughout.
"""

from __future__ import annotations

import dataclasses

from ..pruning import mask_from_scores, snip_scores
from .base import Method, register


def init_batches(run, count: int):
    """The first ``count`` training batches of a fixed shuffle (seed-dependent, epoch -1)."""
    it = run.data.train.batches(run.config.data.batch_size, shuffle=True, seed=run.config.train.seed, epoch=-1)
    for i, batch in enumerate(it):
        if i >= count:
            break
        yield batch


@register
class SNIP(Method):
    name = "snip"

    @dataclasses.dataclass
    class Options:
        batches: int = 1

    def label(self, penalty: str) -> str:
        return "SNIP"

    def begin_phase(self, run, phase: int) -> None:
        params = run.prunable()
        scores = snip_scores(run.model, params, init_batches(run, self.opts.batches))
        run.set_mask(mask_from_scores(scores, self.sparsity, run.config.prune.scope))
