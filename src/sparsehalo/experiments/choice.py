"""Choosing a setting by validation accuracy: overall, per sparsity level, or at one level.

The input is a sweep's outcomes, ``[(point, summary or None)]`` in grid order (None: the trial has
not finished).  A choice is only made once every trial has finished, so a partial sweep never
picks a setting that a later trial would beat.  Ties go to the earlier point of the grid; a point
without a validation accuracy where one is needed is never chosen.  Levels are spelled as
:func:`sparsehalo.paths.level_name` spells them (``"0.985"``).
"""

from __future__ import annotations

import statistics
from typing import Any, Sequence

from .. import paths

Outcome = tuple[dict[str, Any], "dict | None"]


def val_by_level(summary: dict) -> dict[str, float | None]:
    """Validation accuracy after pruning to each evaluated level, by level name."""
    return {paths.level_name(p["sparsity_requested"]): p["val_accuracy"] for p in summary["points"]}


def score(summary: dict, levels: Sequence[str]) -> float | None:
    """Mean validation accuracy at ``levels``; None unless the run has exactly one value at each."""
    found: dict[str, list] = {}
    for p in summary["points"]:
        found.setdefault(paths.level_name(p["sparsity_requested"]), []).append(p["val_accuracy"])
    accs = [found.get(level, []) for level in levels]
    if any(len(a) != 1 or a[0] is None for a in accs):
        return None
    return statistics.mean(a[0] for a in accs)


def _finished(outcomes: Sequence[Outcome]) -> bool:
    return all(s is not None for _, s in outcomes)


def best(outcomes: Sequence[Outcome], levels: Sequence[str]) -> dict | None:
    """The point with the highest :func:`score` at ``levels``.

    Returns:
        The point, or None while a trial is unfinished or when no trial has a score.
    """
    if not _finished(outcomes):
        return None
    pick, top = None, None
    for point, s in outcomes:
        value = score(s, levels)
        if value is not None and (top is None or value > top):
            pick, top = point, value
    return pick


def best_per_level(outcomes: Sequence[Outcome], levels: Sequence[str]) -> dict[str, tuple[dict, float]] | None:
    """For each of ``levels``, the point with the highest validation accuracy there, and that accuracy.

    Returns:
        ``{level: (point, accuracy)}`` in the order of ``levels``, leaving out levels no trial has a
        value at; None while a trial is unfinished.
    """
    if not _finished(outcomes):
        return None
    out: dict[str, tuple[dict, float]] = {}
    for level in levels:
        pick = best_at(outcomes, level)
        if pick is not None:
            out[level] = pick
    return out


def best_at(outcomes: Sequence[Outcome], level: str) -> tuple[dict, float] | None:
    """The point with the highest validation accuracy at ``level``, and that accuracy.

    Returns:
        ``(point, accuracy)``, or None while a trial is unfinished or when no trial has a value there.
    """
    if not _finished(outcomes):
        return None
    pick = None
    for point, s in outcomes:
        value = val_by_level(s).get(level)
        if value is not None and (pick is None or value > pick[1]):
            pick = (point, value)
    return pick
