"""The fast path of every elementwise penalty: value and gradients in one fused pass.

A plain autograd formulation of ``xi * sum |w| / lambda**2`` runs a dozen elementwise kernels over
every penalized tensor in the forward and again in the backward, each one a full memory pass, plus
temporaries.  For parameter-heavy, compute-light networks this costs more than the network itself.

Here a penalty supplies one pure *kernel* ``(tensors, consts) -> (value, grads)`` computing the value
and the gradient of every input in the same loop over memory.  :class:`_Fused` runs it in the forward
(under no-grad), keeps the gradients, and hands them to autograd in the backward, scaled by the
incoming gradient only when that is not exactly 1 (on the CPU, where checking costs nothing).  The
kernel is compiled with ``torch.compile`` (dynamic shapes, so one compilation serves every tensor
size) into a single vectorized loop; where compilation is unavailable or disabled
(``SPARSEHALO_COMPILE=0``), the same kernel runs eagerly, which is slower but still cheaper than the
reference.  Each penalty keeps its plain formulation as ``reference()``; tests compare the two.

HALO on the CPU goes one step further (:func:`halo_kernel_for`): a C++ pass (``csrc/halo_cpu.cpp``,
built on first use by :mod:`.native`) with its own C++ autograd function, so neither the forward nor
the backward runs Python or the compiler's guards; the compiled kernel remains its fallback.

Limits: the gradients are those of the weights at the time of the call (as for any loss term), and the
result is differentiable once (no double backward).
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, Sequence

import torch
from torch.autograd.function import once_differentiable

from . import native

Kernel = Callable[..., tuple[torch.Tensor, list[torch.Tensor]]]

_compiled: dict[Kernel, Callable] = {}
_failed: set[Kernel] = set()


def compile_enabled() -> bool:
    return os.environ.get("SPARSEHALO_COMPILE", "1") not in ("0", "false", "no")


def run_kernel(kernel: Kernel, *args):
    """Run ``kernel`` compiled when possible, falling back to eager (once, with a warning).

    Kernels marked ``native`` are already compiled code and are called as they are."""
    if not compile_enabled() or kernel in _failed or getattr(kernel, "native", False):
        return kernel(*args)
    fn = _compiled.get(kernel)
    if fn is None:
        fn = _compiled[kernel] = torch.compile(kernel, dynamic=True)
    try:
        return fn(*args)
    except Exception as exc:  # no C++ compiler, unsupported backend, ...
        _failed.add(kernel)
        warnings.warn(f"sparsehalo: penalty kernel not compiled ({type(exc).__name__}); running it eagerly", stacklevel=2)
        return kernel(*args)


class _Fused(torch.autograd.Function):
    """``value = kernel(...)``; backward returns the gradients the kernel computed with it."""

    @staticmethod
    def forward(ctx, kernel: Kernel, consts: tuple, *tensors: torch.Tensor) -> torch.Tensor:
        value, grads = run_kernel(kernel, list(tensors), *consts)
        ctx.kernel, ctx.consts = kernel, consts
        ctx.save_for_backward(*tensors)
        ctx.grads = grads
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        grads, ctx.grads = ctx.grads, None  # drop our references so autograd can take the tensors over
        if grads is None:  # a second backward through the same graph (retain_graph): recompute
            with torch.no_grad():
                grads = run_kernel(ctx.kernel, list(ctx.saved_tensors), *ctx.consts)[1]
        if g.device.type != "cpu" or g.item() != 1.0:
            grads = [t.mul_(g) for t in grads]
        return (None, None, *(t if need else None for t, need in zip(grads, ctx.needs_input_grad[2:])))


def fused(kernel: Kernel, tensors: Sequence[torch.Tensor], consts: tuple = ()) -> torch.Tensor:
    """Apply ``kernel`` through :class:`_Fused` (or the kernel's own autograd function, where it has one)
    when a gradient is wanted, else just its value."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        own = getattr(kernel, "autograd", None)
        return own(list(tensors), *consts) if own is not None else _Fused.apply(kernel, consts, *tensors)
    with torch.no_grad():
        return run_kernel(kernel, list(tensors), *consts)[0]


# -- kernels -----------------------------------------------------------------------------------
# Each takes the list of tensors (weights first, then any trainable scales) and plain constants, and
# returns (value, [gradient of each tensor]).  They are written as simple elementwise expressions so
# that the compiler fuses each tensor's work into one loop.


def halo_kernel(tensors: list[torch.Tensor], n: int, xi: float, psi: float, eps2: float, hyper: str, budget: float):
    ws, lams = tensors[:n], tensors[n:]
    dr = 1.0
    if hyper != "l1":  # the budget forms need S = sum |lambda| before any gradient: one more pass
        s = None
        for lam in lams:
            t = lam.abs().sum()
            s = t if s is None else s + t
        dr = torch.sign(s - budget) if hyper == "budget" else 2.0 * (s - budget)
    value = s_l1 = None
    gws, gls = [], []
    for w, lam in zip(ws, lams):
        inv = 1.0 / (lam * lam + eps2)
        a = w.abs()
        v = (a * inv).sum()
        value = v if value is None else value + v
        if hyper == "l1":
            t = lam.abs().sum()
            s_l1 = t if s_l1 is None else s_l1 + t
        gws.append(xi * torch.sign(w) * inv)
        gls.append((-2.0 * xi) * a * lam * inv * inv + (psi * dr) * torch.sign(lam))
    if hyper == "l1":
        r = s_l1
    elif hyper == "budget":
        r = (s - budget).abs()
    else:
        r = (s - budget) ** 2
    return xi * value + psi * r, gws + gls


HYPER_CODES = {"l1": 0, "budget": 1, "budget_sq": 2}


def halo_native_kernel(tensors: list[torch.Tensor], n: int, xi: float, psi: float, eps2: float, hyper: str, budget: float):
    """:func:`halo_kernel` as one C++ pass (``csrc/halo_cpu.cpp``; see :mod:`.native`)."""
    out = native.halo_cpu().halo_forward(tensors[:n], tensors[n:], xi, psi, eps2, HYPER_CODES[hyper], budget, [])
    return out[0], out[1:]


def _halo_native_autograd(tensors: list[torch.Tensor], n: int, xi: float, psi: float, eps2: float, hyper: str, budget: float):
    """The same pass as a C++ autograd function (no Python in the forward or the backward)."""
    return native.halo_cpu().halo_apply(tensors[:n], tensors[n:], xi, psi, eps2, HYPER_CODES[hyper], budget)


halo_native_kernel.native = True
halo_native_kernel.autograd = _halo_native_autograd


def halo_kernel_for(tensors: Sequence[torch.Tensor]) -> Kernel:
    """The native kernel where it applies (contiguous float32 CPU tensors, compilation enabled and the
    extension buildable), else the ``torch.compile`` one."""
    if compile_enabled() and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors):
        if native.halo_cpu() is not None:
            return halo_native_kernel
    return halo_kernel


def l1_kernel(tensors: list[torch.Tensor], coef: float):
    value = None
    grads = []
    for w in tensors:
        v = w.abs().sum()
        value = v if value is None else value + v
        grads.append(coef * torch.sign(w))
    return coef * value, grads


def sws_kernel(tensors: list[torch.Tensor], xi: float, psi: float, eps2: float):
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
