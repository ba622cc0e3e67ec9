"""Pruning: exact-target magnitude pruning and masks that keep pruned weights at zero."""

from ..selection import prunable_parameters
from .magnitude import SCOPES, prune
from .mask import Mask, MaskHandle

__all__ = ["Mask", "MaskHandle", "SCOPES", "prunable_parameters", "prune"]
