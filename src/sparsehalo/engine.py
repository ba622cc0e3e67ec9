"""The one training loop used by every command.

``train(config, run_dir)`` builds the data, model, penalty, one optimizer (network and penalty
groups) and one per-step schedule from a :class:`~sparsehalo.config.Config`, then trains, writing
into ``run_dir``:

- ``config.json``: the full config (its hash names the directory);
- ``checkpoint.pt``: model, penalty scales, optimizer, scheduler, RNG state, metric history and the
  config, rewritten atomically after every epoch;
- ``metrics.csv``: one row per epoch (loss, accuracy, penalty, scale statistics, natural sparsity,
  and test accuracy after magnitude pruning at each level of ``prune.levels``);
- ``summary.json``: written once training has finished: the final accuracy and one *point* per
  evaluated sparsity (accuracy, requested and measured sparsity, parameter and FLOP counts).

A :class:`~sparsehalo.methods.Method` splits the epochs into phases (one optimizer and schedule each)
and acts through hooks at phase starts and after steps (pruning, rewinding); the loop itself is the
same for every method.

Re-running on the same directory resumes after the last finished epoch (bit-identical on CPU: the
shuffle order is a pure function of seed and epoch) or, if ``summary.json`` exists, does nothing.
Test accuracy is logged, never used to pick a checkpoint: the final weights are the result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import csv
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint, methods, models, penalties, schedules
from .allocator import keep_freed_memory
from .config import Config, from_dict
from .data import Splits, load_dataset
from .errors import CheckpointError, ConfigError, DivergenceError
from .measure import measure
from .measure import evaluate, natural_sparsity, sparsity_table
from .progress import Progress
from .pruning import Mask, MaskHandle, prunable_parameters, prune

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KEYS = ("model", "config", "epoch")


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here (use run.device=auto)")
    return device


@dataclass
class Experiment:
    """Everything built from a config, ready to train or evaluate."""

    config: Config
    device: torch.device
    data: Splits
    model: nn.Module
    penalty: penalties.Penalty
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    method: methods.Method
    phases: list[int]
    mask: Mask | None = None
    mask_handle: MaskHandle | None = None
    scaler: torch.amp.GradScaler | None = None  # fp16 only

    def phase_of(self, epoch: int) -> tuple[int, int]:
        """(phase index, first epoch of that phase) for a 0-based epoch."""
        first = 0
        for i, n in enumerate(self.phases):
            if epoch < first + n:
                return i, first
            first += n
        return len(self.phases) - 1, first - self.phases[-1]

    def precision(self):
        """(autocast context factory, gradient scaler or None) for ``train.amp``."""
        amp = self.config.train.amp
        if amp == "none":
            return contextlib.nullcontext, None
        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
        if amp not in dtypes:
            raise ConfigError(f"train.amp must be none, bf16 or fp16, got {amp!r}")
        if self.scaler is None and amp == "fp16":
            self.scaler = torch.amp.GradScaler(self.device.type)
        ctx = lambda: torch.autocast(self.device.type, dtype=dtypes[amp])  # noqa: E731
        return ctx, self.scaler

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.data.train.images.shape[1:])

    def prunable(self) -> dict[str, torch.Tensor]:
        p = self.config.prune
        return prunable_parameters(self.model, types=tuple(p.types), biases=p.biases)


def build_model(config: Config, num_classes: int | None = None) -> nn.Module:
    kwargs = dict(config.model.kwargs)
    if num_classes is not None:
        kwargs.setdefault("num_classes", num_classes)
    return models.build(config.model.name, **kwargs)


def build(config: Config, device: torch.device | None = None) -> Experiment:
    """Build data, model, penalty, method, and the optimizer and schedule of the first phase.

    The model is initialized from ``train.seed``.
    """
    device = device or resolve_device(config.run.device)
    if config.run.threads > 0:
        torch.set_num_threads(config.run.threads)
    if config.run.keep_freed_memory:
        keep_freed_memory()
    data = load_dataset(
        config.data.name, config.run.data_dir, val_size=config.data.val_size, seed=config.train.seed, augment=config.data.augment
    )
    if config.data.train_size:
        data = _train_subset(data, config.data.train_size, config.train.seed)
    data = data.to(device)
    torch.manual_seed(config.train.seed)
    model = build_model(config, data.num_classes).to(device)
    if config.run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    pc = config.penalty
    penalty = penalties.build(pc.name, model, **pc.selection(), **pc.options()).to(device)
    penalty.check_partition(model)
    method = methods.build(config.method.name, config.method.sparsity, config.method.options)
    steps = data.train.num_batches(config.data.batch_size)
    if steps == 0:
        raise ConfigError(f"the training set ({len(data.train)} examples) gives no batch of size {config.data.batch_size}")
    exp = Experiment(config, device, data, model, penalty, None, None, steps, method, method.phases(config.train.epochs))
    start_phase_optimizer(exp, 0)
    return exp


def _train_subset(data: Splits, size: int, seed: int) -> Splits:
    """Keep a random ``size``-example subset of the training split (chosen by seed)."""
    if not 0 < size <= len(data.train):
        raise ConfigError(f"data.train_size must be in 1..{len(data.train)}, got {size}")
    index = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed + 104729))[:size]
    return dataclasses.replace(data, train=data.train.subset(index.sort().values))


def start_phase_optimizer(exp: Experiment, phase: int) -> None:
    """A fresh optimizer (network and penalty groups) and schedule for ``phase``; re-binds the mask."""
    cfg, o, pc = exp.config, exp.config.optim, exp.config.penalty
    lr = exp.method.phase_lr(exp, phase)
    groups = [{"params": list(exp.model.parameters()), "name": "model"}]
    groups += exp.penalty.param_groups(lr=pc.scale_lr, momentum=pc.scale_momentum)
    exp.optimizer = torch.optim.SGD(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)
    steps = exp.steps_per_epoch * exp.phases[phase]
    exp.scheduler = schedules.build(exp.optimizer, cfg.schedule, steps, exp.steps_per_epoch)
    if exp.mask is not None:
        methods.set_mask(exp, exp.mask)


def test_batches(exp: Experiment, split: str = "test"):
    ds = getattr(exp.data, split)
    return ds.batches(exp.config.data.eval_batch_size)


def _splits(exp: Experiment) -> list[str]:
    return [s for s in ("val", "test") if getattr(exp.data, s) is not None]


def point(exp: Experiment, sparsity_requested: float) -> dict:
    """Accuracy and size of the model as it is now, for a requested sparsity."""
    prunable = exp.prunable()
    cost = measure(exp.model, exp.input_shape, prunable)
    out = {
        "sparsity_requested": sparsity_requested,
        "sparsity_measured": 1.0 - cost["prunable_nonzero"] / cost["prunable_total"],
        "fine_tuned": exp.method.fixed_sparsity,
        "test_accuracy": None,
        "val_accuracy": None,
    }
    for split in _splits(exp):
        out[f"{split}_accuracy"] = evaluate(exp.model, test_batches(exp, split))["accuracy"]
    out["denominator"] = sparsity_table(exp.model, prunable, eps=exp.config.prune.eps, label="prunable weights").denominator
    out.update({k: v for k, v in cost.items() if k != "layers"})
    return out


@contextlib.contextmanager
def restored(params: dict[str, torch.Tensor]):
    """Give back the values of ``params`` on exit (pruning experiments on the live model)."""
    saved = {n: p.detach().clone() for n, p in params.items()}
    try:
        yield lambda: [p.data.copy_(saved[n]) for n, p in params.items()]
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])


@torch.no_grad()
def pruned_points(exp: Experiment, levels) -> list[dict]:
    """One :func:`point` per level after one-shot magnitude pruning (the model is restored afterwards)."""
    params = exp.prunable()
    out = []
    with restored(params) as restore:
        for level in levels:
            if level > 0:
                prune(exp.model, level, scope=exp.config.prune.scope, params=params)
            out.append(point(exp, level))
            restore()
    return out


@torch.no_grad()
def pruned_accuracies(exp: Experiment, levels) -> dict[str, dict[float, float]]:
    """``{split: {level: accuracy}}`` after one-shot magnitude pruning (the model is restored afterwards)."""
    params = exp.prunable()
    out: dict[str, dict[float, float]] = {split: {} for split in _splits(exp)}
    with restored(params) as restore:
        for level in levels:
            prune(exp.model, level, scope=exp.config.prune.scope, params=params)
            for split in out:
                out[split][level] = evaluate(exp.model, test_batches(exp, split))["accuracy"]
            restore()
    return out


def _train_epoch(exp: Experiment, epoch: int, bar: Progress) -> dict[str, float]:
    cfg = exp.config
    model, penalty, opt, sched = exp.model, exp.penalty, exp.optimizer, exp.scheduler
    step_hook = exp.method.after_step if exp.method.has_step_hook else None
    first_step = epoch * exp.steps_per_epoch
    model.train()
    ce_sum = torch.zeros((), device=exp.device)
    correct = torch.zeros((), device=exp.device, dtype=torch.long)
    seen = 0
    pen = torch.zeros((), device=exp.device)
    batches = exp.data.train.batches(cfg.data.batch_size, shuffle=True, seed=cfg.train.seed, epoch=epoch)
    autocast, scaler = exp.precision()
    channels_last = cfg.run.channels_last
    has_penalty = not isinstance(penalty, penalties.NoPenalty)  # skip a no-op add per step
    for i, (x, y) in enumerate(batches):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            out = model(x)
            ce = F.cross_entropy(out, y)
        loss = ce
        if has_penalty:
            pen = penalty()  # in float32: its terms are tiny next to the loss
            loss = ce.float() + pen
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        sched.step()
        if step_hook is not None:
            step_hook(exp, first_step + i + 1)
        ce_sum.add_(ce.detach(), alpha=y.shape[0])
        correct.add_((out.detach().argmax(1) == y).sum())
        seen += y.shape[0]
        if bar.due(i):  # the only host syncs inside the epoch, and only on a terminal
            bar.update(i, loss=(ce_sum / seen).item(), penalty=pen.item())
    bar.close()
    ce_mean, pen_v = (ce_sum / max(seen, 1)).item(), pen.detach().item()
    if not (math.isfinite(ce_mean) and math.isfinite(pen_v)):
        raise DivergenceError(
            f"non-finite loss in epoch {epoch + 1} (cross-entropy {ce_mean}, penalty {pen_v}); "
            "nothing from this epoch was saved (earlier checkpoints are kept); try a lower optim.lr or penalty.xi"
        )
    return {"train_loss": ce_mean, "train_acc": 100.0 * correct.item() / max(seen, 1), "penalty": pen_v}


def epoch_metrics(exp: Experiment, epoch: int, train_stats: dict[str, float], final: bool) -> dict[str, float]:
    """The metrics.csv row for a finished epoch."""
    cfg = exp.config
    row: dict[str, float] = {"epoch": epoch + 1, "step": (epoch + 1) * exp.steps_per_epoch, "lr": exp.optimizer.param_groups[0]["lr"]}
    row.update(train_stats)
    for split in ("val", "test"):
        if getattr(exp.data, split) is not None:
            r = evaluate(exp.model, test_batches(exp, split))
            row[f"{split}_loss"], row[f"{split}_acc"] = r["loss"], r["accuracy"]
    row.update(exp.penalty.stats())
    prunable = exp.prunable()
    row["natural_sparsity"] = natural_sparsity(prunable.values(), eps=cfg.prune.eps)
    row["sparsity"] = natural_sparsity(prunable.values(), eps=0.0)
    every = cfg.run.eval_pruned_every
    if not exp.method.fixed_sparsity and (final or (every > 0 and (epoch + 1) % every == 0)):
        for split, accs in pruned_accuracies(exp, cfg.prune.levels).items():
            for level, acc in accs.items():
                row[f"{split}_acc_pruned_{level:g}"] = acc
    return row


def write_metrics(path: Path, history: list[dict]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns)
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    checkpoint.atomic_write_text(path, buf.getvalue())


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(exp: Experiment, path: Path, epoch: int, history: list[dict]) -> None:
    checkpoint.save(
        path,
        {
            "format": "sparsehalo-train-1",
            "epoch": epoch,
            "config": json.dumps(exp.config.to_dict()),
            "model": exp.model.state_dict(),
            "penalty": exp.penalty.state_dict(),
            "optimizer": exp.optimizer.state_dict(),
            "scheduler": exp.scheduler.state_dict(),
            "rng": _rng_state(),
            "history": history,
            "mask": exp.mask.state_dict() if exp.mask is not None else None,
            "method": exp.method.state_dict(),
            "scaler": exp.scaler.state_dict() if exp.scaler is not None else None,
        },
    )


def restore(exp: Experiment, ckpt: dict, optimizer: bool = True) -> None:
    """Load a training checkpoint's states into ``exp`` (same config assumed).

    With ``optimizer=False`` the optimizer and schedule are left as built (used when the run resumes
    exactly at a phase boundary, where the next phase starts a fresh optimizer anyway).
    """
    exp.model.load_state_dict(ckpt["model"])
    exp.penalty.load_state_dict(ckpt["penalty"])
    exp.method.load_state_dict(ckpt.get("method") or {})
    if ckpt.get("mask") is not None:
        mask = Mask.from_state_dict(ckpt["mask"]).to(exp.device)
        mask.check(exp.model)
        methods.set_mask(exp, mask)
    if optimizer:
        exp.optimizer.load_state_dict(ckpt["optimizer"])
        exp.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        exp.precision()
        exp.scaler.load_state_dict(ckpt["scaler"])
    _set_rng_state(ckpt["rng"])


def load_run(run_dir: str | Path, device: torch.device | None = None, overrides: Callable[[Config], None] | None = None) -> tuple[Experiment, dict]:
    """Rebuild the experiment of a run directory from its checkpoint (for prune / eval / sweep)."""
    run_dir = Path(run_dir)
    ckpt = checkpoint.load(run_dir / CHECKPOINT, required=CHECKPOINT_KEYS + ("penalty", "optimizer", "scheduler", "rng"))
    config = config_of(ckpt, run_dir / CHECKPOINT)
    if overrides:
        overrides(config)
    exp = build(config, device)
    try:
        epoch = int(ckpt["epoch"])
        phase, first = exp.phase_of(max(epoch - 1, 0))
        if phase > 0:
            start_phase_optimizer(exp, phase)
        restore(exp, ckpt)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(run_dir / CHECKPOINT)!r} does not match its config: {str(exc).splitlines()[0]}") from None
    return exp, ckpt


def config_of(ckpt: dict, where: Path) -> Config:
    """The config stored in a checkpoint."""
    try:
        return from_dict(json.loads(ckpt["config"]))
    except (TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"checkpoint {str(where)!r} holds an unreadable config: {exc}") from None


def train(config: Config, run_dir: str | Path, echo: Callable[[str], None] = print) -> dict:
    """Train (or resume, or skip) the experiment ``config`` in ``run_dir``; return the summary."""
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    config_path = run_dir / "config.json"
    if config_path.exists():
        old = json.loads(config_path.read_text())
        if from_dict(old).hash() != config.hash():
            raise ConfigError(f"{str(run_dir)!r} holds a run with a different config; use another --out")
    if summary_path.exists():
        echo(f"{run_dir}: already finished, skipping")
        return json.loads(summary_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.write_json(config_path, config.to_dict())

    exp = build(config)
    ckpt_path = run_dir / CHECKPOINT
    history: list[dict] = []
    start = 0
    if ckpt_path.exists():
        ckpt = checkpoint.load(ckpt_path, required=CHECKPOINT_KEYS)
        start, history = int(ckpt["epoch"]), list(ckpt["history"])
        phase, first = exp.phase_of(start)
        mid_phase = start > first
        if mid_phase and phase > 0:
            start_phase_optimizer(exp, phase)
        restore(exp, ckpt, optimizer=mid_phase)
        echo(f"resuming {run_dir} after epoch {start}/{config.train.epochs}")
    echo(
        f"training {config.name} ({config.hash()}) on {exp.device}: {config.model.name}, penalty {config.penalty.name}, "
        f"method {config.method.name}, {config.train.epochs} epochs"
    )

    t0 = time.perf_counter()
    offset = history[-1].get("time_s", 0.0) if history else 0.0
    epochs = config.train.epochs
    for epoch in range(start, epochs):
        phase, first = exp.phase_of(epoch)
        if epoch == first:
            if phase > 0:
                start_phase_optimizer(exp, phase)
            exp.method.begin_phase(exp, phase)
        bar = Progress(exp.steps_per_epoch, f"epoch {epoch + 1}/{epochs}", enabled=config.run.progress)
        stats = _train_epoch(exp, epoch, bar)
        row = epoch_metrics(exp, epoch, stats, final=epoch + 1 == epochs)
        row["time_s"] = offset + time.perf_counter() - t0
        history.append(row)
        save_checkpoint(exp, ckpt_path, epoch + 1, history)
        write_metrics(run_dir / "metrics.csv", history)
        echo(_epoch_line(row))

    summary = make_summary(exp, history, run_dir)
    checkpoint.write_json(summary_path, summary)
    return summary


def _epoch_line(row: dict) -> str:
    parts = [f"epoch {row['epoch']:>3}", f"loss {row['train_loss']:.4f}", f"penalty {row['penalty']:.4g}"]
    if "val_acc" in row:
        parts.append(f"val {row['val_acc']:.2f}%")
    parts.append(f"test {row['test_acc']:.2f}%")
    parts.append(f"|w|<=eps {100 * row['natural_sparsity']:.1f}%")
    pruned = [(k.rsplit("_", 1)[1], v) for k, v in row.items() if k.startswith("test_acc_pruned_")]
    if pruned:
        parts.append("pruned " + " ".join(f"{k}:{v:.2f}" for k, v in pruned))
    return "  ".join(parts)


def make_summary(exp: Experiment, history: list[dict], run_dir: Path) -> dict:
    """The run's result: final metrics and one point per evaluated sparsity.

    One-shot methods get a point for the trained network (sparsity 0) and one per ``prune.levels``
    (magnitude pruning, no fine-tuning); fixed-sparsity methods get one point, the network as trained.
    """
    cfg = exp.config
    final = history[-1] if history else {}
    if exp.method.fixed_sparsity:
        points = [point(exp, cfg.method.sparsity)]
    else:
        points = pruned_points(exp, [0.0, *cfg.prune.levels])
    table = sparsity_table(exp.model, exp.prunable(), eps=cfg.prune.eps, label="prunable weights")
    return {
        "run_dir": str(run_dir),
        "name": cfg.name,
        "label": exp.method.label(cfg.penalty.name),
        "method": cfg.method.name,
        "penalty": cfg.penalty.name,
        "dataset": cfg.data.name,
        "model": cfg.model.name,
        "config_hash": cfg.hash(),
        "epochs": cfg.train.epochs,
        "phases": exp.phases,
        "seed": cfg.train.seed,
        "parameters": sum(p.numel() for p in exp.model.parameters()),
        "test_accuracy": final.get("test_acc"),
        "val_accuracy": final.get("val_acc"),
        "pruned_test_accuracy": {
            k.removeprefix("test_acc_pruned_"): v for k, v in final.items() if k.startswith("test_acc_pruned_")
        },
        "prune_scope": cfg.prune.scope,
        "points": points,
        "sparsity": table.to_dict(),
        "train_time_s": final.get("time_s"),
        "final": final,
    }
