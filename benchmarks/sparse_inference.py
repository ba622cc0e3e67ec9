"""Dense against sparse (auto) inference of LeNet-300-100 at 90/95/98/99% sparsity, batch 1 and 256.

One process, one thread.  For each sparsity the pruned model and its :func:`sparsehalo.sparse.sparsify`
copy are timed side by side on real MNIST test images: calls alternate in short blocks (20 dense
calls, 20 sparse, ...; 5 at batch 256) so load from other processes hits both alike, the first call of
each block is dropped (its caches were just filled by the other model), and the median of many calls
is reported as latency (microseconds per call) and throughput (images per second).  The sparse copy is calibrated first
(one call per batch size) and its outputs are checked against dense (1e-5 relative).

Weights: a LeNet-300-100 trained here on the bundled MNIST (see ``export_size.py``) and pruned by
global magnitude, or with ``--run-dir RUN`` that run's final weights pruned the same way.  Random
weights are not used by default: global magnitude pruning of an untrained network removes all of
``fc1`` at 98%, which is not a network anyone would run.

``--survey`` also times every sparse kernel that was tried on the largest layer (fc1, 784->300) at
99%, and a sparse Conv2d (unfold + CSR) against ``F.conv2d``, the measurements behind the kernel choice
documented in ``sparsehalo/sparse.py``.

    .venv/bin/python benchmarks/sparse_inference.py [--quick] [--run-dir RUN] [--survey]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_size import LEVELS, pruned_models  # noqa: E402

from sparsehalo.data import load_dataset  # noqa: E402
from sparsehalo.sparse import SparseLinear, choices, sparsify  # noqa: E402

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
BATCHES = (1, 256)
TARGET_SPEEDUP_256 = 4.0


def interleaved_medians(fns: dict, repeats: int, warmup: int = 20, block: int = 1) -> dict[str, float]:
    """Median seconds per call of each function over ``repeats`` calls, in alternating blocks.

    With ``block > 1`` each function runs ``block`` calls in a row and the first call of every block
    is not counted: it pays for the other function's data having pushed this one's out of the caches,
    which a model running on its own would not.  Alternating blocks still spreads any load from other
    processes evenly over the functions.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    rounds = max(1, repeats // max(block - 1, 1))
    for _ in range(rounds):
        for name, fn in fns.items():
            for i in range(block):
                t0 = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - t0
                if block == 1 or i > 0:
                    times[name].append(elapsed)
    return {name: statistics.median(ts) for name, ts in times.items()}


def compare(models: dict, data, quick: bool) -> list[dict]:
    images = torch.cat([x for x, _ in data.test.batches(1000)])[: max(BATCHES)]
    rows = []
    for level, model in models.items():
        fast = sparsify(model)
        for batch in BATCHES:
            x = images[:batch].contiguous()
            with torch.inference_mode():
                ref = model(x)
                out = fast(x)  # the first call per batch size calibrates
                torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
                repeats = (500 if quick else 3000) if batch == 1 else (50 if quick else 400)
                t = interleaved_medians({"dense": lambda: model(x), "sparse": lambda: fast(x)}, repeats, block=20 if batch == 1 else 5)
            rows.append(
                {
                    "sparsity": level,
                    "batch": batch,
                    "dense_s": t["dense"],
                    "sparse_s": t["sparse"],
                    "choices": " ".join(f"{name}:{c.get(batch, '-')}" for name, c in choices(fast).items()),
                }
            )
    return rows


def print_rows(rows: list[dict]) -> bool:
    print(f"{'sparsity':>8} {'batch':>5} {'dense us':>9} {'dense img/s':>12} {'sparse us':>9} {'sparse img/s':>12} {'speedup':>7}  kernels (auto)")
    ok = True
    for r in rows:
        speedup = r["dense_s"] / r["sparse_s"]
        print(
            f"{r['sparsity']:>8.0%} {r['batch']:>5} {1e6 * r['dense_s']:>9.1f} {r['batch'] / r['dense_s']:>12,.0f} "
            f"{1e6 * r['sparse_s']:>9.1f} {r['batch'] / r['sparse_s']:>12,.0f} {speedup:>6.2f}x  {r['choices']}"
        )
        if r["sparsity"] == 0.99 and r["batch"] == 256:
            ok &= speedup >= TARGET_SPEEDUP_256
        if r["batch"] == 1:
            ok &= speedup >= 0.95  # "never slower", within 5% timing noise
    print(f"# targets at 99%: >= {TARGET_SPEEDUP_256:g}x dense throughput at batch 256; never slower than dense at batch 1")
    return ok


# --- kernel survey -------------------------------------------------------------------------------------


def _gather(xt, col, val, row, bias, out_features):
    g = xt.index_select(0, col) * val[:, None]
    return bias[:, None].expand(out_features, xt.shape[1]).clone().index_add_(0, row, g)


def survey(model, quick: bool) -> None:
    """Every sparse kernel tried, on fc1 of the 99% model; then sparse Conv2d via unfold."""
    w, b = model.fc1.weight.detach(), model.fc1.bias.detach()
    out_f, in_f = w.shape
    csr, coo = w.to_sparse_csr(), w.to_sparse().coalesce()
    csr_t = w.t().contiguous().to_sparse_csr()
    col, val = csr.col_indices(), csr.values()
    row = torch.repeat_interleave(torch.arange(out_f), csr.crow_indices().diff())
    lengths = csr.crow_indices().diff()
    layer = SparseLinear(w, b)
    print(f"\n# kernel survey: fc1 {out_f}x{in_f}, {int((w != 0).sum()):,} non-zeros ({1 - (w != 0).float().mean().item():.1%} sparse); microseconds per call, median, blocks as above")
    for batch in BATCHES:
        x = torch.randn(batch, in_f)
        xt = x.t().contiguous()

        def gather_index_add():
            g = xt.index_select(0, col).mul_(val[:, None])
            return b[:, None].expand(out_f, batch).clone().index_add_(0, row, g)

        def gather_segment():
            g = xt.index_select(0, col).mul_(val[:, None])
            return torch.segment_reduce(g, "sum", lengths=lengths) + b[:, None]

        kernels = {
            "dense F.linear": lambda: F.linear(x, w, b),
            "csr mm(W, x^T) + add_(b)": lambda: torch.sparse.mm(csr, xt).add_(b[:, None]),
            "csr addmm(b, W, x^T)": lambda: torch.addmm(b[:, None], csr, xt),
            "csr addmm(b, W, x.t()) (transposes x)": lambda: torch.addmm(b[:, None], csr, x.t()),
            "x.t().contiguous() alone": lambda: x.t().contiguous(),
            "coo mm(W, x^T) + add_(b)": lambda: torch.sparse.mm(coo, xt).add_(b[:, None]),
            "dense@sparse x@W^T (csr)": lambda: torch.mm(x, csr_t).add_(b),
            "gather: index_select+index_add": gather_index_add,
            "gather: index_select+segment_reduce": gather_segment,
            "SparseLinear.run('csr')": lambda: layer.run(x, "csr"),
            "SparseLinear.run('csr_colmajor')": lambda: layer.run(x, "csr_colmajor"),
        }
        if batch == 1:
            kernels["csr addmv(b, W, x)"] = lambda: torch.addmv(b, csr, x[0])
        for block in ((2, 2), (4, 4)):
            bsr = w.to_sparse_bsr(block)
            kernels[f"bsr {block[0]}x{block[1]} W@x^T"] = lambda bsr=bsr: torch.sparse.mm(bsr, xt)
        try:
            compiled = torch.compile(_gather, dynamic=False)
            # Plain copies: dynamo cannot trace views into a sparse tensor's index arrays.
            args = (col.clone(), val.clone(), row, b, out_f)
            t0 = time.perf_counter()
            compiled(xt, *args)
            compile_s = time.perf_counter() - t0
            kernels[f"torch.compile gather (compile {compile_s:.1f} s)"] = lambda: compiled(xt, *args)
        except Exception as exc:  # no compiler on the machine, or an inductor limitation
            print(f"#   torch.compile gather: unavailable ({type(exc).__name__})")
        with torch.inference_mode():
            t = interleaved_medians(kernels, repeats=(100 if quick else 500) if batch == 1 else (20 if quick else 100), warmup=5, block=20 if batch == 1 else 5)
        print(f"#  batch {batch}:")
        for name, s in t.items():
            print(f"#    {name:<44} {1e6 * s:>9.1f}")

    print("\n# sparse Conv2d (unfold + CSR) against F.conv2d, 99% random sparsity, microseconds per call")
    torch.manual_seed(0)
    for c_out, c_in, k, hw in ((20, 1, 5, 28), (50, 20, 5, 12)):  # LeNet-5-Caffe's two convolutions
        cw = torch.randn(c_out, c_in, k, k)
        cw[torch.rand_like(cw) < 0.99] = 0
        ccsr = cw.reshape(c_out, -1).to_sparse_csr()
        ho = hw - k + 1
        for batch in BATCHES:
            x = torch.randn(batch, c_in, hw, hw)

            def sparse_conv():
                cols = F.unfold(x, k).transpose(0, 1).reshape(c_in * k * k, -1)
                return torch.sparse.mm(ccsr, cols).view(c_out, batch, ho, ho).transpose(0, 1)

            with torch.inference_mode():
                t = interleaved_medians({"conv": lambda: F.conv2d(x, cw), "sparse": sparse_conv}, repeats=20 if quick else 60, warmup=3, block=5)
            print(f"#   conv {c_out}x{c_in}x{k}x{k} on {hw}x{hw}, batch {batch:>3}: F.conv2d {1e6 * t['conv']:>8.0f}  unfold+csr {1e6 * t['sparse']:>8.0f}  ({t['conv'] / t['sparse']:.2f}x)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="train less and time fewer calls")
    p.add_argument("--run-dir", type=Path, help="use this LeNet-300-100 run's final weights instead of training")
    p.add_argument("--survey", action="store_true", help="also time every kernel tried, and sparse Conv2d")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset("mnist")
    models, _ = pruned_models(data, args.quick, args.run_dir, levels=LEVELS, finetune=False)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} thread, median over calls in alternating blocks")
    ok = print_rows(compare(models, data, args.quick))
    if args.survey:
        survey(models[0.99], args.quick)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
