"""Native CPU kernels, built from ``csrc/`` with the system C++ compiler on first use.

HALO's fused pass is the one penalty whose cost matters on compute-light networks (LeNet-300-100:
every weight also carries a trainable scale).  ``torch.compile`` fuses it, but on the CPU the
compiled reduction uses a slow cascade summation, the value needs a second loop, and every call pays
for guard evaluation; a plain C++ loop does value and both gradients in one vectorized pass and is
called through pybind11 for a few microseconds.

The extension is compiled once per machine (about a minute; cached by ``torch.utils.cpp_extension``
under ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``, keyed by this source) and needs a C++
compiler and ninja.  Where it cannot be built, :func:`halo_cpu` returns None (after one warning) and
the penalty uses its ``torch.compile`` kernel instead.  ``SPARSEHALO_COMPILE=0`` disables both.

Under ``torch.compile`` the pass is called as the PyTorch operator ``sparsehalo::halo`` (defined by the
extension; its fake implementation and autograd formula are registered here with ``torch.library``),
so a compiled training step that includes ``penalty()`` needs no graph break; eager calls keep the
direct pybind call and the C++ autograd function, which cost less per call than the dispatcher's
Python autograd wrapper.

The C++ pass implements the hyper-penalty forms of :data:`..hyper.HYPER` under their integer
:attr:`~..hyper.HyperForm.code`; :func:`halo_native_kernel` passes that code, never a number of its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path
from typing import Sequence

import torch

from ..hyper import HYPER
from .elementwise import halo_kernel
from .fused import Kernel, compile_enabled

SOURCE = Path(__file__).with_name("csrc") / "halo_cpu.cpp"
FLAGS = ["-O3", "-fopenmp-simd"]
# Defined by the extension (TORCH_LIBRARY in csrc/halo_cpu.cpp).  Give it a new name if its autograd
# formula below ever changes: torch.compile's caches know an operator by its name only (pytorch#144344).
OP = "sparsehalo::halo"

_module = None
_failed = False
_lock = threading.Lock()  # one build at a time (the demo builds in a thread while a first run trains)


def _ninja_on_path() -> None:
    """torch builds with ``ninja`` from PATH; the pip package installs it beside the interpreter, which is
    not on PATH when a virtual environment is used without activating it."""
    if shutil.which("ninja") is None:
        here = Path(sys.executable).parent
        if (here / "ninja").exists():
            os.environ["PATH"] = f"{here}{os.pathsep}{os.environ.get('PATH', '')}"


def _name() -> str:
    """The extension's name: keyed by the source and the flags, so an edit builds a new one."""
    return f"sparsehalo_halo_cpu_{hashlib.sha256(SOURCE.read_bytes() + ' '.join(FLAGS).encode()).hexdigest()[:10]}"


def _is_built(cpp_extension, name: str) -> bool | None:
    """Whether the extension is in the build cache (None where torch's private helper cannot tell)."""
    try:
        return (Path(cpp_extension._get_build_directory(name, verbose=False)) / f"{name}.so").exists()
    except Exception:  # a private helper of torch: if it moves, we do not know
        return None


def needs_build() -> bool:
    """Whether the first HALO penalty call would compile the extension (not loaded, not failed, not cached,
    compilation enabled)."""
    if _module is not None or _failed or not compile_enabled():
        return False
    from torch.utils import cpp_extension

    return _is_built(cpp_extension, _name()) is False


def halo_cpu():
    """The compiled ``halo_forward`` extension module, or None where it cannot be built (thread-safe)."""
    global _module, _failed
    if _module is not None or _failed:
        return _module
    with _lock:
        if _module is not None or _failed:
            return _module
        try:
            from torch.utils import cpp_extension

            _ninja_on_path()
            name = _name()
            if _is_built(cpp_extension, name) is False:  # one line on stderr: the build takes a while
                print("sparsehalo: compiling the native HALO kernel (once per machine, about a minute)",
                      file=sys.stderr, flush=True)
            module = cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=FLAGS, verbose=False)
            _register_op()
            _module = module
        except Exception as exc:  # no compiler, no ninja, read-only cache, ...
            _failed = True
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            warnings.warn(f"sparsehalo: native HALO kernel not built ({first}); using the torch.compile kernel", stacklevel=2)
    return _module


def _halo_fake(ws, lams, xi, psi, eps2, hyper, budget):
    """``sparsehalo::halo`` on fake tensors: a 0-dim value, then one gradient shaped like each input."""
    torch._check(len(ws) == len(lams), lambda: "sparsehalo::halo: one scale tensor per weight tensor")
    value = ws[0].new_empty(()) if ws else torch.empty(())
    return [value, *(torch.empty_like(t) for t in (*ws, *lams))]


def _halo_setup(ctx, inputs, output):
    """Keep the gradients the pass returned; they are constants to autograd (no double backward)."""
    ctx.n = len(inputs[0])
    ctx.mark_non_differentiable(*output[1:])
    ctx.save_for_backward(*output[1:])


def _halo_backward(ctx, grads):
    """``dL/dw = dL/dP * dP/dw`` and the same for the scales; nothing for the constants."""
    g = grads[0]
    scaled = [g * t for t in ctx.saved_tensors]
    return scaled[: ctx.n], scaled[ctx.n :], None, None, None, None, None


_op_registered = False


def _register_op() -> None:
    """Register the fake implementation and the autograd formula of ``sparsehalo::halo`` (once)."""
    global _op_registered
    if not _op_registered:
        torch.library.register_fake(OP, _halo_fake)
        torch.library.register_autograd(OP, _halo_backward, setup_context=_halo_setup)
        _op_registered = True


@torch.compiler.assume_constant_result
def native_available() -> bool:
    """Whether the extension is built (building it on the first call); a constant to ``torch.compile``,
    which calls it once while tracing."""
    return halo_cpu() is not None


def halo_native_kernel(tensors: list[torch.Tensor], n: int, xi: float, psi: float, eps2: float, hyper: str, budget: float):
    """:func:`.elementwise.halo_kernel` as one C++ pass (``csrc/halo_cpu.cpp``; the operator while compiling)."""
    args = (tensors[:n], tensors[n:], xi, psi, eps2, HYPER[hyper].code, budget)
    out = torch.ops.sparsehalo.halo(*args) if torch.compiler.is_compiling() else halo_cpu().halo_forward(*args, [])
    return out[0], out[1:]


def _halo_native_autograd(tensors: list[torch.Tensor], n: int, xi: float, psi: float, eps2: float, hyper: str, budget: float):
    """The same pass as a C++ autograd function (no Python in the forward or the backward), or, while
    compiling, as the operator with its registered autograd formula (traced into the compiled graph)."""
    args = (tensors[:n], tensors[n:], xi, psi, eps2, HYPER[hyper].code, budget)
    if torch.compiler.is_compiling():
        return torch.ops.sparsehalo.halo(*args)[0]
    return halo_cpu().halo_apply(*args)


halo_native_kernel.native = True
halo_native_kernel.autograd = _halo_native_autograd


def halo_kernel_for(tensors: Sequence[torch.Tensor]) -> Kernel:
    """The native kernel where it applies (contiguous float32 CPU tensors, compilation enabled and the
    extension buildable), else the ``torch.compile`` one (:func:`.elementwise.halo_kernel`)."""
    if compile_enabled() and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors):
        if native_available():
            return halo_native_kernel
    return halo_kernel
