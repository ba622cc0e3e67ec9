#!/usr/bin/env python3
"""NNCF's regularization-based (RB) sparsity, trained side by side with our protocol (issue 12's peer).

    .venv/bin/python benchmarks/nncf_rb.py --dataset mnist --model lenet300 --level 0.99 --seed 0 \\
        --recipe nncf [--threads 1] [--data-dir DIR] [--out results/target/nncf] [--epochs N]

Needs the ``bench`` extra (``pip install -e '.[bench]'``: nncf, and torchao, which ``nncf.strip`` imports
but nncf does not declare).  The model, data, batches (same shuffle), epochs, seed and initial weights
are those of ``configs/<prefix>_<model>_dense.toml`` as ``sparsehalo train`` builds them; NNCF is used
through its own API: ``nncf.prune(model, mode=UNSTRUCTURED_REGULARIZATION_BASED)`` inserts one keep-logit
``s`` per weight (forward: ``w * [sigmoid(s + logit(u)) > 1/2]``, ``u ~ U(0, 1)`` in training, a
straight-through gradient), and ``RBLoss`` adds ``((mean_keep - (1 - r)) / p)^2`` pulling the kept
share to ``1 - r``.  Two recipes:

* ``ours``: one SGD optimizer with the config's learning rate, momentum and cosine schedule over the
  weights and the logits (no weight decay on the logits); ``RBLoss(target_ratio=level)`` with NNCF's
  default ``p = 0.05`` from the first step;
* ``nncf``: NNCF's documented recipe (its ResNet-18 example's ``rb`` mode): ``RBLoss(p=0.1)``, the logits
  in their own Adam group at lr 1e-2 and no weight decay, and an RB ratio scheduler raising the target
  during the first third of training (the example: 0.3 at epoch 0 to the final ratio at epoch 10 of 30;
  here NNCF's ``ExponentialRBPruningScheduler`` from 0.3 to ``level`` at ``epochs // 3``, stepped each
  epoch, since a 3-step ladder is coarse at 99%).  The example fine-tunes a pretrained network with
  Adam at 1e-5; we train from scratch, so the weights keep the config's SGD settings.

At the end the masks are merged into the weights (``nncf.strip(..., strip_format=IN_PLACE)``), the test
accuracy of the masked network is measured, then the same global magnitude prune to ``level`` as every
other method (no fine-tuning) and its test accuracy.  Writes one JSON per run:
``<out>/<dataset>_<model>_<recipe>_<level>_seed<seed>.json`` (``test_acc_pruned``, ``mask_sparsity``, ...).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
PREFIX = {"mnist": "mnist", "fashion-mnist": "fashion"}


def mask_sparsity(model) -> tuple[float, int]:
    """Share of the RB masks' entries that are off at evaluation (``sigmoid(s) <= 1/2``), and their count."""
    from nncf.torch.function_hook.pruning.rb.algo import get_pruned_modules

    off = total = 0
    for module in get_pruned_modules(model).values():
        off += int((module.mask.detach() <= 0).sum())
        total += module.mask.numel()
    return off / total, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(PREFIX), required=True)
    ap.add_argument("--model", required=True, help="lenet300, lenet5, lenet5_caffe (configs/<prefix>_<model>_dense.toml)")
    ap.add_argument("--level", type=float, required=True, help="target sparsity in (0, 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipe", choices=("ours", "nncf"), required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None, help="default: the config's")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(ROOT / "results" / "target" / "nncf"))
    args = ap.parse_args()
    if not 0 < args.level < 1:
        ap.error(f"--level must be in (0, 1), got {args.level}")
    try:
        import nncf
        from nncf.torch.function_hook.pruning.rb.losses import RBLoss
        from nncf.torch.function_hook.pruning.rb.schedulers import ExponentialRBPruningScheduler
    except ImportError as e:
        print(f"nncf_rb: needs the bench extra (pip install -e '.[bench]'): {e}", file=sys.stderr)
        return 2

    from sparsehalo import config as config_mod, schedules, training
    from sparsehalo.errors import SparsehaloError
    from sparsehalo.io import atomic_write_text
    from sparsehalo.measure import evaluate
    from sparsehalo.pruning import prune
    from sparsehalo.selection import prunable_parameters

    torch.set_num_threads(args.threads)
    cfg_path = ROOT / "configs" / f"{PREFIX[args.dataset]}_{args.model}_dense.toml"
    sets = ['run.progress=false', 'run.device="cpu"', f"train.seed={args.seed}", f"run.threads={args.threads}",
            *([f"train.epochs={args.epochs}"] if args.epochs else []),
            *([f"run.data_dir={json.dumps(args.data_dir)}"] if args.data_dir else [])]
    try:
        cfg = config_mod.load(cfg_path, sets)
        state = training.build(cfg)  # data, the seeded initial weights, our SGD + schedule (replaced below)
    except SparsehaloError as e:
        print(f"nncf_rb: {e}", file=sys.stderr)
        return 2
    epochs, steps = cfg.train.epochs, state.steps_per_epoch
    train = state.data.train
    x0, _ = next(train.batches(2))
    model = nncf.prune(state.model, mode=nncf.PruneMode.UNSTRUCTURED_REGULARIZATION_BASED, examples_inputs=x0)
    named = list(model.named_parameters())
    logits = [p for n, p in named if n.endswith(".mask")]
    weights = [p for n, p in named if not n.endswith(".mask")]
    o = cfg.optim
    sgd_groups = [{"params": weights, "name": "model"}]
    if args.recipe == "ours":
        sgd_groups.append({"params": logits, "name": "rb_logits", "weight_decay": 0.0})
        rb_loss, ratio_scheduler, adam = RBLoss(model, target_ratio=args.level), None, None
    else:
        rb_loss = RBLoss(model, target_ratio=0.3, p=0.1)
        ratio_scheduler = ExponentialRBPruningScheduler(rb_loss, initial_ratio=0.3, target_ratio=args.level,
                                                        target_epoch=max(1, epochs // 3))
        adam = torch.optim.Adam([{"params": logits, "lr": 1e-2, "weight_decay": 0.0}])
    sgd = torch.optim.SGD(sgd_groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)
    sched = schedules.build(sgd, cfg.schedule, steps * epochs, steps)
    log = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        if ratio_scheduler is not None:
            ratio_scheduler.step(epoch)
        model.train()
        ce_sum = reg_sum = 0.0
        for x, y in train.batches(cfg.data.batch_size, shuffle=True, seed=cfg.train.seed, epoch=epoch):
            ce = F.cross_entropy(model(x), y)
            reg = rb_loss()
            loss = ce + reg
            sgd.zero_grad(set_to_none=True)
            if adam is not None:
                adam.zero_grad(set_to_none=True)
            loss.backward()
            sgd.step()
            if adam is not None:
                adam.step()
            sched.step()
            ce_sum += float(ce.detach())
            reg_sum += float(reg.detach())
        ms, _ = mask_sparsity(model)
        acc = evaluate(model, state.batches("test"))["accuracy"]
        row = {"epoch": epoch + 1, "train_loss": ce_sum / steps, "rb_loss": reg_sum / steps, "rb_target": rb_loss.target_ratio,
               "mask_sparsity": ms, "test_acc_masked": acc}
        log.append(row)
        print(f"epoch {epoch + 1:3d}  loss {row['train_loss']:.4f}  rb {row['rb_loss']:.4g}  target {row['rb_target']:.4f}  "
              f"mask sparsity {100 * ms:.2f}%  test (masked) {acc:.2f}%", flush=True)
        if not math.isfinite(row["train_loss"]):
            print("nncf_rb: the loss diverged", file=sys.stderr)
            return 3
    ms, n_masked = mask_sparsity(model)
    model.eval()
    acc_masked = evaluate(model, state.batches("test"))["accuracy"]
    plain = nncf.strip(model, do_copy=True, strip_format=nncf.StripFormat.IN_PLACE)
    params = prunable_parameters(plain, types=tuple(cfg.prune.types) if cfg.prune.types else None)
    zeros_after_strip = sum(int((p == 0).sum()) for p in params.values()) / sum(p.numel() for p in params.values())
    acc_stripped = evaluate(plain, state.batches("test"))["accuracy"]
    mask = prune(plain, args.level, scope=cfg.prune.scope, params=params)
    acc_pruned = evaluate(plain, state.batches("test"))["accuracy"]
    result = {
        "dataset": args.dataset, "model": args.model, "recipe": args.recipe, "level": args.level, "seed": args.seed,
        "epochs": epochs, "batch_size": cfg.data.batch_size, "nncf_version": nncf.__version__,
        "mask_sparsity": ms, "masked_entries": n_masked, "zeros_after_strip": zeros_after_strip,
        "test_acc_masked": acc_masked, "test_acc_stripped": acc_stripped,
        "sparsity_pruned": mask.sparsity, "test_acc_pruned": acc_pruned,
        "train_seconds": time.perf_counter() - t0, "threads": args.threads, "log": log,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.dataset}_{args.model}_{args.recipe}_{args.level:g}_seed{args.seed}.json"
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    print(f"mask sparsity {100 * ms:.2f}% (of {n_masked:,} masked weights)  test masked {acc_masked:.2f}%  "
          f"pruned to {100 * mask.sparsity:.2f}%: {acc_pruned:.2f}%  -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
