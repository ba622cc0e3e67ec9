#!/usr/bin/env python3
"""Trainer overhead: sparsehalo's training epoch / a bare loop doing the same forward, backward and step.

    .venv/bin/python benchmarks/trainer_overhead.py [--quick] [--threads 1]

Both run LeNet-300-100 on MNIST (no penalty, SGD with momentum, cosine schedule, batch 100) in one
process, from the same initial weights, on the same preloaded uint8 tensors and the same shuffle order.
The bare loop indexes a batch, converts it to float, and does forward / backward / step / schedule
step; the training loop's epoch (`training.loop.train_epoch`, what `sparsehalo train` runs) adds its bookkeeping
(penalty hook, on-device loss and accuracy sums, step hooks). Epochs alternate and medians are compared.
Per-epoch evaluation is reported separately, since the bare loop has none.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time


import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sparsehalo import config as config_mod, training  # noqa: E402
from sparsehalo.training.loop import train_epoch  # noqa: E402
from sparsehalo.measure import evaluate  # noqa: E402
from sparsehalo.progress import Progress  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 20,000-image training subset and 3 rounds")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sets = ['run.progress=false', 'run.device="cpu"', "train.epochs=100"]
    if args.quick:
        sets.append("data.val_size=40000")
    cfg = config_mod.load(None, sets)
    exp = training.build(cfg)
    train = exp.data.train

    torch.manual_seed(0)
    bare_model = training.build_model(cfg, 10)
    bare_model.load_state_dict(exp.model.state_dict())
    bare_opt = torch.optim.SGD(bare_model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum)
    steps_total = exp.steps_per_epoch * cfg.train.epochs
    bare_sched = torch.optim.lr_scheduler.LambdaLR(bare_opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps_total)))
    images, labels, bs = train.images, train.labels, cfg.data.batch_size

    def bare_epoch(epoch: int) -> None:
        g = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + epoch)
        order = torch.randperm(len(labels), generator=g)
        bare_model.train()
        for b in range(exp.steps_per_epoch):
            idx = order[b * bs:(b + 1) * bs]
            x = images[idx].to(torch.float32).div_(255.0)
            loss = F.cross_entropy(bare_model(x), labels[idx])
            bare_opt.zero_grad(set_to_none=True)
            loss.backward()
            bare_opt.step()
            bare_sched.step()

    def ours(epoch: int) -> None:
        train_epoch(exp, epoch, Progress(exp.steps_per_epoch, enabled=False))

    rounds = args.rounds or (3 if args.quick else 7)
    t_bare, t_ours, t_eval = [], [], []
    for r in range(rounds + 1):
        t = time.perf_counter(); bare_epoch(r); tb = time.perf_counter() - t
        t = time.perf_counter(); ours(r); to = time.perf_counter() - t
        t = time.perf_counter(); evaluate(exp.model, exp.batches()); te = time.perf_counter() - t
        if r:  # the first round warms up
            t_bare.append(tb); t_ours.append(to); t_eval.append(te)
    b, o, e = statistics.median(t_bare), statistics.median(t_ours), statistics.median(t_eval)
    print(f"LeNet-300-100, MNIST, {len(labels):,} training images, batch {bs}, {torch.get_num_threads()} thread(s), median of {rounds} epochs")
    print(f"bare loop epoch      {b:8.3f} s")
    print(f"sparsehalo epoch     {o:8.3f} s   ratio {o / b:.3f}  (target <= 1.10)")
    print(f"test evaluation      {e:8.3f} s   ({e / o:.1%} of an epoch; not in the ratio)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
