"""Scores -> :class:`Mask` at an exact target sparsity (scopes, per-tensor floors), and magnitude pruning.

Entries are ranked by their score (``|w|`` for :func:`prune`); ties are broken by position (a stable sort over the tensors in
selection order, then row-major), so the number removed is exactly ``round(sparsity * N)`` even when
many magnitudes are equal, e.g. weights that are already zero.  Python's ``round`` is used, so an exact
``.5`` rounds to the even count.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Callable, Mapping

import torch
from torch import nn

from ..errors import ConfigError, SparsehaloError
from ..registry import Registry
from ..selection import aliases, check_materialized, effective, existing_masks, prunable_parameters
from .mask import Mask
from .scores import magnitude_scores

ScopeFn = Callable[[dict[str, torch.Tensor], float, float | None], dict[str, torch.Tensor]]

#: Pruning scopes by name: ``fn(scores, sparsity, min_density) -> {name: keep mask}``.
SCOPES: Registry[ScopeFn] = Registry("pruning scope")


def _floor(min_density: float | None, n: int) -> int:
    """Entries a tensor of ``n`` entries must keep; rounding first so 0.3 * 10 is 3, not 4."""
    if not min_density:
        return 0
    return math.ceil(round(min_density * n, 6))


def _keep_after_pruning_first(order: torch.Tensor, k: int, n: int) -> torch.Tensor:
    """Bool keep-vector of length ``n`` with the entries at ``order[:k]`` removed."""
    keep = torch.ones(n, dtype=torch.bool, device=order.device)
    keep[order[:k]] = False
    return keep


@SCOPES.register("layer")
def _layer_scope(
    scores: dict[str, torch.Tensor], sparsity: float, min_density: float | None
) -> dict[str, torch.Tensor]:
    """Remove ``round(sparsity * n_l)`` smallest entries of every tensor separately."""
    masks = {}
    for name, s in scores.items():
        n = s.numel()
        k = round(sparsity * n)
        if n - k < _floor(min_density, n):
            raise SparsehaloError(
                f"layer-scope sparsity {sparsity} leaves {name} {n - k} of {n} entries, "
                f"below min_density {min_density}"
            )
        order = torch.argsort(s.flatten(), stable=True)
        masks[name] = _keep_after_pruning_first(order, k, n).view(s.shape)
    return masks


@SCOPES.register("global")
def _global_scope(
    scores: dict[str, torch.Tensor], sparsity: float, min_density: float | None
) -> dict[str, torch.Tensor]:
    """Remove ``round(sparsity * N)`` smallest entries over all tensors together.

    With ``min_density``, each tensor's ``ceil(min_density * n_l)`` largest entries are reserved first
    (scored ``+inf``) and the same exact count is removed from the rest.
    """
    device = next(iter(scores.values())).device
    flats = [s.flatten().to(device) for s in scores.values()]
    sizes = [f.numel() for f in flats]
    total = sum(sizes)
    k = round(sparsity * total)
    if min_density:
        floors = [_floor(min_density, n) for n in sizes]
        if k > total - sum(floors):
            raise SparsehaloError(
                f"cannot prune {k:,} of {total:,} entries while every tensor keeps min_density {min_density} "
                f"({sum(floors):,} entries reserved)"
            )
        reserved = []
        for f, keep_n in zip(flats, floors):
            f = f.clone()
            # Same tie order as the global sort: within a tensor, later positions rank higher.
            top = torch.argsort(f, stable=True)[f.numel() - keep_n :]
            f[top] = math.inf
            reserved.append(f)
        flats = reserved
    order = torch.argsort(torch.cat(flats), stable=True)
    keep = _keep_after_pruning_first(order, k, total)
    return {
        name: part.view(s.shape).to(s.device)
        for (name, s), part in zip(scores.items(), torch.split(keep, sizes))
    }


def _check_fraction(name: str, value: object, upper_inclusive: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        bound = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise SparsehaloError(f"{name} must be a number in {bound}, got {value!r}")
    return value


def mask_from_scores(
    scores: Mapping[str, torch.Tensor], sparsity: float, scope: str = "global", min_density: float | None = None
) -> Mask:
    """Keep the highest scores: remove exactly ``round(sparsity * N)`` entries (per tensor for ``"layer"``).

    Args:
        scores: ``{name: tensor}`` of finite scores, one per entry of the tensors to prune.
        sparsity: fraction of entries to remove, in ``[0, 1)``.
        scope: a name of :data:`SCOPES`: ``"global"`` ranks all entries together, ``"layer"`` prunes
            each tensor to ``sparsity`` on its own.
        min_density: every tensor keeps at least ``ceil(min_density * n_l)`` entries (its highest).

    Returns:
        The :class:`Mask` (``True`` = kept); ``mask.empty_layers`` lists tensors pruned entirely (a
        warning says so too).

    Raises:
        SparsehaloError: bad ``sparsity`` / ``min_density``, no tensors, or a floor that makes the
            target impossible.
        ConfigError: unknown ``scope``.
    """
    sparsity = _check_fraction("sparsity", sparsity, upper_inclusive=False)
    if min_density is not None:
        min_density = _check_fraction("min_density", min_density, upper_inclusive=True)
    if scope not in SCOPES:
        raise ConfigError(f"unknown pruning scope {scope!r}; choose one of {', '.join(sorted(SCOPES))}")
    if not scores:
        raise SparsehaloError("no parameters selected for pruning")
    mask = Mask(SCOPES.get(scope)(dict(scores), sparsity, min_density))
    empty = mask.empty_layers
    if empty:
        warnings.warn(
            f"pruning to sparsity {sparsity} removed every entry of {', '.join(empty)}; "
            "pass min_density to keep a floor per tensor",
            stacklevel=3,
        )
    return mask


def prune(
    model: nn.Module,
    sparsity: float,
    scope: str = "global",
    params: Mapping[str, torch.Tensor] | None = None,
    min_density: float | None = None,
    apply: bool = True,
) -> Mask:
    """Prune the smallest-magnitude entries to an exact sparsity.

    Args:
        model: the network.
        sparsity: fraction of entries to remove, in ``[0, 1)``.
        scope: ``"global"`` or ``"layer"`` (see :func:`mask_from_scores`).
        params: ``{name: tensor}`` to prune; default :func:`~sparsehalo.selection.prunable_parameters`.
        min_density: every tensor keeps at least ``ceil(min_density * n_l)`` entries (its largest).
        apply: zero the pruned entries of ``model`` in place.

    Returns:
        The :class:`Mask` (``True`` = kept); ``mask.empty_layers`` lists tensors pruned entirely.

    Raises:
        SparsehaloError: bad ``sparsity``/``min_density``, no parameters, non-finite weights, or a
            ``min_density`` floor that makes the target impossible.
        ConfigError: unknown ``scope``.
        CheckpointError: ``apply`` with ``params`` whose names or shapes are not the model's.
    """
    _check_fraction("sparsity", sparsity, upper_inclusive=False)
    if min_density is not None:
        _check_fraction("min_density", min_density, upper_inclusive=True)
    if scope not in SCOPES:
        raise ConfigError(f"unknown pruning scope {scope!r}; choose one of {', '.join(sorted(SCOPES))}")
    if params is None:
        params = prunable_parameters(model)
    if not params:
        raise SparsehaloError("no parameters selected for pruning")
    check_materialized(params, "prune")
    # A layer pruned before with torch.nn.utils.prune: its pruned entries score 0 and stay pruned.
    before = existing_masks(model, params)
    mask = mask_from_scores(magnitude_scores(effective(model, params)), sparsity, scope, min_density)
    if before:
        mask = Mask({n: m & before[n].to(m.device) if n in before else m for n, m in mask.items()}, aliases(model))
    else:
        mask = Mask(dict(mask), aliases(model))
    if apply:
        mask.apply(model)
    return mask
