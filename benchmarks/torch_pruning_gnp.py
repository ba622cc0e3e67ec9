"""One Torch-Pruning GroupNormPruner run (DepGraph, Fang et al. CVPR 2023) on sparsehalo's data and model.

Torch-Pruning's own recipe for its "group_sl" method (its benchmarks/main.py and README "sparse training"):

1. sparsity learning: train with ``pruner.update_regularizer()`` at the start of every epoch and
   ``pruner.regularize(model)`` between ``loss.backward()`` and ``optimizer.step()`` (group-norm
   regularization, ``reg`` scaled per group by ``alpha ** ((max - imp) / (max - min))``), no weight decay;
2. pruning: ``GroupMagnitudeImportance(p=2)`` (the group L2 norm), ``global_pruning=True``, the output
   layer ignored, ``pruning_ratio=1.0`` reached in ``iterative_steps`` small steps: ``pruner.step()``
   until ``tp.utils.count_ops_and_params`` reports the MACs target (its ``prune_to_target_macs``; the
   last step may overshoot slightly: the real MACs are written out). Here the stopping rule reads
   sparsehalo's MAC counter, 2,000 steps instead of 400 (less overshoot);
3. fine-tuning of the pruned (physically smaller) network.

Here everything else is sparsehalo's: the model (``build_model`` of the config, initialized from the
seed as ``sparsehalo train`` does), the data split (``data.val_size`` carved from the training set with
the seed), the batches (``ArrayDataset.batches(shuffle=True, seed, epoch)``: the same order as
``sparsehalo train``), SGD with the config's lr / momentum / weight decay and its cosine schedule per
step.  Epoch budget: ``--sl-epochs`` of sparsity learning (lr from the config, cosine to 0) plus
``--ft-epochs`` of fine-tuning (``--ft-lr``, cosine to 0).  Epoch indices continue across the phases
so fine-tuning sees the next epochs' shuffles.

The sparsity-learning phase does not depend on the MACs level, so it is cached (``--cache``, keyed by
the config hash, seed, epochs and reg) and shared by the levels of one seed.

Example::

    .venv/bin/python benchmarks/torch_pruning_gnp.py --config configs/mnist_lenet5_caffe_dense.toml \\
        --macs 0.5 --seed 0 --sl-epochs 7 --ft-epochs 3 --out results/structured/tp/gnp_macs0.5_s0.json

Writes the JSON (accuracies, parameters, MACs by both counters, times) and, with ``--save``, the pruned
model (``torch.save`` of the whole module: Torch-Pruning's own way to keep a pruned architecture).
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import torch_pruning as tp

from sparsehalo.config.files import load
from sparsehalo.measure import evaluate, layer_costs
from sparsehalo.training import build_model, load_data


def _sgd(model, lr, cfg):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)


def _cosine(opt, total_steps):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))


def run_epochs(model, data, cfg, first_epoch, epochs, lr, pruner=None, log=print):
    """Train ``epochs`` epochs (indices ``first_epoch..``) of SGD + cosine; with ``pruner`` its regularizer."""
    bs = cfg.data.batch_size
    steps = data.train.num_batches(bs) * epochs
    opt = _sgd(model, lr, cfg)
    if pruner is not None:
        opt.param_groups[0]["weight_decay"] = 0.0  # Torch-Pruning's recipe: no weight decay while regularizing
    sched = _cosine(opt, steps)
    for epoch in range(first_epoch, first_epoch + epochs):
        model.train()
        if pruner is not None:
            pruner.update_regularizer()
        total, n = 0.0, 0
        for x, y in data.train.batches(bs, shuffle=True, seed=cfg.train.seed, epoch=epoch):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            if pruner is not None:
                pruner.regularize(model)
            opt.step()
            sched.step()
            total, n = total + loss.item() * len(y), n + len(y)
        val = evaluate(model, data.val.batches(1000))["accuracy"] if data.val is not None else float("nan")
        log(f"epoch {epoch + 1}: loss {total / n:.4f} val {val:.2f}%")


def sparsehalo_macs(model, shape) -> int:
    return sum(c.macs_dense for c in layer_costs(model, shape))


def params_of(model) -> int:
    return sum(p.numel() for p in model.parameters())


ITERATIVE_STEPS = 2000  # Torch-Pruning's benchmarks use 400; finer steps overshoot the MACs target less


def make_pruner(model, example, num_classes, reg):
    ignored = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == num_classes]
    return tp.pruner.GroupNormPruner(model, example, importance=tp.importance.GroupMagnitudeImportance(p=2), reg=reg,
                                     global_pruning=True, pruning_ratio=1.0, iterative_steps=ITERATIVE_STEPS, ignored_layers=ignored)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/mnist_lenet5_caffe_dense.toml", help="sparsehalo config: model, data, optimizer")
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE (repeatable)")
    ap.add_argument("--macs", type=float, required=True, help="share of the dense MACs to remove (0.5: 2x fewer)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sl-epochs", type=int, default=7, help="sparsity-learning epochs")
    ap.add_argument("--ft-epochs", type=int, default=3, help="fine-tuning epochs after pruning")
    ap.add_argument("--ft-lr", type=float, default=0.01)
    ap.add_argument("--reg", type=float, default=5e-4, help="GroupNormPruner reg (Torch-Pruning's benchmarks use 5e-4 / 1e-4)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=None, help="folder for the sparsity-learning checkpoint shared by levels")
    ap.add_argument("--save", default=None, help="write the pruned, fine-tuned model here (torch.save of the module)")
    ap.add_argument("--out", required=True, help="the JSON to write")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = load(a.config, [*a.set, f"train.seed={a.seed}"])
    t0 = time.perf_counter()
    data = load_data(cfg, "cpu")
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, data.num_classes)
    shape = data.train.example_shape
    example = torch.zeros(1, *shape)
    pruner = make_pruner(model, example, data.num_classes, a.reg)

    cache = Path(a.cache) / f"tp_sl_{cfg.hash()}_s{a.seed}_e{a.sl_epochs}_reg{a.reg:g}.pt" if a.cache else None
    sl_time = 0.0
    if cache is not None and cache.exists():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        sl_time = saved["time_s"]
        print(f"sparsity learning: loaded {cache}")
    else:
        t = time.perf_counter()
        run_epochs(model, data, cfg, 0, a.sl_epochs, cfg.optim.lr, pruner)
        sl_time = time.perf_counter() - t
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "time_s": sl_time}, tmp)
            tmp.replace(cache)
    dense = copy.deepcopy(model)
    test_before = evaluate(model, data.test.batches(1000))["accuracy"]

    model.eval()
    tp_macs_before, tp_params_before = tp.utils.count_ops_and_params(model, example)
    sh_macs_before = sparsehalo_macs(model, shape)
    # The stopping rule reads sparsehalo's counter (Conv / Linear MACs only), so that the target means the same as
    # for prune_channels; Torch-Pruning's counter also counts bias, ReLU and pooling ops (both are written out).
    target = (1 - a.macs) * sh_macs_before
    steps = 0
    pruner = make_pruner(model, example, data.num_classes, a.reg)  # a fresh pruner: step counting from 0
    macs_now = sh_macs_before
    while macs_now > target and steps < pruner.iterative_steps:
        pruner.step()
        steps += 1
        macs_now = sparsehalo_macs(model, shape)
    del pruner
    tp_macs_after, tp_params_after = tp.utils.count_ops_and_params(model, example)
    sh_macs_after = sparsehalo_macs(model, shape)
    test_pruned = evaluate(model, data.test.batches(1000))["accuracy"]
    val_pruned = evaluate(model, data.val.batches(1000))["accuracy"] if data.val is not None else None
    t = time.perf_counter()
    if a.ft_epochs:
        run_epochs(model, data, cfg, a.sl_epochs, a.ft_epochs, a.ft_lr)
    ft_time = time.perf_counter() - t
    test_after = evaluate(model, data.test.batches(1000))["accuracy"]
    val_after = evaluate(model, data.val.batches(1000))["accuracy"] if data.val is not None else None
    shapes = {n: list(m.weight.shape) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    result = {
        "method": "torch_pruning_gnp", "torch_pruning": importlib.metadata.version("torch-pruning"),
        "config": cfg.name, "config_hash": cfg.hash(), "seed": a.seed, "macs_target": a.macs,
        "sl_epochs": a.sl_epochs, "ft_epochs": a.ft_epochs, "ft_lr": a.ft_lr, "reg": a.reg, "prune_steps": steps,
        "test_accuracy_before": test_before, "test_accuracy_pruned": test_pruned, "val_accuracy_pruned": val_pruned,
        "test_accuracy": test_after, "val_accuracy": val_after,
        "params_before": params_of(dense), "params_after": params_of(model),
        "tp_params_before": int(tp_params_before), "tp_params_after": int(tp_params_after),
        "macs_before": sh_macs_before, "macs_after": sh_macs_after,
        "tp_macs_before": int(tp_macs_before), "tp_macs_after": int(tp_macs_after),
        "macs_removed": 1 - sh_macs_after / sh_macs_before, "layer_shapes": shapes,
        "sl_time_s": sl_time, "ft_time_s": ft_time, "time_s": time.perf_counter() - t0,
    }
    if a.save:
        Path(a.save).parent.mkdir(parents=True, exist_ok=True)
        torch.save(model, a.save)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    print(json.dumps({k: v for k, v in result.items() if k != "layer_shapes"}))
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
