"""The fast path of every elementwise penalty: value and gradients in one fused pass.

A plain autograd formulation of ``xi * sum |w| / lambda**2`` runs a dozen elementwise kernels over
every penalized tensor in the forward and again in the backward, each one a full memory pass, plus
temporaries.  For parameter-heavy, compute-light networks this costs more than the network itself.

Here a penalty supplies one pure *kernel* ``(tensors, consts) -> (value, grads)`` computing the value
and the gradient of every input in the same loop over memory (the kernels are in :mod:`.elementwise`;
this module is the machinery that runs them).  :class:`_Fused` runs it in the forward
(under no-grad), keeps the gradients, and hands them to autograd in the backward, scaled by the
incoming gradient only when that is not exactly 1 (on the CPU, where checking costs nothing).  The
kernel is compiled with ``torch.compile`` (dynamic shapes, so one compilation serves every tensor
size) into a single vectorized loop; where compilation is unavailable or disabled
(``SPARSEHALO_COMPILE=0``), the same kernel runs eagerly, which is slower but still cheaper than the
reference.  Each penalty keeps its plain formulation as ``reference()``; tests compare the two.

HALO on the CPU goes one step further (:func:`.native.halo_kernel_for`): a C++ pass
(``csrc/halo_cpu.cpp``, built on first use by :mod:`.native`) with its own C++ autograd function
(a kernel's ``autograd`` attribute), so neither the forward nor the backward runs Python or the
compiler's guards; the compiled kernel remains its fallback.

Inside a ``torch.compile``d function the kernels are traced instead of run: HALO's native pass as the
operator ``sparsehalo::halo`` (see :mod:`.native`), the others as their value expression, which the
compiler differentiates and fuses with the rest of the graph (their hand-written gradients are then
dead code), so ``penalty()`` never breaks the graph.

Limits: the gradients are those of the weights at the time of the call (as for any loss term), and the
result is differentiable once (no double backward).
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, Sequence

import torch
from torch.autograd.function import once_differentiable

Kernel = Callable[..., tuple[torch.Tensor, list[torch.Tensor]]]

_compiled: dict[Kernel, Callable] = {}
_failed: set[Kernel] = set()


def compile_enabled() -> bool:
    """False when ``SPARSEHALO_COMPILE`` is ``0`` / ``false`` / ``no`` (kernels then run eagerly)."""
    return os.environ.get("SPARSEHALO_COMPILE", "1") not in ("0", "false", "no")


def run_kernel(kernel: Kernel, *args):
    """Run ``kernel`` compiled when possible, falling back to eager (once, with a warning).

    Kernels marked ``native`` are already compiled code and are called as they are.

    Returns:
        ``(value, grads)`` as the kernel returns them.
    """
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
    when a gradient is wanted, else just its value; while compiling, trace it (see the module docstring).

    Args:
        kernel: ``(tensors, *consts) -> (value, grads)``.
        tensors: its tensor inputs (weights first, then any trainable scales).
        consts: its plain (non-tensor) arguments.

    Returns:
        The 0-dim value, differentiable in ``tensors`` when a gradient is wanted.
    """
    if torch.compiler.is_compiling() and not getattr(kernel, "native", False):
        return kernel(list(tensors), *consts)[0]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        own = getattr(kernel, "autograd", None)
        return own(list(tensors), *consts) if own is not None else _Fused.apply(kernel, consts, *tensors)
    with torch.no_grad():
        return run_kernel(kernel, list(tensors), *consts)[0]
