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

The C++ pass implements the hyper-penalty forms of :data:`..hyper.HYPER` under their integer
:attr:`~..hyper.HyperForm.code`; :func:`halo_native_kernel` passes that code, never a number of its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Sequence

import torch

from ..hyper import HYPER
from .elementwise import halo_kernel
from .fused import Kernel, compile_enabled

SOURCE = Path(__file__).with_name("csrc") / "halo_cpu.cpp"
FLAGS = ["-O3", "-fopenmp-simd"]

_module = None
_failed = False


def _ninja_on_path() -> None:
    """torch builds with ``ninja`` from PATH; the pip package installs it beside the interpreter, which is
    not on PATH when a virtual environment is used without activating it."""
    if shutil.which("ninja") is None:
        here = Path(sys.executable).parent
        if (here / "ninja").exists():
            os.environ["PATH"] = f"{here}{os.pathsep}{os.environ.get('PATH', '')}"


def _announce_build(cpp_extension, name: str) -> None:
    """One line on stderr when the extension is not in the build cache yet (the build takes a while)."""
    try:
        built = (Path(cpp_extension._get_build_directory(name, verbose=False)) / f"{name}.so").exists()
    except Exception:  # a private helper of torch: if it moves, just say nothing
        return
    if not built:
        print("sparsehalo: compiling the native HALO kernel (once per machine, about a minute)", file=sys.stderr, flush=True)


def halo_cpu():
    """The compiled ``halo_forward`` extension module, or None where it cannot be built."""
    global _module, _failed
    if _module is not None or _failed:
        return _module
    try:
        from torch.utils import cpp_extension

        _ninja_on_path()
        text = SOURCE.read_bytes()
        tag = hashlib.sha256(text + " ".join(FLAGS).encode()).hexdigest()[:10]
        name = f"sparsehalo_halo_cpu_{tag}"
        _announce_build(cpp_extension, name)
        _module = cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=FLAGS, verbose=False)
    except Exception as exc:  # no compiler, no ninja, read-only cache, ...
        _failed = True
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        warnings.warn(f"sparsehalo: native HALO kernel not built ({first}); using the torch.compile kernel", stacklevel=2)
    return _module


def halo_native_kernel(tensors: list[torch.Tensor], n: int, xi: float, psi: float, eps2: float, hyper: str, budget: float):
    """:func:`.elementwise.halo_kernel` as one C++ pass (``csrc/halo_cpu.cpp``)."""
    out = halo_cpu().halo_forward(tensors[:n], tensors[n:], xi, psi, eps2, HYPER[hyper].code, budget, [])
    return out[0], out[1:]


def _halo_native_autograd(tensors: list[torch.Tensor], n: int, xi: float, psi: float, eps2: float, hyper: str, budget: float):
    """The same pass as a C++ autograd function (no Python in the forward or the backward)."""
    return halo_cpu().halo_apply(tensors[:n], tensors[n:], xi, psi, eps2, HYPER[hyper].code, budget)


halo_native_kernel.native = True
halo_native_kernel.autograd = _halo_native_autograd


def halo_kernel_for(tensors: Sequence[torch.Tensor]) -> Kernel:
    """The native kernel where it applies (contiguous float32 CPU tensors, compilation enabled and the
    extension buildable), else the ``torch.compile`` one (:func:`.elementwise.halo_kernel`)."""
    if compile_enabled() and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors):
        if halo_cpu() is not None:
            return halo_native_kernel
    return halo_kernel
