#!/usr/bin/env python3
"""HALO's kernels alone on LeNet-300-100's tensors: where the fused pass spends its time.

    .venv/bin/python benchmarks/halo_kernel.py [--threads 1]

Prints microseconds per call (medians of interleaved rounds, warm caches) of: the torch.compile kernel
(value + gradients), the native C++ pass writing fresh gradient tensors and writing into reused ones,
`torch.sum` over the same number of elements (a memory-speed yardstick), and the fixed cost of a
penalty's forward + backward on tiny tensors through the compiled kernel's Python autograd function
and through the native C++ autograd function (through the public path, and calling the extension
directly: the difference is the price of the Python in between). Run it once as it is and once after
`sparsehalo.keep_freed_memory()` (`--keep`) to see what fresh allocations cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


import torch  # noqa: E402
from torch import nn  # noqa: E402

from sparsehalo import HALO, keep_freed_memory  # noqa: E402
from sparsehalo.penalties.kernels import elementwise, fused, native  # noqa: E402

SHAPES = [(300, 784), (100, 300), (10, 100)]  # LeNet-300-100's weights


def per_call_us(fn, n: int = 200, rounds: int = 15) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t) / n)
    return 1e6 * statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="call sparsehalo.keep_freed_memory() first")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["SPARSEHALO_COMPILE"] = "1"
    if args.keep:
        keep_freed_memory()
    ext = native.halo_cpu()
    if ext is None:
        print("the native kernel could not be built here")
        return 1
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(s, generator=g) * 0.05 for s in SHAPES]
    lams = [torch.rand(s, generator=g) + 0.5 for s in SHAPES]
    n = sum(w.numel() for w in ws)
    consts = (len(ws), 1e-4, 1e-4, 1e-6, "l1", 0.0)
    bufs = [torch.empty_like(w) for w in ws]
    flat = torch.randn(n, generator=g)

    tiny = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    pen = HALO.for_model(tiny, types=("Linear",), xi=1e-4, psi=1e-4)
    everything = [*tiny.parameters(), *pen.parameters()]

    def tiny_step(kernel_for):
        def step():
            kernel, tensors, c = pen.kernel_call()
            fused.fused(kernel_for, tensors, c).backward()
            for p in everything:
                p.grad = None
        return step

    def direct_step():
        # What the previous row costs without the Python between penalty() and the extension (the
        # checks for torch.compile and the kernel lookup): their difference is that layer's price.
        _, tensors, c = pen.kernel_call()
        ext.halo_apply(tensors[: c[0]], tensors[c[0] :], *c[1:4], 0, 0.0).backward()
        for p in everything:
            p.grad = None

    rows = {
        "torch.compile kernel (value + gradients)": lambda: fused.run_kernel(elementwise.halo_kernel, ws + lams, *consts),
        "native pass, fresh gradient tensors": lambda: ext.halo_forward(ws, lams, 1e-4, 1e-4, 1e-6, 0, 0.0, []),
        "native pass, into reused buffers": lambda: ext.halo_forward(ws, lams, 1e-4, 1e-4, 1e-6, 0, 0.0, bufs),
        f"torch.sum over {n:,} floats (yardstick)": lambda: flat.sum(),
        "tiny forward + backward, compiled kernel + Python Function": tiny_step(elementwise.halo_kernel),
        "tiny forward + backward, native C++ autograd function": tiny_step(native.halo_native_kernel),
        "  the same, calling the extension directly (no dispatch)": direct_step,
    }
    print(f"HALO kernels on LeNet-300-100's {n:,} weights, {torch.get_num_threads()} thread(s), "
          f"allocator: {'kept memory' if args.keep else 'glibc default'}")
    for name, fn in rows.items():
        print(f"{name:<60}{per_call_us(fn):>10.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
