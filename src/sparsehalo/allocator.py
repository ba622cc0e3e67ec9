"""Keep freed memory inside the process (glibc malloc tuning for CPU training).

PyTorch's CPU tensors come from ``malloc``.  With glibc's defaults, blocks of a megabyte or more are
returned to the operating system when freed (``munmap`` or a trim of the heap top), so a training step
that allocates parameter-sized gradients afresh every step can page-fault on them again (how often
depends on the history of the heap).  HALO allocates two parameter-sized gradients per step (weights
and scales), so on compute-light networks this shows in its overhead; plain training pays it too, for
its own gradients.  `benchmarks/penalty_overhead.py --repeats 4` measures the effect on a training step.

:func:`keep_freed_memory` fixes the mmap threshold at its maximum (32 MiB on 64-bit, which also stops
glibc's dynamic adjustment) and disables heap trimming, so freed blocks are reused instead of being
faulted in again: the CPU counterpart of the CUDA caching allocator (jemalloc or tcmalloc through
``LD_PRELOAD`` achieve the same).  The process then keeps its peak heap until it exits.  It is a no-op
where the C library is not glibc.  The training loop calls it unless ``run.keep_freed_memory = false``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems

_done = False


def keep_freed_memory() -> bool:
    """Tune glibc's malloc to keep freed memory for reuse; True when applied (idempotent)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _done = ok
    return ok
