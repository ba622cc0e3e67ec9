"""Methods (one-shot penalized training and pruning baselines) and their registry."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Method, set_mask, split_epochs
from .finetune import FineTune
from .gmp import GMP, cubic_sparsity
from .imp import IMP
from .oneshot import OneShot
from .random import Random, random_mask
from .snip import SNIP, snip_scores

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (OneShot, FineTune, GMP, IMP, SNIP, Random)}


def build(name: str, sparsity: float = 0.0, options: dict | None = None) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name](sparsity, options)


__all__ = ["METHODS", "Method", "build", "set_mask", "split_epochs", "cubic_sparsity", "snip_scores", "random_mask",
           "OneShot", "FineTune", "GMP", "IMP", "SNIP", "Random"]
