"""Target mode on MACs for group HALO (``target_macs``): ask for "half the MACs", get it from one run.

The design of HALO's target mode (:mod:`.target`), with MACs in place of weights.  A *unit* is a coupled
set of output channels / neurons (:mod:`sparsehalo.pruning.coupling`: a conv's channel with its
BatchNorm entry and every layer reading it, across residual sums); its norm is

    n_u = sqrt( sum_{s in stages(u)} ||w_s[u]||^2 ),

over the penalty's groups of its stages (each of which has its own scale): its producers, or for a
producer normalized by its own BatchNorm that BatchNorm's ``(gamma_u, beta_u)``
(:attr:`sparsehalo.pruning.coupling.Group.stages`, the same norm as the final prune's).  Every training step:

* **measured** ``s``: the share of the network's dense MACs removed by deleting every unit at zero,
  ``n_u <= zero_eps * sqrt(entries of u)`` (each entry within ``zero_eps``, in RMS), each prunable group
  keeping one unit; MACs are exact (:class:`~sparsehalo.pruning.structured.MacsCounter`, the final prune's own
  counter: every Conv / Linear layer costs ``c_L * k_out * k_in``, ``k`` its kept units);
* **prune set** ``P``: the units that the final ``prune_channels(macs=target)`` would remove now: in
  the order of the normalized norm ``n_u / rms_g`` (global scope of :mod:`sparsehalo.pruning.structured`),
  removed one at a time until the MACs removed reach the target;
* the controller (:class:`~.target.SparsityController`, the same PI law, schedule and bounds) sets the
  strength ``m`` from ``s``; knob ``both`` (default) lightens the hyper-penalty while ``m < 1`` and adds
  ``(m - 1) xi sum_{u in P} sum_p ||w_p[u]|| / (lambda_p[u]^2 + eps^2)`` while ``m > 1``, so only the
  units the final prune removes feel the extra pull.

The measurement and the prune set are computed on the CPU from the group norms (one host transfer of
``#units`` numbers per step and a walk over the units in Python: about 1 ms for the 570 units of
LeNet-5-Caffe here).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from ..pruning.coupling import coupled_groups
from ..pruning.structured import MacsCounter


class MacsTarget:
    """The network's structure as the MACs target needs it, built once from the model.

    Args:
        model: the network (traced once on an all-zero input of ``input_shape``).
        input_shape: one example's shape, without the batch dimension.
        sets: the penalty's group sets (:func:`.group.group_sets`), in the penalty's order.
        zero_eps: an entry within this of zero counts as zero (``|w| <= 1e-3``, as HALO's tables).
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], sets, zero_eps: float = 1e-3):
        every = coupled_groups(model, tuple(input_shape))
        index = {s.name: i for i, s in enumerate(sets)}
        self.groups, self.members = [], []
        for g in every:
            stages = g.stages or g.producers
            members = tuple(index[p + ".weight"] for p in stages if p + ".weight" in index)
            # A unit is driven only if every stage of it is penalized (otherwise it never reaches zero).
            if g.prunable and members and len(members) == len(stages):
                self.groups.append(g)
                self.members.append(members)
        if not self.groups:
            bn = any(g.prunable and set(g.stages) != set(g.producers) for g in every)
            raise ConfigError("target_macs: no prunable channel or neuron group has all its layers penalized" + (
                " (a channel normalized by a BatchNorm is zero only when the BatchNorm's scale and shift are: "
                "penalize the BatchNorms, types = [\"BatchNorm2d\", ...] with biases = true)" if bn else ""))
        self.costs = MacsCounter(model, tuple(input_shape), self.groups, every)
        entries = [sum(sets[i].group_size for i in m) for m in self.members]
        self.thresholds = [zero_eps * math.sqrt(e) for e in entries]
        self.num_sets = len(sets)
        self.set_sizes = [s.num_groups for s in sets]

    def unit_norms(self, magnitudes: list[torch.Tensor]) -> list[torch.Tensor]:
        """``n_u`` per group (float64, CPU) from the penalty's per-set group norms."""
        cpu = [m.detach().double().cpu() for m in magnitudes]
        return [sum(cpu[i].square() for i in members).sqrt() for members in self.members]

    def measured(self, norms: list[torch.Tensor]) -> float:
        """The share of MACs removed by deleting every unit at zero (each group keeps one)."""
        kept = [max(1, int((n > t).sum())) for n, t in zip(norms, self.thresholds)]
        return 1.0 - self.costs.macs(kept) / self.costs.total

    def prune_set(self, norms: list[torch.Tensor], target: float) -> list[torch.Tensor]:
        """Per set, a bool mask of the groups (rows) in the units the final MACs prune would remove now."""
        keys, gid, uid = [], [], []
        for g, n in enumerate(norms):
            rms = n.square().mean().sqrt()
            keys.append(n / rms if rms > 0 else torch.zeros_like(n))
            gid.append(torch.full((n.numel(),), g))
            uid.append(torch.arange(n.numel()))
        order = torch.argsort(torch.cat(keys), stable=True)
        gid, uid = torch.cat(gid)[order].tolist(), torch.cat(uid)[order].tolist()
        kept = [g.size for g in self.groups]
        need, saved = math.ceil(round(target * self.costs.total, 6)), 0  # as prune_channels counts it
        out = [torch.zeros(size, dtype=torch.bool) for size in self.set_sizes]
        for g, u in zip(gid, uid):
            if saved >= need:
                break
            if kept[g] == 1:
                continue
            saved += self.costs.marginal(g, kept)
            kept[g] -= 1
            for i in self.members[g]:
                out[i][u] = True
        return out
