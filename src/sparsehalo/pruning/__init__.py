"""Pruning: scores (which weights matter), thresholds (scores -> an exact-sparsity Mask), masks; and
structured pruning (whole channels / neurons: coupling analysis, ChannelMask, slim)."""

from ..selection import prunable_parameters  # where users have imported it from
from .coupling import Group, coupled_groups
from .mask import Mask, MaskHandle
from .scores import magnitude_scores, random_mask, snip_scores
from .slimming import slim
from .structured import ChannelMask, prune_channels, unit_norms
from .threshold import SCOPES, mask_from_scores, prune

__all__ = ["ChannelMask", "Group", "Mask", "MaskHandle", "SCOPES", "coupled_groups", "magnitude_scores", "mask_from_scores",
           "prunable_parameters", "prune", "prune_channels", "random_mask", "slim", "snip_scores", "unit_norms"]
