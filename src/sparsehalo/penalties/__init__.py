"""Shrinkage penalties and their registry.

``build(name, model, **kwargs)`` makes a penalty for a model by name: ``"none"``, ``"l1"``,
``"sws"``, ``"halo"``, ``"mcp"``, ``"scad"``, ``"group_lasso"``, ``"group_halo"``; add one with
:func:`register`.  Each class's ``Options`` lists its settings (looked up by name:
``PENALTIES.get(name).Options``); the hyper-penalty forms of HALO and group HALO are the table
:data:`HYPER` of :mod:`.hyper`; the fast paths are in :mod:`.kernels`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from .base import NoPenalty, Penalty
from .group import GroupHALO, GroupLasso
from .halo import HALO, L1, SWS, HierarchicalPenalty
from .hyper import HYPER, HyperForm
from .nonconvex import MCP, SCAD

PENALTIES: Registry[type[Penalty]] = Registry("penalty")


def register(cls: type[Penalty]) -> type[Penalty]:
    """Add a penalty class under its ``name`` (usable as a class decorator)."""
    PENALTIES.add(cls.name, cls)
    return cls


for _cls in (HALO, L1, SWS, MCP, SCAD, GroupLasso, GroupHALO, NoPenalty):  # the order of --help
    register(_cls)


def build(name: str, model: nn.Module, **kwargs: Any) -> Penalty:
    """Build penalty ``name`` for ``model``.

    Args:
        name: a registered penalty.
        model: the network whose parameters it penalizes.
        **kwargs: the selection keywords of :meth:`Penalty.for_model` and the penalty's settings.

    Raises:
        ConfigError: for an unknown name, a setting the penalty does not take, or a value of the
            wrong type.
    """
    cls = PENALTIES.get(name)
    try:
        return cls.for_model(model, **kwargs)
    except TypeError as exc:  # e.g. a string where a number belongs
        raise ConfigError(f"penalty {name!r}: {exc}") from None


__all__ = [
    "Penalty", "NoPenalty", "HALO", "L1", "SWS", "MCP", "SCAD", "GroupLasso", "GroupHALO",
    "HierarchicalPenalty", "HYPER", "HyperForm", "PENALTIES", "register", "build",
]
