"""One-shot methods: train once, prune by magnitude at every level, no fine-tuning."""

from __future__ import annotations

from .base import Method, register


@register
class OneShot(Method):
    """Train (with whatever penalty the config names), then one global magnitude threshold.

    The label is the penalty's (``HALO``, ``L1``, ...) or ``magnitude`` for no penalty.
    """

    name = "oneshot"
    fixed_sparsity = False

    LABELS = {"none": "magnitude", "halo": "HALO", "l1": "L1", "sws": "SWS", "mcp": "MCP", "scad": "SCAD",
              "group_lasso": "group lasso", "group_halo": "group HALO"}

    def label(self, penalty: str) -> str:
        return self.LABELS.get(penalty, penalty)
