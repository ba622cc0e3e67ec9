"""The one training loop used by every command, with hooks.

``train(config, run_dir)`` builds the run (:func:`~sparsehalo.training.state.build`), resumes it from
``checkpoint.pt`` if one exists, trains the remaining epochs and hands each finished epoch to the
*epoch hooks*, then the *end hooks*.  Every hook has one signature, ``hook(state, log)``, with
:class:`EpochLog` saying which epoch finished and holding its ``metrics.csv`` row.  The default hooks
evaluate, time, record, checkpoint, write ``metrics.csv``, print a line and, at the end, write
``summary.json``; evaluation, checkpointing, metric rows and the summary are nothing but hooks.

A :class:`~sparsehalo.methods.Method` splits the epochs into phases (one optimizer and schedule each)
and acts at phase starts and after optimizer steps; the loop never branches on the method or on the
penalty.  Re-running on the same directory resumes after the last finished epoch (bit-identical on
CPU: the shuffle order is a pure function of seed and epoch) or, if ``summary.json`` exists, does
nothing.  One process at a time trains a run directory (:mod:`sparsehalo.locks`: a second is refused,
a dead one's lock is taken over) and its first act is to delete temp files an interrupted write left;
every file read back carries a SHA-256 (:mod:`sparsehalo.io`).  Test accuracy is logged, never used to pick a checkpoint: the final weights are the result.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .. import locks, paths
from ..config import Config, from_dict
from ..errors import ConfigError, DivergenceError, SparsehaloError
from ..io import link_copy, load_torch, read_json, remove, remove_stale_temps, write_json
from ..progress import Progress
from . import checkpointing, distributed, loggers
from .state import RunState, build
from .summary import epoch_line, epoch_row, make_summary
from .validate import resolve_device, validate


@dataclass
class EpochLog:
    """What a hook sees: the run directory, the epoch that finished (0-based) and its row."""

    run_dir: Path
    epoch: int
    row: dict
    history: list[dict]
    final: bool


Hook = Callable[[RunState, EpochLog], None]


def train_epoch(state: RunState, epoch: int, bar: Progress, on_step: Callable[[int, dict], None] | None = None,
                every: int = 50) -> dict[str, float]:
    """One pass over the shuffled training split; returns mean loss, accuracy and the last penalty.

    ``on_step(step, {"loss", "penalty", "lr"})`` is called after every ``every``-th optimizer step of the
    run (a host sync each time; the loss is this process's batch or shard mean, the lr the step's).

    Distributed (:mod:`.distributed`), each rank steps on its shard of every global batch with the
    loss ``N / n * sum(CE over the shard) + penalty``, so DDP's average is the single-process gradient;
    the penalty's gradients are averaged over the ranks, and the epoch's statistics summed over them.
    """
    cfg, model, penalty = state.config, state.model, state.penalty
    opt, sched = state.optimizer, state.scheduler
    step_hook = state.method.after_step if state.method.has_step_hook else None
    first_step = epoch * state.steps_per_epoch
    world, forward = state.world, state.forward
    batch_size, n_train = cfg.data.batch_size, len(state.data.train)
    scale_grads = [p for p in penalty.parameters() if p.requires_grad] if world.distributed else []
    model.train()
    ce_sum = torch.zeros((), device=state.device)
    correct = torch.zeros((), device=state.device, dtype=torch.long)
    seen = 0
    pen = torch.zeros((), device=state.device)
    autocast, scaler = state.precision()
    channels_last = cfg.run.channels_last
    for i, (x, y) in enumerate(state.train_batches(epoch)):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            out = forward(x)
            if world.distributed:  # the sum over this shard; scaled to the global batch's mean below
                ce = F.cross_entropy(out, y, reduction="sum")
                ce_scale = world.size / min(batch_size, n_train - i * batch_size)
            else:
                ce = F.cross_entropy(out, y)
        pen = penalty()  # in float32: its terms are tiny next to the loss (0 for no penalty)
        loss = (ce.float() * ce_scale if world.distributed else ce.float()) + pen
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            distributed.average_([p.grad for p in scale_grads], world)
            opt.step()
        else:
            scaler.scale(loss).backward()
            distributed.average_([p.grad for p in scale_grads], world)
            scaler.step(opt)
            scaler.update()
        if on_step is not None and (first_step + i + 1) % every == 0:
            on_step(first_step + i + 1, {"loss": ce.detach().item() / (y.shape[0] if world.distributed else 1),
                                         "penalty": float(pen.detach()), "lr": opt.param_groups[0]["lr"]})
        sched.step()
        if step_hook is not None:
            step_hook(state, first_step + i + 1)
        ce_sum.add_(ce.detach(), alpha=1 if world.distributed else y.shape[0])
        correct.add_((out.detach().argmax(1) == y).sum())
        seen += y.shape[0]
        if bar.due(i):  # the only host syncs inside the epoch, and only on a terminal
            bar.update(i, loss=(ce_sum / seen).item(), penalty=pen.item())
    bar.close()
    if world.distributed:  # the whole global batch's statistics, equal on every rank
        totals = torch.tensor([float(seen)], device=state.device)
        ce_sum = ce_sum.reshape(1)
        correct = correct.reshape(1)
        distributed.sum_([ce_sum, correct, totals], world)
        seen = int(totals.item())
    ce_mean, pen_v = (ce_sum.sum() / max(seen, 1)).item(), pen.detach().item()
    if not (math.isfinite(ce_mean) and math.isfinite(pen_v)):
        raise DivergenceError(
            f"non-finite loss in epoch {epoch + 1} (cross-entropy {ce_mean}, penalty {pen_v}); "
            "nothing from this epoch was saved (earlier checkpoints are kept); try a lower optim.lr or penalty.xi"
        )
    return {"train_loss": ce_mean, "train_acc": 100.0 * correct.item() / max(seen, 1), "penalty": pen_v}


# -- hooks -----------------------------------------------------------------------------------------
def timer(offset: float) -> Hook:
    """Record wall time in ``time_s``, continuing from ``offset`` seconds of earlier sessions."""
    t0 = time.perf_counter()

    def hook(state: RunState, log: EpochLog) -> None:
        log.row["time_s"] = offset + time.perf_counter() - t0

    return hook


def record(state: RunState, log: EpochLog) -> None:
    log.history.append(log.row)


def save_checkpoint(state: RunState, log: EpochLog) -> None:
    """Rewrite ``checkpoint.pt``; with ``run.keep_checkpoints = k > 1`` also keep it as a snapshot of this
    epoch and delete all but the k newest snapshots.  Snapshots are hard links, so the run directory
    holds at most max(k, 1) checkpoints' worth of bytes (k + 1 where the file system has no links)."""
    path = paths.checkpoint(log.run_dir)
    checkpointing.save(state, path, log.epoch + 1, log.history)
    keep = state.config.run.keep_checkpoints
    if keep > 1:
        link_copy(path, paths.snapshot(log.run_dir, log.epoch + 1))
    retain_snapshots(log.run_dir, keep if keep > 1 else 0)


