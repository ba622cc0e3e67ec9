"""The kernels of the elementwise penalties: value and every gradient, written out by hand.

Each kernel takes the list of tensors (weights first, then any trainable scales) and plain constants,
and returns ``(value, [gradient of each tensor])``.  They are simple elementwise expressions so that
``torch.compile`` fuses each tensor's work into one loop (see :mod:`.fused`, which runs them); each
one is tested against its penalty's plain autograd ``reference()``.
"""

from __future__ import annotations

import torch

from ..hyper import HYPER


def halo_kernel(tensors: list[torch.Tensor], n: int, xi: float, psi: float, eps2: float, hyper: str, budget: float):
    """HALO: ``xi * sum |w| / (lambda**2 + eps2) + psi * R(S)`` with ``R`` from :data:`.hyper.HYPER`.

    ``tensors`` holds ``n`` weights, then their ``n`` scales (same shapes).
    """
    form = HYPER[hyper]
    ws, lams = tensors[:n], tensors[n:]
    s = None
    if not form.linear:  # R'(S) depends on S = sum |lambda|, needed before any gradient: one more pass
        for lam in lams:
            t = lam.abs().sum()
            s = t if s is None else s + t
    dr = form.slope(s, budget)
    value = s_lin = None
    gws, gls = [], []
    for w, lam in zip(ws, lams):
        inv = 1.0 / (lam * lam + eps2)
        a = w.abs()
        v = (a * inv).sum()
        value = v if value is None else value + v
        if form.linear:  # S in the same pass
            t = lam.abs().sum()
            s_lin = t if s_lin is None else s_lin + t
        gws.append(xi * torch.sign(w) * inv)
        gls.append((-2.0 * xi) * a * lam * inv * inv + (psi * dr) * torch.sign(lam))
    if form.linear:
        s = s_lin
    return xi * value + psi * form.value(s, budget), gws + gls


def l1_kernel(tensors: list[torch.Tensor], coef: float):
    """The lasso ``coef * sum |w|`` (``coef = xi / lambda_init**2``)."""
    value = None
    grads = []
    for w in tensors:
        v = w.abs().sum()
        value = v if value is None else value + v
        grads.append(coef * torch.sign(w))
    return coef * value, grads


def sws_kernel(tensors: list[torch.Tensor], xi: float, psi: float, eps2: float):
    """SWS ``xi * sum |w| / (lambda**2 + eps2) + psi * lambda**2``; the last tensor is the 0-dim ``lambda``."""
    *ws, lam = tensors
    l1 = None
    for w in ws:
        v = w.abs().sum()
        l1 = v if l1 is None else l1 + v
    lam2 = lam * lam
    inv = 1.0 / (lam2 + eps2)
    grads = [(xi * inv) * torch.sign(w) for w in ws]
    glam = -2.0 * xi * l1 * lam * inv * inv + 2.0 * psi * lam
    return xi * l1 * inv + psi * lam2, grads + [glam]


def mcp_kernel(tensors: list[torch.Tensor], lam: float, gamma: float):
    """MCP with slope ``lam`` at zero and concavity ``gamma`` (see :class:`..nonconvex.MCP`)."""
    value = None
    grads = []
    flat = gamma * lam * lam / 2
    for w in tensors:
        a = w.abs()
        inside = a <= gamma * lam
        v = torch.where(inside, lam * a - w * w / (2 * gamma), flat).sum()
        value = v if value is None else value + v
        grads.append(torch.where(inside, lam * torch.sign(w) - w / gamma, 0.0))
    return value, grads


def scad_kernel(tensors: list[torch.Tensor], lam: float, alam: float, flat: float, am1: float):
    """SCAD with ``alam = a * lam``, ``flat = lam**2 (a + 1) / 2``, ``am1 = a - 1`` precomputed (derived
    scalars computed inside a dynamic-shape graph trip a guard bug of the compiler)."""
    value = None
    grads = []
    for w in tensors:
        x = w.abs()
        s = torch.sign(w)
        lin = x <= lam
        mid = (x > lam) & (x <= alam)
        v = torch.where(lin, lam * x, torch.where(mid, (2 * alam * x - w * w - lam * lam) / (2 * am1), flat))
        value = v.sum() if value is None else value + v.sum()
        grads.append(torch.where(lin, lam * s, torch.where(mid, (alam * s - w) / am1, 0.0)))
    return value, grads
