"""Structured pruning: remove whole output channels / neurons by their group norm, to an exact target.

A *unit* is one output channel of a convolution or one output neuron of a Linear layer, together with
everything coupled to it (:mod:`.coupling`): its BatchNorm entry, the next layers' inputs and, across a
residual sum, the same channel of every layer feeding that sum.  Its norm is the L2 norm of the
parameters that set its value last, its *stages* (:attr:`.coupling.Group.stages`),

    n_u = sqrt( sum_{s in stages} ||W_s[u]||^2 + b_s[u]^2 ),

where a producer followed by its own affine BatchNorm is represented by that BatchNorm (``gamma_u``,
``beta_u``: after ``BN(conv)`` the channel is ``gamma_u * z + beta_u``, zero exactly when both are, and
the conv's scale is normalized away) and any other producer by its weight row and bias.  These are
the groups that group lasso / group HALO shrink (:mod:`sparsehalo.penalties.group`): in a network
without BatchNorm the producers' weights (``types = ["Conv2d", "Linear"]``), with BatchNorm the
BatchNorms' scales and shifts (``types = ["BatchNorm2d", ...]``, ``biases = true``).  Units of
unprunable groups (the network's output layer, anything the analysis cannot follow) are never
removed, and every group keeps at least one unit.

Targets (exactly one):

* ``channels=s``: a share of the prunable units.  ``scope="global"`` removes exactly
  ``round(s * N)`` units over all prunable groups (``N`` units in all; each group's best unit is
  reserved), ranked by the *normalized* norm ``n_u / rms_g`` with ``rms_g = sqrt(mean_{v in g} n_v^2)``
  (so a layer with large weights is not spared for its scale alone; a group of zeros scores 0).
  ``scope="layer"`` removes ``min(round(s * n_g), n_g - 1)`` lowest-norm units of every group ``g``.
* ``macs=s``: a share of the network's dense MACs (:func:`sparsehalo.measure.layer_costs`, per
  example).  Units are removed one at a time in the scope's order (global: the normalized norm;
  layer: each group's units by norm, interleaved so that every group's removed share stays as equal
  as possible, i.e. by ``(rank within the group + 1) / n_g``) until the MACs removed reach ``s``;
  stopping one unit earlier would not.  The MACs of the pruned network are exact: each Conv / Linear
  layer costs ``macs_L * (k_out / n_out) * (k_in / n_in)`` with ``k`` its kept units (every term
  divides exactly), which equals the counter's reading of the slimmed network (a test checks it).

Ties are broken by position (group order, then unit index), as in :mod:`.threshold`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, SparsehaloError
from ..measure.cost import layer_costs
from ..selection import unwrap
from .coupling import Group, coupled_groups
from .mask import TensorMapping


class ChannelMask(TensorMapping):
    """Keep-masks over the output units of layers: ``{module name: bool tensor of length out}``.

    Args:
        masks: one 1-D bool tensor per producer module (``True`` = kept); the producers of one
            coupled group carry equal masks.
        input_shape: the example shape the coupling was analysed on (needed to trace the model again).
        groups: the producer names of each coupled group; default one group per name.
    """

    def __init__(self, masks: Mapping[str, torch.Tensor], input_shape: tuple[int, ...],
                 groups: list[tuple[str, ...]] | None = None) -> None:
        self._masks: dict[str, torch.Tensor] = {}
        for name, m in masks.items():
            if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or m.dim() != 1:
                raise SparsehaloError(f"channel mask for {name} must be a 1-D torch.bool tensor")
            self._masks[str(name)] = m.detach().cpu()
        self.input_shape = tuple(int(v) for v in input_shape)
        self.groups: list[tuple[str, ...]] = [tuple(g) for g in groups] if groups is not None else [(n,) for n in self._masks]
        if sorted(n for g in self.groups for n in g) != sorted(self._masks):
            raise SparsehaloError("channel mask groups must list every masked module exactly once")
        for g in self.groups:
            if any(not torch.equal(self._masks[n], self._masks[g[0]]) for n in g):
                raise SparsehaloError(f"coupled layers {', '.join(g)} must carry the same channel mask")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ChannelMask) and set(self) == set(other) and self.input_shape == other.input_shape
                and all(torch.equal(m, other[n]) for n, m in self._masks.items()))

    __hash__ = None

    @property
    def units_total(self) -> int:
        """Units of the masked groups (a group's channels counted once, however many layers feed it)."""
        return sum(self._masks[g[0]].numel() for g in self.groups)

    @property
    def units_kept(self) -> int:
        return sum(int(self._masks[g[0]].sum()) for g in self.groups)

    @property
    def units_removed(self) -> int:
        return self.units_total - self.units_kept

    def __repr__(self) -> str:
        return f"ChannelMask({len(self.groups)} groups, {self.units_kept:,}/{self.units_total:,} units kept)"

    def layer_stats(self) -> list[dict]:
        """Per group: ``layers`` (its producers), ``units``, ``kept``."""
        return [{"layers": list(g), "units": self._masks[g[0]].numel(), "kept": int(self._masks[g[0]].sum())} for g in self.groups]

    # model interaction --------------------------------------------------------------------------
    def check(self, model: nn.Module) -> list[Group]:
        """Verify the mask against ``model``'s coupling; returns the model's prunable groups it masks.

        Raises:
            CheckpointError: a name that is no prunable group's producer, a length that is not the
                layer's number of outputs, coupled layers masked apart or differently, a group
                emptied entirely.
        """
        groups = coupled_groups(model, self.input_shape)
        by_producer = {p: g for g in groups for p in g.producers}
        unknown = [n for n in self._masks if n not in by_producer]
        if unknown:
            raise CheckpointError(f"channel mask names no prunable layer of the model: {', '.join(unknown)}")
        used = []
        for g in {id(by_producer[n]): by_producer[n] for n in self._masks}.values():
            if g.blocked:
                raise CheckpointError(f"channel mask prunes {', '.join(g.producers)}, which cannot be pruned: {g.blocked}")
            mine = [n for n in g.producers if n in self._masks]
            if len(mine) != len(g.producers) or tuple(sorted(mine)) not in {tuple(sorted(x)) for x in self.groups}:
                raise CheckpointError(f"layers {', '.join(g.producers)} are coupled and must be masked together, as one group")
            m = self._masks[g.producers[0]]
            if m.numel() != g.size:
                raise CheckpointError(f"channel mask for {g.producers[0]} has {m.numel()} units, the layer {g.size}")
            if not bool(m.any()):
                raise CheckpointError(f"channel mask removes every unit of {', '.join(g.producers)}")
            used.append(g)
        return used

    def apply(self, model: nn.Module) -> None:
        """Zero the removed units in place: producers' rows and biases, their BatchNorms' scale *and*
        shift (so the unit is exactly 0 after its norm, as after slimming), consumers' input columns.

        Raises:
            CheckpointError: the mask does not fit ``model`` (see :meth:`check`).
        """
        model = unwrap(model)
        with torch.no_grad():
            for g in self.check(model):
                drop = ~self._masks[g.producers[0]]
                for name in g.producers:
                    m = model.get_submodule(name)
                    m.weight[drop.to(m.weight.device)] = 0
                    if m.bias is not None:
                        m.bias[drop.to(m.bias.device)] = 0
                for name in g.followers:
                    bn = model.get_submodule(name)
                    for t in (bn.weight, bn.bias):
                        if t is not None:
                            t[drop.to(t.device)] = 0
                for name, factor in g.consumers:
                    w = model.get_submodule(name).weight
                    w[:, drop.repeat_interleave(factor).to(w.device)] = 0

    # persistence --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"masks": {name: bool tensor}, "input_shape": [...], "groups": [[names]]}`` (``torch.save``
        / ``weights_only`` friendly)."""
        return {"masks": dict(self._masks), "input_shape": list(self.input_shape), "groups": [list(g) for g in self.groups]}

    @classmethod
    def from_state_dict(cls, state: Mapping) -> "ChannelMask":
        """Rebuild a mask saved with :meth:`state_dict`.

        Raises:
            CheckpointError: ``state`` is not such a dict.
        """
        try:
            return cls(state["masks"], tuple(state["input_shape"]), [tuple(g) for g in state["groups"]])
        except (KeyError, TypeError, ValueError, SparsehaloError) as exc:
            raise CheckpointError(f"not a channel mask state: {exc}") from None


def unit_norms(model: nn.Module, group: Group) -> torch.Tensor:
    """``n_u`` of every unit of ``group`` (float64, on the CPU): L2 over the weights and biases of its
    :attr:`~.coupling.Group.stages` (a producer's own affine BatchNorm in place of the producer)."""
    total = torch.zeros(group.size, dtype=torch.float64)
    with torch.no_grad():
        for name in group.stages or group.producers:
            m = model.get_submodule(name)
            for t in (m.weight, m.bias):
                if t is not None:
                    total += t.detach().double().reshape(group.size, -1).pow(2).sum(1).cpu()
    if not bool(torch.isfinite(total).all()):
        raise SparsehaloError(f"cannot prune non-finite weights in {', '.join(group.stages or group.producers)}")
    return total.sqrt()


def _fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) < 1.0:
        raise SparsehaloError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


