"""What a run reports: the metrics row of each epoch, its one-line log, and ``summary.json``."""

from __future__ import annotations

from pathlib import Path

from ..measure import count_parameters, evaluate, natural_sparsity
from .evaluate import point, pruned_accuracies, pruned_points, table
from .state import RunState


def epoch_row(state: RunState, epoch: int, train_stats: dict[str, float], final: bool) -> dict[str, float]:
    """The ``metrics.csv`` row of a finished 0-based ``epoch``.

    Columns: epoch, step, lr, the training statistics, loss and accuracy per evaluation split, the
    penalty's statistics, natural sparsity (``|w| <= prune.eps``) and exact sparsity of the prunable
    weights, and (one-shot methods, every ``run.eval_pruned_every`` epochs and at the end) accuracy
    after magnitude pruning at each of ``prune.levels``.
    """
    cfg = state.config
    row: dict[str, float] = {"epoch": epoch + 1, "step": (epoch + 1) * state.steps_per_epoch, "lr": state.optimizer.param_groups[0]["lr"]}
    row.update(train_stats)
    for split in state.eval_splits():
        r = evaluate(state.model, state.batches(split))
        row[f"{split}_loss"], row[f"{split}_acc"] = r["loss"], r["accuracy"]
    row.update(state.penalty.stats())
    prunable = state.prunable()
    row["natural_sparsity"] = natural_sparsity(prunable.values(), eps=cfg.prune.eps)
    row["sparsity"] = natural_sparsity(prunable.values(), eps=0.0)
    every = cfg.run.eval_pruned_every
    if not state.method.fixed_sparsity and (final or (every > 0 and (epoch + 1) % every == 0)):
        for split, accs in pruned_accuracies(state, cfg.prune.levels).items():
            for level, acc in accs.items():
                row[f"{split}_acc_pruned_{level:g}"] = acc
    return row


def epoch_line(row: dict) -> str:
    """The log line of an epoch's row."""
    parts = [f"epoch {row['epoch']:>3}", f"loss {row['train_loss']:.4f}", f"penalty {row['penalty']:.4g}"]
    if "val_acc" in row:
        parts.append(f"val {row['val_acc']:.2f}%")
    parts.append(f"test {row['test_acc']:.2f}%")
    parts.append(f"|w|<=eps {100 * row['natural_sparsity']:.1f}%")
    if "target_strength" in row:
        what = "MACs removed " if row.get("target_macs") else ""
        parts.append(f"strength {row['target_strength']:.3g} ({what}{100 * row['target_measured']:.1f}%, "
                     f"scheduled {100 * row['target_scheduled']:.1f}%)")
    pruned = [(k.rsplit("_", 1)[1], v) for k, v in row.items() if k.startswith("test_acc_pruned_")]
    if pruned:
        parts.append("pruned " + " ".join(f"{k}:{v:.2f}" for k, v in pruned))
    return "  ".join(parts)


def make_summary(state: RunState, history: list[dict], run_dir: Path) -> dict:
    """The run's result: final metrics and one point per evaluated sparsity.

    One-shot methods get a point for the trained network (sparsity 0) and one per ``prune.levels``
    (magnitude pruning, no fine-tuning); fixed-sparsity methods get one point, the network as trained.
    A one-shot run in target mode (``penalty.target_sparsity``) reports like a fixed-sparsity run: no
    point for the unpruned network (its accuracy is the final ``test_accuracy``), one per level of
    ``prune.levels`` and its target, so runs of one name at several targets are seeds of one method.
    Its label gets `` (target)`` and ``target_sparsity`` states the level (None otherwise); reports
    take only the point at the target from such a run (see :func:`sparsehalo.results.aggregate`).
    """
    cfg = state.config
    final = history[-1] if history else {}
    target = cfg.penalty.options().get("target_sparsity")
    label = state.method.label(cfg.penalty.name) + (" (target)" if target is not None else "")
    if state.method.fixed_sparsity:
        points = [point(state, cfg.method.sparsity)]
    elif target is not None:
        points = pruned_points(state, sorted({*cfg.prune.levels, float(target)}))
    else:
        points = pruned_points(state, [0.0, *cfg.prune.levels])
    return {
        "run_dir": str(run_dir),
        "name": cfg.name,
        "label": label,
        "method": cfg.method.name,
        "penalty": cfg.penalty.name,
        "target_sparsity": None if target is None else float(target),
        "dataset": cfg.data.name,
        "model": cfg.model.name,
        "config_hash": cfg.hash(),
        "epochs": cfg.train.epochs,
        "phases": state.phases,
        "seed": cfg.train.seed,
        "parameters": count_parameters(state.model),
        "test_accuracy": final.get("test_acc"),
        "val_accuracy": final.get("val_acc"),
        "pruned_test_accuracy": {
            k.removeprefix("test_acc_pruned_"): v for k, v in final.items() if k.startswith("test_acc_pruned_")
        },
        "prune_scope": cfg.prune.scope,
        "points": points,
        "sparsity": table(state).to_dict(),
        "train_time_s": final.get("time_s"),
        "final": final,
    }
