"""Methods (one-shot penalized training and pruning baselines), registered by name in :data:`METHODS`."""

from __future__ import annotations

from .base import METHODS, Method, RunStateLike, build, register, split_epochs
from .oneshot import OneShot  # registration order is the order of `sparsehalo train --help`
from .finetune import FineTune
from .gmp import GMP, cubic_sparsity
from .imp import IMP
from .snip import SNIP
from .random import Random

__all__ = ["METHODS", "Method", "RunStateLike", "build", "register", "split_epochs", "cubic_sparsity",
           "OneShot", "FineTune", "GMP", "IMP", "SNIP", "Random"]