class MacsCounter:
    """Exact dense MACs of the network as a function of the kept units of each group: every Conv / Linear
    layer costs ``c_L * k_out * k_in`` (``c_L`` its MACs per pair of units).  :meth:`remove_one` walks
    (``now``); :meth:`macs` and :meth:`marginal` answer for any ``kept`` (one count per group) without state."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], groups: list[Group], all_groups: list[Group]):
        costs = {c.name: c.macs_dense for c in layer_costs(model, input_shape)}
        self.total = sum(costs.values())
        out_of = {p: i for i, g in enumerate(groups) for p in g.producers}
        in_of = {c: (i, f) for i, g in enumerate(groups) for c, f in g.consumers}
        self.layers: list[list] = []  # [unit cost, out group or None, in group or None, kept out, kept in]
        self.of_group: list[list[int]] = [[] for _ in groups]
        sizes = {p: g.size for g in all_groups for p in g.producers}
        for name in sorted(set(out_of) | set(in_of)):
            m = model.get_submodule(name)
            n_out = sizes[name]
            n_in = groups[in_of[name][0]].size if name in in_of else (m.in_channels if hasattr(m, "in_channels") else m.in_features)
            go, gi = out_of.get(name), in_of.get(name, (None,))[0]
            self.layers.append([costs.get(name, 0) // (n_out * n_in), go, gi, n_out, n_in])
            for gidx in {go, gi} - {None}:
                self.of_group[gidx].append(len(self.layers) - 1)
        self.now = self.total
        self.full = [row[3] * row[4] for row in self.layers]  # unit pairs of each layer at full width

    def remove_one(self, g: int) -> None:
        for i in self.of_group[g]:
            row = self.layers[i]
            before = row[0] * row[3] * row[4]
            row[3] -= row[1] == g
            row[4] -= row[2] == g
            self.now -= before - row[0] * row[3] * row[4]

    def _sizes(self, row: list, kept: list[int]) -> tuple[int, int]:
        c, go, gi, n_out, n_in = row
        return (n_out if go is None else kept[go]), (n_in if gi is None else kept[gi])

    def macs(self, kept: list[int]) -> int:
        """Dense MACs with ``kept[g]`` units of group ``g`` (layers no group touches at full cost)."""
        return self.total - sum(row[0] * (self.full[i] - math.prod(self._sizes(row, kept))) for i, row in enumerate(self.layers))

    def marginal(self, g: int, kept: list[int]) -> int:
        """MACs saved by removing one more unit of group ``g`` from ``kept``."""
        saved = 0
        for i in self.of_group[g]:
            row = self.layers[i]
            k_out, k_in = self._sizes(row, kept)
            saved += row[0] * (k_out * k_in - (k_out - (row[1] == g)) * (k_in - (row[2] == g)))
        return saved


def _order(norms: list[torch.Tensor], scope: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(group index, unit index) of every unit in removal order, the best unit of each group last
    overall within its group (so a walk that skips a group's last unit never empties it)."""
    keys, gid, uid = [], [], []
    for g, n in enumerate(norms):
        if scope == "global":
            rms = n.pow(2).mean().sqrt()
            key = n / rms if rms > 0 else torch.zeros_like(n)
            within = torch.arange(n.numel())
        else:
            within = torch.argsort(n, stable=True)
            key = torch.arange(1, n.numel() + 1, dtype=torch.float64) / n.numel()
        keys.append(key)
        gid.append(torch.full((n.numel(),), g))
        uid.append(within)
    order = torch.argsort(torch.cat(keys), stable=True)
    return torch.cat(gid)[order], torch.cat(uid)[order]


