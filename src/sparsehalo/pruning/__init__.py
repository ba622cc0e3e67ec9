"""Pruning: scores (which weights matter), thresholds (scores -> an exact-sparsity Mask), masks."""

from ..selection import prunable_parameters  # where users have imported it from
from .mask import Mask, MaskHandle
from .scores import magnitude_scores, random_mask, snip_scores
from .threshold import SCOPES, mask_from_scores, prune

__all__ = ["Mask", "MaskHandle", "SCOPES", "magnitude_scores", "mask_from_scores", "prunable_parameters", "prune", "random_mask",
           "snip_scores"]
