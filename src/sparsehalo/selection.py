"""Explicit selection of parameters (which tensors a penalty or a pruner acts on).

A selection is a name -> parameter dict in ``model.named_parameters()`` order.  Modules are chosen by
type name (``"Conv2d"``, ``"Linear"``, ...), then weights only or weights and biases, then
``fnmatch`` patterns on the full parameter name (``include`` keeps only matches, ``exclude`` drops
matches).  :func:`check_partition` asserts that a set of groups covers every parameter exactly once,
as minGPT does for optimizer groups.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn


DEFAULT_TYPES = ("Conv2d", "Linear")


def _type_names(types: Iterable[str | type]) -> set[str]:
    return {t if isinstance(t, str) else t.__name__ for t in types}


def select_parameters(
    model: nn.Module,
    types: Sequence[str | type] = DEFAULT_TYPES,
    biases: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> dict[str, nn.Parameter]:
    """Return the selected parameters of ``model`` by full name.

    Args:
        model: the network.
        types: module classes (or their names) whose own parameters are candidates.
        biases: also select ``bias`` parameters (weights are always candidates).
        include: if non-empty, keep only names matching one of these ``fnmatch`` patterns.
        exclude: drop names matching any of these patterns.

    Returns:
        Ordered dict ``{name: parameter}``; empty selections are allowed (the caller decides).
    """
    wanted = _type_names(types)
    attrs = ("weight", "bias") if biases else ("weight",)
    chosen: dict[str, nn.Parameter] = {}
    for mod_name, module in model.named_modules():
        if type(module).__name__ not in wanted:
            continue
        for attr in attrs:
            p = getattr(module, attr, None)
            if not isinstance(p, nn.Parameter):
                continue
            name = f"{mod_name}.{attr}" if mod_name else attr
            if include and not any(fnmatchcase(name, pat) for pat in include):
                continue
            if any(fnmatchcase(name, pat) for pat in exclude):
                continue
            chosen[name] = p
    return chosen


def prunable_parameters(
    model: nn.Module,
    types: Sequence[str | type] = DEFAULT_TYPES,
    biases: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> dict[str, nn.Parameter]:
    """Return the parameters pruning acts on by default: Conv2d and Linear weights.

    Arguments are those of :func:`select_parameters`.
    """
    return select_parameters(model, types=types, biases=biases, include=include, exclude=exclude)


def check_partition(model: nn.Module, groups: Mapping[str, Iterable[torch.Tensor]]) -> None:
    """Assert that ``groups`` cover every parameter of ``model`` exactly once.

    Args:
        model: the network.
        groups: e.g. ``{"penalized": [...], "not penalized": [...]}``.

    Raises:
        AssertionError: naming a parameter that is in no group, in two groups, or not in the model.
    """
    names = {id(p): n for n, p in model.named_parameters()}
    seen: dict[int, str] = {}
    for group, params in groups.items():
        for p in params:
            if id(p) not in names:
                raise AssertionError(f"group {group!r} holds a tensor that is not a parameter of the model")
            if id(p) in seen:
                raise AssertionError(f"parameter {names[id(p)]} is in both {seen[id(p)]!r} and {group!r}")
            seen[id(p)] = group
    left = [n for i, n in names.items() if i not in seen]
    if left:
        raise AssertionError(f"parameter(s) in no group: {', '.join(left)}")