def retain_snapshots(run_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest ``checkpoints/epoch-E.pt`` (and their sidecars)."""
    folder = paths.snapshots_dir(run_dir)
    if not folder.is_dir():
        return
    found = sorted((e, p) for p in folder.glob("epoch-*.pt") if (e := paths.snapshot_epoch(p)) is not None)
    for _, old in found[: max(len(found) - keep, 0)]:
        remove(old)
    if not any(folder.iterdir()):
        folder.rmdir()


def release_checkpoint(state: RunState, log: EpochLog) -> None:
    """With ``run.keep_checkpoints = 0``, delete ``checkpoint.pt`` once ``summary.json`` is written."""
    if state.config.run.keep_checkpoints == 0 and paths.summary(log.run_dir).exists():
        remove(paths.checkpoint(log.run_dir))


def log_to(sinks: list[loggers.Logger]) -> Hook:
    """Hand the finished epoch to every logger (``metrics.csv`` first)."""
    def hook(state: RunState, log: EpochLog) -> None:
        for sink in sinks:
            sink.log_epoch(state, log)

    return hook


def printer(echo: Callable[[str], None]) -> Hook:
    def hook(state: RunState, log: EpochLog) -> None:
        echo(epoch_line(log.row))

    return hook


def write_summary(state: RunState, log: EpochLog) -> None:
    write_json(paths.summary(log.run_dir), make_summary(state, log.history, log.run_dir), checksum=True)


def default_hooks(echo: Callable[[str], None], offset: float,
                  sinks: list[loggers.Logger] | None = None) -> tuple[list[Hook], list[Hook]]:
    """(epoch hooks, end hooks) of ``sparsehalo train``, in the order they run (``sinks``: the loggers,
    default ``metrics.csv`` alone)."""
    sinks = sinks if sinks is not None else [loggers.CSVLogger()]
    return [timer(offset), record, save_checkpoint, log_to(sinks), printer(echo)], [write_summary, release_checkpoint]


# -- the loop --------------------------------------------------------------------------------------
def _prepare(config: Config, run_dir: Path, echo: Callable[[str], None]) -> bool:
    """Check ``run_dir`` against ``config``; False when the run has finished already.  Writes nothing."""
    if paths.config(run_dir).exists():
        old = read_json(paths.config(run_dir), "config")
        try:
            if not isinstance(old, dict):
                raise TypeError("not a JSON object")
            old_hash = from_dict(old).hash()
        except (ConfigError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{str(paths.config(run_dir))!r} is not a readable sparsehalo config ({str(exc)[:120]}); "
                              "restore it, or use another --out") from None
        if old_hash != config.hash():
            raise ConfigError(f"{str(run_dir)!r} holds a run with a different config; use another --out")
    if paths.summary(run_dir).exists():
        echo(f"{run_dir}: already finished, skipping")
        return False
    return True


def train(config: Config, run_dir: str | Path, echo: Callable[[str], None] = print,
          hooks: tuple[list[Hook], list[Hook]] | None = None) -> dict:
    """Train (or resume, or skip) the experiment ``config`` in ``run_dir``; return the summary.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), every process calls this: rank 0 takes the lock,
    checks the directory and tells the others whether to train (:mod:`.distributed`); the other
    ranks train without hooks and return ``{}``.

    Args:
        hooks: (epoch hooks, end hooks); default :func:`default_hooks` (rank 0 only).
    """
    run_dir = Path(run_dir)
    validate(config)  # nothing is written to run_dir for a config that is wrong
    world = distributed.from_env()
    if world.distributed:
        distributed.init(world, distributed.device_for(world, resolve_device(config.run.device)))
        if not world.main:
            return _follow(config, run_dir, world)
    new, told = not run_dir.exists(), False
    try:
        with locks.locked(run_dir, echo):  # one writer per run directory
            for stale in [*remove_stale_temps(run_dir), *remove_stale_temps(paths.snapshots_dir(run_dir))]:
                echo(f"removed {stale.name}, left by an interrupted write")
            ready = _prepare(config, run_dir, echo)
            told = True
            distributed.agree("train" if ready else "finished", world)
            return _train(config, run_dir, echo, hooks, world) if ready else _finished_summary(run_dir)
    except BaseException as exc:
        if not told:  # the other ranks wait for a verdict: they fail with the same line
            distributed.agree(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, world)
        raise
    finally:
        if new and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # a run that could not start (e.g. its dataset is missing) leaves no empty directory


def _follow(config: Config, run_dir: Path, world: distributed.World) -> dict:
    """A rank other than 0: train if rank 0 says so, writing nothing."""
    verdict = distributed.agree(None, world)
    if verdict == "train":
        _train(config, run_dir, lambda _: None, ([], []), world)
    elif verdict != "finished":
        raise SparsehaloError(verdict)
    return {}


def _train(config: Config, run_dir: Path, echo: Callable[[str], None], hooks, world: distributed.World) -> dict:
    state = build(config, world=world)  # data and model: a missing dataset fails here, before anything is written
    if world.main and not paths.config(run_dir).exists():
        write_json(paths.config(run_dir), config.to_dict(), checksum=True)
    start, history = 0, []
    if paths.checkpoint(run_dir).exists():
        start, history = checkpointing.resume(state, load_torch(paths.checkpoint(run_dir), required=checkpointing.FULL),
                                              paths.checkpoint(run_dir))
        echo(f"resuming {run_dir} after epoch {start}/{config.train.epochs}")
    where = f"{state.device}" + (f" x {world.size} processes" if world.distributed else "")
    echo(f"training {config.name} ({config.hash()}) on {where}: {config.model.name}, penalty {config.penalty.name}, "
         f"method {config.method.name}, {config.train.epochs} epochs")
    if state.penalty.needs_params:
        echo(f"penalty {config.penalty.name}: {state.penalty.summary(state.model)}")
    sinks = loggers.build(config.run.loggers, run_dir, start * state.steps_per_epoch) if world.main and hooks is None else []
    try:
        return _epochs(state, run_dir, echo, hooks or default_hooks(echo, history[-1].get("time_s", 0.0) if history else 0.0, sinks),
                       sinks, start, history)
    finally:
        for sink in sinks:
            sink.close()


def _epochs(state: RunState, run_dir: Path, echo: Callable[[str], None], hooks: tuple[list[Hook], list[Hook]],
            sinks: list[loggers.Logger], start: int, history: list[dict]) -> dict:
    """Train the epochs from ``start`` on, then run the end hooks."""
    config, world = state.config, state.world
    epoch_hooks, end_hooks = hooks

    def on_step(step: int, values: dict) -> None:
        for sink in sinks:
            sink.log_step(step, values)

    epochs = config.train.epochs
    for epoch in range(start, epochs):
        # A phase starts with a fresh optimizer and the method's hook (prune, rewind, ...).
        phase, first = state.phase_of(epoch)
        if epoch == first:
            if phase > 0:
                state.start_phase(phase)
            state.method.begin_phase(state, phase)
            state.sync_from_main()
        # One pass over the data, then the row of this epoch (rank 0 evaluates and logs).
        bar = Progress(state.steps_per_epoch, f"epoch {epoch + 1}/{epochs}", enabled=config.run.progress and world.main)
        stats = train_epoch(state, epoch, bar, on_step if sinks else None, config.run.log_every)
        state.check_ranks(f"after epoch {epoch + 1}")
        if not world.main:
            continue
        log = EpochLog(run_dir, epoch, epoch_row(state, epoch, stats, final=epoch + 1 == epochs), history, epoch + 1 == epochs)
        # Time, record, checkpoint, metrics.csv, log line.
        for hook in epoch_hooks:
            hook(state, log)
    if not world.main:
        return {}
    end = EpochLog(run_dir, epochs - 1, history[-1] if history else {}, history, True)
    for hook in end_hooks:
        hook(state, end)
    return _finished_summary(run_dir) if paths.summary(run_dir).exists() else make_summary(state, history, run_dir)


def _finished_summary(run_dir: Path) -> dict:
    summary = read_json(paths.summary(run_dir), "summary")
    if not isinstance(summary, dict):
        raise ConfigError(f"{str(paths.summary(run_dir))!r} is not a run summary (a JSON object); restore it, or delete "
                          "it to evaluate the run again")
    return summary
