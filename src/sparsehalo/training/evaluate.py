"""The one "prune a copy, measure, restore" of the package, and the measurements built on it.

:func:`pruned` prunes the run's prunable weights by magnitude for the duration of a ``with`` block and
puts back their exact values afterwards; every evaluation of a pruned network (the per-epoch pruned
accuracies, the summary's points, ``sparsehalo prune`` and ``sparsehalo sweep``) goes through it.
Sizes and MACs come from :mod:`sparsehalo.measure` (the one non-zero counter).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..measure import count_nonzero, evaluate, measure, sparsity_table
from ..pruning import Mask, prune
from .state import RunState

LABEL = "prunable weights"


@contextlib.contextmanager
def pruned(state: RunState, sparsity: float, scope: str | None = None, min_density: float | None = None) -> Iterator[Mask]:
    """Prune ``state.model`` to ``sparsity`` (``prune.scope`` by default) inside the block; restore after.

    Yields:
        The :class:`~sparsehalo.pruning.Mask` that was applied.
    """
    params = state.prunable()
    saved = {n: p.detach().clone() for n, p in params.items()}
    try:
        with torch.no_grad():
            mask = prune(state.model, sparsity, scope=scope or state.config.prune.scope, params=params, min_density=min_density)
        yield mask
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])


def table(state: RunState):
    """The sparsity table of the prunable weights, as they are now."""
    return sparsity_table(state.model, state.prunable(), eps=state.config.prune.eps, label=LABEL)


def accuracies(state: RunState) -> dict[str, float]:
    """``{split: accuracy}`` of the model as it is now, for every evaluation split."""
    return {split: evaluate(state.model, state.batches(split))["accuracy"] for split in state.eval_splits()}


def point(state: RunState, sparsity_requested: float) -> dict:
    """Accuracy and size of the model as it is now, for a requested sparsity."""
    cost = measure(state.model, state.input_shape, state.prunable())
    out = {
        "sparsity_requested": sparsity_requested,
        "sparsity_measured": 1.0 - cost["prunable_nonzero"] / cost["prunable_total"],
        "fine_tuned": state.method.fixed_sparsity,
        "test_accuracy": None,
        "val_accuracy": None,
    }
    out.update({f"{split}_accuracy": acc for split, acc in accuracies(state).items()})
    out["denominator"] = table(state).denominator
    out.update({k: v for k, v in cost.items() if k != "layers"})
    return out


def pruned_points(state: RunState, levels) -> list[dict]:
    """One :func:`point` per level after one-shot magnitude pruning (level 0: the network as trained)."""
    out = []
    for level in levels:
        if level > 0:
            with pruned(state, level):
                out.append(point(state, level))
        else:
            out.append(point(state, level))
    return out


def pruned_accuracies(state: RunState, levels) -> dict[str, dict[float, float]]:
    """``{split: {level: accuracy}}`` after one-shot magnitude pruning at each level."""
    out: dict[str, dict[float, float]] = {split: {} for split in state.eval_splits()}
    for level in levels:
        with pruned(state, level):
            for split, acc in accuracies(state).items():
                out[split][level] = acc
    return out


@contextlib.contextmanager
def pruned_report(state: RunState, sparsity: float, scope: str = "global", min_density: float | None = None):
    """Measure the test split before and inside :func:`pruned` (no fine-tuning).

    Yields:
        ``(summary, mask)`` while the model is pruned, so the caller can save the pruned weights.
    """
    before = evaluate(state.model, state.batches())
    natural_before = table(state).natural_sparsity
    with pruned(state, sparsity, scope, min_density) as mask:
        after = evaluate(state.model, state.batches())
        t = table(state)
        total, nonzero = count_nonzero(state.model.parameters())
        summary = {
            "run": state.config.name,
            "config_hash": state.config.hash(),
            "scope": scope,
            "min_density": min_density,
            "fine_tuned": False,
            "test_accuracy_before": before["accuracy"],
            "test_accuracy_after": after["accuracy"],
            "test_loss_before": before["loss"],
            "test_loss_after": after["loss"],
            "sparsity_requested": sparsity,
            "sparsity_measured": t.sparsity,
            "natural_sparsity_before": natural_before,
            "natural_eps": state.config.prune.eps,
            "denominator": t.denominator,
            "prunable_total": t.total,
            "prunable_nonzero": t.nonzero,
            "parameters_total": total,
            "parameters_nonzero": nonzero,
            "empty_layers": list(mask.empty_layers),
            "layers": [{"name": r.name, "total": r.total, "nonzero": r.nonzero, "sparsity": r.sparsity} for r in t.rows],
        }
        yield summary, mask
