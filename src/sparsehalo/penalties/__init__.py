"""Shrinkage penalties and their registry.

``build(name, model, **kwargs)`` makes a penalty for a model by name: ``"none"``, ``"l1"``,
``"sws"``, ``"halo"``, ``"mcp"``, ``"scad"``, ``"group_lasso"``, ``"group_halo"``; add one with
:func:`register`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError
from .base import NoPenalty, Penalty
from .group import GroupHALO, GroupLasso
from . import fused
from .halo import HALO, HYPER, L1, SWS
from .nonconvex import MCP, SCAD

PENALTIES: dict[str, type[Penalty]] = {}


def register(cls: type[Penalty]) -> type[Penalty]:
    """Add a penalty class under its ``name``."""
    PENALTIES[cls.name] = cls
    return cls


for _cls in (NoPenalty, L1, SWS, HALO, MCP, SCAD, GroupLasso, GroupHALO):
    register(_cls)


def build(name: str, model: nn.Module, **kwargs: Any) -> Penalty:
    """Build penalty ``name`` for ``model``; selection keywords as in :meth:`Penalty.for_model`."""
    if name not in PENALTIES:
        raise ConfigError(f"unknown penalty {name!r}; known: {', '.join(sorted(PENALTIES))}")
    try:
        return PENALTIES[name].for_model(model, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"penalty {name!r}: {exc}") from None


__all__ = [
    "Penalty", "NoPenalty", "HALO", "L1", "SWS", "MCP", "SCAD", "GroupLasso", "GroupHALO",
    "HYPER", "PENALTIES", "register", "build",
]