def prune_channels(model: nn.Module, input_shape: tuple[int, ...], *, channels: float | None = None, macs: float | None = None,
                   scope: str = "global", apply: bool = True) -> ChannelMask:
    """Remove lowest-norm output units to an exact target (see the module docstring for the rules).

    Args:
        model: the network.
        input_shape: one example's shape without the batch dimension.
        channels: share of the prunable units to remove, in ``[0, 1)``.
        macs: share of the network's dense MACs to remove, in ``[0, 1)``.
        scope: ``"global"`` (one ranking over all groups) or ``"layer"`` (each group on its own).
        apply: zero the removed units in ``model`` (:meth:`ChannelMask.apply`).

    Returns:
        The checked :class:`ChannelMask` over every prunable group (``macs_before`` / ``macs_after``
        attributes: the exact dense MACs).

    Raises:
        SparsehaloError: not exactly one target, a target outside ``[0, 1)``, no prunable group, a
            target that needs more than every group but one unit, non-finite weights.
        ConfigError: unknown ``scope``.
    """
    if (channels is None) == (macs is None):
        raise SparsehaloError("give exactly one structured target: channels (a share of units) or macs (a share of MACs)")
    target = _fraction("channels" if macs is None else "macs", channels if macs is None else macs)
    if scope not in ("global", "layer"):
        raise ConfigError(f"unknown pruning scope {scope!r}; choose one of global, layer")
    model = unwrap(model)
    every = coupled_groups(model, input_shape)
    groups = [g for g in every if g.prunable]
    if not groups:
        raise SparsehaloError("the model has no prunable channel or neuron group (only the output layer, or operations the analysis cannot follow)")
    norms = [unit_norms(model, g) for g in groups]
    keep = [torch.ones(g.size, dtype=torch.bool) for g in groups]
    gid, uid = _order(norms, scope)
    cost = MacsCounter(model, input_shape, groups, every)
    if macs is None and scope == "layer":
        for g, n in enumerate(norms):
            keep[g][torch.argsort(n, stable=True)[: min(round(target * n.numel()), n.numel() - 1)]] = False
    else:
        n_units = sum(g.size for g in groups)
        k = round(target * n_units) if macs is None else None
        if k is not None and k > n_units - len(groups):
            raise SparsehaloError(f"cannot remove {k:,} of {n_units:,} units while each of the {len(groups)} groups keeps one")
        left, removed = [g.size for g in groups], 0
        need = math.ceil(round(target * cost.total, 6)) if macs is not None else None
        for g, u in zip(gid.tolist(), uid.tolist()):
            if (k is not None and removed == k) or (need is not None and cost.total - cost.now >= need):
                break
            if left[g] == 1:
                continue  # each group's last unit is reserved
            keep[g][u] = False
            left[g] -= 1
            removed += 1
            cost.remove_one(g)
        if need is not None and cost.total - cost.now < need:
            raise SparsehaloError(f"cannot remove {100 * target:g}% of the MACs: removing all but one unit of every prunable "
                                  f"group removes {100 * (cost.total - cost.now) / cost.total:.2f}%")
    if macs is None and scope == "layer":
        for g, kp in enumerate(keep):
            for _ in range(int((~kp).sum())):
                cost.remove_one(g)
    mask = ChannelMask({p: kp for g, kp in zip(groups, keep) for p in g.producers}, input_shape, [g.producers for g in groups])
    mask.macs_before, mask.macs_after = cost.total, cost.now
    if apply:
        mask.apply(model)
    return mask
