"""Pruning: exact-target magnitude pruning and masks that keep pruned weights at zero."""

from .magnitude import SCOPES, prunable_parameters, prune
from .mask import Mask, MaskHandle

__all__ = ["Mask", "MaskHandle", "SCOPES", "prunable_parameters", "prune"]
