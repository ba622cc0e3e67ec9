"""Size of the sparse export of LeNet-300-100 at 90/95/98/99% sparsity, and what fp16 values cost.

For each sparsity: the dense fp32 payload, the sparse file with fp32 and with fp16 values (bytes and
percent of dense), the encoding of each pruned weight, and the MNIST test accuracy of the model
decoded from each file.  The fp32 file must reproduce the model's test logits bit for bit; fp16 values
are acceptable where accuracy moves by less than 0.05 points (5 of the 10,000 test images).

Weights: by default a LeNet-300-100 trained here on the bundled MNIST (plain SGD, a few epochs),
pruned by global magnitude at each level and fine-tuned briefly with the mask enforced, so the
accuracies are those of a usable model.  With ``--run-dir RUN`` the run's final weights are used
instead, pruned by global magnitude without fine-tuning (``RUN/pruned/sparsity-S.pt`` when it exists).
Nothing is written into the run directory.

    .venv/bin/python benchmarks/export_size.py [--quick] [--run-dir RUN]
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from sparsehalo import export, models, paths
from sparsehalo.data import load_dataset
from sparsehalo.io import load_torch
from sparsehalo.pruning import prune
from sparsehalo.training import build_model, config_of

LEVELS = (0.9, 0.95, 0.98, 0.99)
FP16_MAX_DELTA = 0.05  # accuracy points


def train(model, data, epochs: float, lr: float, seed: int = 0, mask=None) -> None:
    """Plain SGD with momentum and a cosine schedule; ``mask`` keeps pruned weights at zero."""
    steps_per_epoch = data.train.num_batches(100)
    total = max(1, int(epochs * steps_per_epoch))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    handle = mask.enforce(model, opt) if mask is not None else None
    model.train()
    step = 0
    for epoch in range(math.ceil(epochs)):
        for x, y in data.train.batches(100, shuffle=True, seed=seed, epoch=epoch):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step >= total:
                break
        if step >= total:
            break
    if handle is not None:
        handle.remove()
    model.eval()


@torch.no_grad()
def logits(model, data) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x) for x, _ in data.test.batches(1000)])


def accuracy(out: torch.Tensor, data) -> float:
    labels = torch.cat([y for _, y in data.test.batches(1000)])
    return 100.0 * (out.argmax(1) == labels).double().mean().item()


def trained_lenet300(data, quick: bool, seed: int = 0):
    """A LeNet-300-100 trained on MNIST for 2 (quick) or 5 epochs."""
    torch.manual_seed(seed)
    model = models.build("lenet300")
    train(model, data, epochs=2 if quick else 5, lr=0.1, seed=seed)
    return model


def run_model(run_dir: Path):
    """The final weights of a run directory, and a loader of its pruned checkpoints when present."""
    ckpt = load_torch(paths.checkpoint(run_dir), required=("model", "config"))
    config = config_of(ckpt, paths.checkpoint(run_dir))
    if config.model.name != "lenet300":
        sys.exit(f"{run_dir} holds a {config.model.name}, this benchmark is about lenet300")
    model = build_model(config, 10)
    model.load_state_dict(ckpt["model"])
    return model.eval()


def pruned_models(data, quick: bool, run_dir: Path | None, levels=LEVELS, finetune: bool = True, echo=print) -> tuple[dict, str]:
    """``{level: pruned model}`` and a line saying where the weights came from."""
    t0 = time.perf_counter()
    if run_dir is None:
        base = trained_lenet300(data, quick)
        source = f"LeNet-300-100 trained here ({2 if quick else 5} epochs SGD on MNIST)"
    else:
        base = run_model(run_dir)
        source = f"final weights of {run_dir}"
    out = {}
    for level in levels:
        stored = paths.pruned_checkpoint(run_dir, level) if run_dir is not None else None
        if stored is not None and stored.is_file():
            model = copy.deepcopy(base)
            model.load_state_dict(load_torch(stored, required=("model",))["model"])
        else:
            model = copy.deepcopy(base)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mask = prune(model, level, scope="global")
            if run_dir is None and finetune:
                train(model, data, epochs=0.5 if quick else 2, lr=0.01, seed=int(level * 1000), mask=mask)
        out[level] = model.eval()
    how = "pruned by global magnitude" + (", fine-tuned with the mask" if run_dir is None and finetune else ", not fine-tuned")
    echo(f"# weights: {source}; {how} ({time.perf_counter() - t0:.0f} s)")
    return out, source


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="train less (2 epochs + 0.5 epoch fine-tuning per level)")
    p.add_argument("--run-dir", type=Path, help="use this LeNet-300-100 run's final weights instead of training")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset("mnist")
    pruned, _ = pruned_models(data, args.quick, args.run_dir)

    rows = []
    all_ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for level, model in pruned.items():
            ref = logits(model, data)
            acc = accuracy(ref, data)
            dense = export.export_dense(model, Path(tmp) / "model.pt")
            r32 = export.export_sparse(model, Path(tmp) / "fp32.safetensors")
            r16 = export.export_sparse(model, Path(tmp) / "fp16.safetensors", values_dtype=torch.float16)
            out32 = logits(export.load_sparse(r32["path"], models.build("lenet300")), data)
            out16 = logits(export.load_sparse(r16["path"], models.build("lenet300")), data)
            identical = torch.equal(out32, ref)
            acc16 = accuracy(out16, data)
            flips = int((out16.argmax(1) != ref.argmax(1)).sum())
            delta = acc16 - acc
            ok16 = abs(delta) < FP16_MAX_DELTA
            all_ok &= (identical and r16["ratio"] <= 0.03) if level >= 0.98 else identical
            nnz = sum(t["nonzero"] for n, t in r32["tensors"].items() if n.endswith("weight"))
            enc = ",".join(f"{n.split('.')[0]}:{t['encoding']}" for n, t in r32["tensors"].items() if n.endswith("weight"))
            enc16 = ",".join(f"{n.split('.')[0]}:{t['encoding']}" for n, t in r16["tensors"].items() if n.endswith("weight"))
            rows.append((level, nnz, r32, r16, dense, acc, acc16, delta, flips, identical, ok16, enc, enc16))

    print(f"{'sparsity':>8} {'nonzero':>8} {'dense fp32 B':>12} {'torch.save B':>12} {'sparse fp32 B':>13} {'%':>6} {'sparse fp16 B':>13} {'%':>6}  {'acc':>6} {'acc fp16':>8} {'delta':>6} {'flips':>5}  fp32 exact  fp16 ok  encodings fp32 | fp16")
    for level, nnz, r32, r16, dense, acc, acc16, delta, flips, identical, ok16, enc, enc16 in rows:
        print(
            f"{level:>8.2%} {nnz:>8,} {r32['dense_fp32_bytes']:>12,} {dense['file_bytes']:>12,} {r32['file_bytes']:>13,} {100 * r32['ratio']:>6.2f} "
            f"{r16['file_bytes']:>13,} {100 * r16['ratio']:>6.2f}  {acc:>6.2f} {acc16:>8.2f} {delta:>+6.2f} {flips:>5}  "
            f"{'yes' if identical else 'NO':>10}  {'yes' if ok16 else 'NO':>7}  {enc} | {enc16}"
        )
    print(f"# target: sparse file <= 3% of dense fp32 at 98%; fp16 values only where |accuracy change| < {FP16_MAX_DELTA} points")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
