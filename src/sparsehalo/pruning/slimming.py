"""Physical removal of pruned units: a smaller dense model with new shapes and the same outputs.

:func:`slim` copies the model and, for every group of a :class:`~.structured.ChannelMask`, keeps only
the kept rows of its producers (weight and bias), the kept entries of its BatchNorms (scale, shift,
running mean and variance) and the kept input channels of its consumers (the ``factor`` input
features of each kept channel after a flatten).

Why the outputs are equal.  In the *masked* model (:meth:`ChannelMask.apply`) a removed unit is zero
after its producer **and after its BatchNorm**, whose scale and shift are zeroed too: a BatchNorm
with only its conv zeroed would still output its shift ``beta`` (``(0 - mean) / sqrt(var + eps) *
gamma + beta`` in general), which the next layer sees, zero-padded at the borders, so it could not be
folded into a bias exactly.  Every operation the coupling analysis lets a unit pass through maps zero
to zero per channel (ReLU-like activations, pooling, sums of aligned channels), so the removed unit
contributes exactly nothing downstream, and dropping it changes no output beyond float rounding.
``slim`` does not need the model to be masked first: the slimmed network equals the masked one either way.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..selection import unwrap
from .structured import ChannelMask


def _param(old: torch.Tensor, new: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(new.detach().clone().contiguous(), requires_grad=old.requires_grad)


def slim(model: nn.Module, mask: ChannelMask) -> nn.Module:
    """A copy of ``model`` with the removed units of ``mask`` physically gone (new, smaller shapes).

    Conv layers get new ``in_channels`` / ``out_channels``, Linear layers new ``in_features`` /
    ``out_features``, BatchNorms new ``num_features``; everything else is copied as it is, and the
    copy is in the same train / eval mode.  ``model`` is not changed.

    Raises:
        CheckpointError: the mask does not fit ``model`` (:meth:`ChannelMask.check`).
    """
    model = unwrap(model)
    groups = mask.check(model)
    small = copy.deepcopy(model)
    rows: dict[str, torch.Tensor] = {}
    cols: dict[str, torch.Tensor] = {}
    norms: dict[str, torch.Tensor] = {}
    for g in groups:
        kept = mask[g.producers[0]].nonzero().flatten()
        rows.update({p: kept for p in g.producers})
        norms.update({f: kept for f in g.followers})
        for name, factor in g.consumers:
            cols[name] = (kept[:, None] * factor + torch.arange(factor)).flatten()
    with torch.no_grad():
        for name in sorted(set(rows) | set(cols)):
            m = small.get_submodule(name)
            w = m.weight.detach()
            if name in rows:
                w = w.index_select(0, rows[name].to(w.device))
                if m.bias is not None:
                    m.bias = _param(m.bias, m.bias.detach().index_select(0, rows[name].to(m.bias.device)))
            if name in cols:
                w = w.index_select(1, cols[name].to(w.device))
            m.weight = _param(m.weight, w)
            if isinstance(m, nn.Linear):
                m.out_features, m.in_features = w.shape[0], w.shape[1]
            else:
                m.out_channels, m.in_channels = w.shape[0], w.shape[1]
        for name, kept in norms.items():
            bn = small.get_submodule(name)
            for attr in ("weight", "bias"):
                t = getattr(bn, attr)
                if t is not None:
                    setattr(bn, attr, _param(t, t.detach().index_select(0, kept.to(t.device))))
            for attr in ("running_mean", "running_var"):
                t = getattr(bn, attr)
                if t is not None:
                    setattr(bn, attr, t.index_select(0, kept.to(t.device)).clone())
            bn.num_features = len(kept)
    return small
