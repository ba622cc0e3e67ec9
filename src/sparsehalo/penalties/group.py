"""Group penalties on output units: the group lasso and its hierarchical (HALO) form.

Groups are output units, built once from the selection by :func:`group_sets`:

* a weight tensor with ``dim >= 2`` gives one group per index along dim 0: row ``i`` of a Linear
  weight, output channel ``i`` of a Conv2d weight;
* a 1-D weight (a norm layer's scale ``gamma``) gives one group per entry;
* if the selection also holds that module's bias (``X.weight`` with ``X.bias``, or ``weight`` with
  ``bias`` for a bare module) and the bias is 1-D with one entry per output unit, bias entry ``i``
  joins group ``i``, so a unit whose group is zero is removed entirely; for a BatchNorm that makes
  group ``i`` the pair ``(gamma_i, beta_i)``, which is zero exactly when channel ``i``'s output is
  (the group that :func:`sparsehalo.pruning.unit_norms` scores for a conv followed by its BatchNorm);
* any other tensor (a bias whose weight is not selected) forms groups of size 1, one per entry.

The groups of one tensor (plus its bias) are called a *group set*; all of its groups have the same
size, and their squared norms are computed in one vectorized step per set
(``w.flatten(1).square().sum(1) + b.square()``), never in a Python loop over groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, NamedTuple

import torch

from ..errors import ConfigError
from .base import Penalty, option, scale_key
from ..selection import unwrap
from .halo import HierarchicalPenalty
from .macs_target import MacsTarget
from .target import SparsityController

# A group whose L2 norm is at most this counts as zero in ``stats()["groups_zero"]``.  It is an
# absolute threshold, the same for every group size: a logging aid, not a pruning rule.
ZERO_GROUP_TOL = 1e-3


class GroupSet(NamedTuple):
    """The groups of one penalized tensor: one per index along dim 0 (or per entry if dim <= 1)."""

    key: str  # scale_key(name): where per-group state of this set lives in a ParameterDict
    name: str  # the weight's (or standalone tensor's) parameter name
    weight: torch.Tensor
    bias: torch.Tensor | None  # the module's bias, joined entry-wise to the rows of ``weight``
    bias_name: str | None

    @property
    def num_groups(self) -> int:
        return self.weight.shape[0] if self.weight.dim() >= 2 else self.weight.numel()

    @property
    def group_size(self) -> int:
        """Entries per group (the same for every group of the set)."""
        per_row = self.weight[0].numel() if self.weight.dim() >= 2 else 1
        return per_row + (self.bias is not None)

    def squared_norms(self) -> torch.Tensor:
        """``||w_g||**2`` for every group of the set, shape ``[num_groups]``."""
        w = self.weight
        sq = w.flatten(1).square().sum(1) if w.dim() >= 2 else w.reshape(-1).square()
        return sq if self.bias is None else sq + self.bias.square()


def _bias_name(weight_name: str) -> str | None:
    """``X.weight -> X.bias`` (and ``weight -> bias``); None for a name that is not a weight."""
    if weight_name == "weight" or weight_name.endswith(".weight"):
        return weight_name[: -len("weight")] + "bias"
    return None


def group_sets(params: Mapping[str, torch.Tensor]) -> tuple[GroupSet, ...]:
    """Split a selection into group sets (see the module docstring), in selection order.

    Args:
        params: ``{name: tensor}`` as held by a :class:`Penalty`.

    Returns:
        One :class:`GroupSet` per weight of dim >= 1 (with its bias if selected and shaped
        ``[out]``) and one per remaining tensor; every tensor of ``params`` is in exactly one set.
    """
    joined: dict[str, str] = {}  # weight name -> bias name
    for name, w in params.items():
        bname = _bias_name(name)
        if w.dim() >= 1 and bname in params:
            b = params[bname]
            # A bias of another shape cannot be matched to the output units: it stays standalone.
            if b.dim() == 1 and b.shape[0] == w.shape[0]:
                joined[name] = bname
    absorbed = set(joined.values())
    sets = []
    for name, w in params.items():
        if name in absorbed:
            continue
        bname = joined.get(name)
        sets.append(GroupSet(scale_key(name), name, w, None if bname is None else params[bname], bname))
    return tuple(sets)


def _norm(sq: torch.Tensor, eps: float) -> torch.Tensor:
    """``sqrt(sq + eps**2)`` with a finite gradient everywhere.

    For ``eps > 0`` the floor keeps ``sqrt`` away from 0.  For ``eps == 0`` this is the exact norm,
    and at an exactly zero group it takes the subgradient 0 (as ``|w|`` does at 0) instead of
    ``sqrt``'s ``0 * inf = nan``: the inner ``where`` keeps ``sqrt`` from ever seeing a zero.
    """
    if eps > 0:
        return (sq + eps * eps).sqrt()
    pos = sq > 0
    return torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


class _GroupPenalty(Penalty):
    """Shared plumbing: the group sets, the per-group norms and ``groups_zero`` for logging."""

    def __init__(self, params: Mapping[str, torch.Tensor], **kwargs):
        super().__init__(params, **kwargs)
        # A tuple of NamedTuples is invisible to nn.Module: like ``_targets``, the tensors are
        # referenced, not owned.
        self._sets: tuple[GroupSet, ...] = group_sets(self.penalized())

    @property
    def num_groups(self) -> int:
        return sum(s.num_groups for s in self._sets)

    @torch.no_grad()
    def group_norms(self) -> dict[str, torch.Tensor]:
        """Exact L2 norm of every group, ``{weight name: [num_groups]}`` (bias included if joined)."""
        return {s.name: s.squared_norms().sqrt() for s in self._sets}

    @torch.no_grad()
    def stats(self) -> dict[str, float]:
        """``groups_zero``: fraction of groups with L2 norm <= ``ZERO_GROUP_TOL`` (1e-3)."""
        norms = torch.cat(list(self.group_norms().values()))
        return {**super().stats(), "groups_zero": (norms <= ZERO_GROUP_TOL).double().mean().item()}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, groups={self.num_groups:,}"


class GroupLasso(_GroupPenalty):
    """Group lasso on output units (Yuan & Lin 2006), with the textbook ``sqrt(group size)`` weight::

        P(w) = xi * sum_g sqrt(p_g) * sqrt(||w_g||**2 + eps**2)

    ``p_g`` is the number of entries in group ``g`` (fan-in, plus 1 when the bias joins).  ``eps``
    (default ``1e-6``) is a smoothing floor: it keeps the gradient finite at a zero group (it is
    exactly 0 there, not nan) and shifts each group's value by at most ``xi * sqrt(p_g) * eps``.
    ``eps = 0`` is the exact group lasso, with subgradient 0 at a zero group.

    Args:
        params: ``{name: parameter}`` to penalize (see :meth:`Penalty.for_model`; pass
            ``biases=True`` to put each unit's bias in its group).
        xi: penalty strength (>= 0).
        eps: smoothing floor of the group norm (>= 0).
    """

    name = "group_lasso"

    @dataclass
    class Options:
        xi: float = option(1e-4, "penalty strength")
        eps: float = option(1e-6, "smoothing floor of the group norm (0: the exact group lasso)")

    def __init__(self, params: Mapping[str, torch.Tensor], *, xi: float = 1e-4, eps: float = 1e-6):
        super().__init__(params, xi=xi)
        if eps < 0:
            raise ConfigError(f"GroupLasso: eps must be >= 0, got {eps}")
        self.eps = float(eps)

    def reference(self) -> torch.Tensor:
        total = None
        for s in self._sets:
            term = math.sqrt(s.group_size) * _norm(s.squared_norms(), self.eps).sum()
            total = term if total is None else total + term
        return self.xi * total

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps:g}"


class GroupHALO(HierarchicalPenalty, _GroupPenalty):
    """Hierarchical adaptive group lasso: one trainable scale per output unit::

        P(w, lambda) = xi * sum_g ||w_g||_2 / (lambda_g**2 + eps**2)  +  psi * R(lambda)

    with the groups of the module docstring and ``R`` from :data:`.hyper.HYPER` as in HALO
    (``S = sum_g |lambda_g|``; ``R = S``, ``|S - budget|`` or ``(S - budget)**2``).  For fixed
    ``lambda`` it is a weighted group lasso; minimizing over ``lambda_g`` (hyper="l1", eps=0) gives
    ``lambda_g* = (2 xi ||w_g|| / psi)**(1/3)``.  Groups are not weighted by size, so that each
    group plays the part of one scalar of HALO (a set of 1-D groups is exactly HALO).

    ``eps`` (default ``1e-3``, as HALO) is only the soft floor on ``lambda**2``, with HALO's
    reasons.  The group norm is exact, not smoothed: like ``|w|`` in HALO, it takes the
    subgradient 0 at an exactly zero group, so the gradient is finite without a second floor and
    the value of a zero group is exactly 0.

    Takes the arguments of :class:`~.halo.HierarchicalPenalty` (pass ``biases=True`` to
    :meth:`Penalty.for_model` to put each unit's bias in its group); its ``stats()`` add
    ``groups_zero`` to the scale summary.
    """

    name = "group_halo"

    @dataclass
    class Options(HierarchicalPenalty.Options):
        target_macs: float | None = option(None, "target mode on MACs: the share of the network's dense MACs the "
                                           "penalty steers to zero units (see sparsehalo.penalties.macs_target)")
        input_shape: list[int] | None = option(None, "target_macs: one example's shape (sparsehalo train fills it in)")

    def __init__(self, params: Mapping[str, torch.Tensor], *, target_macs: float | None = None,
                 input_shape: list[int] | tuple[int, ...] | None = None, **kwargs):
        if target_macs is not None and kwargs.get("target_sparsity") is not None:
            raise ConfigError("GroupHALO: give target_sparsity (a share of the weights) or target_macs, not both")
        super().__init__(params, **kwargs)
        self.target_macs = None if target_macs is None else float(target_macs)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self._macs: MacsTarget | None = None
        self._prune_set: list[torch.Tensor] | None = None
        if self.target_macs is not None:
            defaults = HierarchicalPenalty.Options()
            get = lambda key: kwargs.get(key, getattr(defaults, key))  # noqa: E731
            self.controller = SparsityController(
                self.target_macs, kwargs.get("total_steps"), ramp=get("target_ramp"), gain=get("target_gain"),
                gain_p=get("target_gain_p"), schedule=get("target_schedule"), factor=get("target_factor"),
                average=0.0, error=get("target_error"), zero="eps", start=get("target_start"))

    def follow(self, model):
        """As :meth:`Penalty.follow`; with ``target_macs`` and ``input_shape``, also analyse the model's
        coupled units and MACs (:class:`~.macs_target.MacsTarget`)."""
        super().follow(model)
        if self.target_macs is not None and self.input_shape is not None:
            self._macs = MacsTarget(unwrap(model), self.input_shape, self._sets)
        return self

    def observe(self) -> None:
        if self.target_macs is None:
            return super().observe()
        if self._macs is None:
            raise ConfigError("target_macs needs the model and one example's shape: GroupHALO.for_model(model, "
                              "target_macs=..., input_shape=(C, H, W), total_steps=N)")
        norms = self._macs.unit_norms(self.magnitudes())
        self.controller.advance(torch.tensor(self._macs.measured(norms)))
        self._prune_set = self._macs.prune_set(norms, self.target_macs)

    def extra_prune(self, m: torch.Tensor) -> torch.Tensor:
        """With ``target_macs``: the extra pull on the rows of the units in the MACs prune set."""
        if self.target_macs is None:
            return super().extra_prune(m)
        if self._prune_set is None:  # no training step yet (evaluation): nothing extra
            return torch.zeros((), device=m.device)
        mags = self.magnitudes()
        total = self._pull_sum([torch.where(p.to(x.device), x, 0.0) for p, x in zip(self._prune_set, mags)])
        return (m * self.xi).to(total.dtype) * total

    @torch.no_grad()
    def stats(self) -> dict[str, float]:
        """Also ``target_macs`` (the requested share) in MACs target mode; ``target_measured`` is then
        the share of MACs that deleting the units at zero would remove."""
        return {**super().stats(), **({"target_macs": self.target_macs} if self.target_macs is not None else {})}

    def initial_scales(self) -> dict[str, torch.Tensor]:
        return {s.key: s.weight.new_full((s.num_groups,), self.lambda_init) for s in self._sets}

    def magnitudes(self) -> list[torch.Tensor]:
        return [_norm(gs.squared_norms(), 0.0) for gs in self._sets]

    def optimal_scales(self) -> dict[str, torch.Tensor]:
        """Closed-form minimizer over the scales for the current weights (hyper="l1", eps=0):
        ``lambda_g* = (2 xi ||w_g|| / psi)**(1/3)``, keyed like :meth:`group_norms`."""
        return {n: (2 * self.xi * g / self.psi).pow(1 / 3) for n, g in self.group_norms().items()}
