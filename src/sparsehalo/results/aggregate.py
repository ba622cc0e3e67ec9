"""Means and standard deviations over the seeds of a method.

Runs that share ``(dataset, model, name)`` are seeds of one method.  At each requested sparsity the
test accuracies ``a_1 .. a_n`` of the seeds give

    mean = (1/n) sum_i a_i,    std = sqrt( sum_i (a_i - mean)^2 / (n - 1) )   (0 for n = 1),

the sample standard deviation, computed exactly by :mod:`statistics`.
"""

from __future__ import annotations

import statistics
from typing import Any, Iterable, Sequence

from ..errors import SparsehaloError
from .runs import group_name, run_name


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, sample std)`` of one or more values; the std of a single value is 0.0.

    Raises:
        ValueError: if ``values`` is empty.
    """
    if not values:
        raise ValueError("mean_std of no values")
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def status(target: float, values: Sequence[float], seeds: int) -> str:
    """``"met"`` / ``"missed"`` (mean against ``target``) once all ``seeds`` have run, else ``"pending"``."""
    if len(values) < seeds:
        return "pending"
    return "met" if statistics.mean(values) >= target else "missed"


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _one(values: dict[Any, list[str]], what: str, group: str) -> Any:
    """The single value runs of a group agree on, or an error naming who disagrees."""
    if len(values) > 1:
        detail = "; ".join(f"{v} in {', '.join(dirs)}" for v, dirs in values.items())
        raise SparsehaloError(f"runs of {group} disagree on {what}: {detail}")
    return next(iter(values), None)


def _groups(summaries: Iterable[dict]) -> dict[tuple, list[tuple[dict, dict]]]:
    """Points with a test accuracy, keyed by ``(dataset, model, name, sparsity, fine_tuned)``.

    A run in target mode (``target_sparsity`` set) is grouped as ``"<name> (target)"`` and gives only
    its point at the target: runs of one name at several targets are seeds of one method, apart from
    the same name's runs at a fixed strength. (Its accuracy at the other levels stays in its summary.)
    """
    groups: dict[tuple, list[tuple[dict, dict]]] = {}
    for s in summaries:
        where = s.get("run_dir", run_name(s))
        target = s.get("target_sparsity")
        if target is not None and (not isinstance(target, (int, float)) or isinstance(target, bool) or not 0 < target < 1):
            raise SparsehaloError(f"run {where}: target_sparsity must be a number in (0, 1), got {target!r}"[:300])
        name = group_name(s)
        for p in s.get("points", []):
            sp = p.get("sparsity_requested") if isinstance(p, dict) else None
            if not isinstance(sp, (int, float)) or isinstance(sp, bool) or not 0 <= sp <= 1:
                raise SparsehaloError(f"run {where}: point without a valid sparsity_requested: {p!r}"[:300])
            if p.get("test_accuracy") is None or (target is not None and round(float(sp), 9) != round(float(target), 9)):
                continue
            # Rounded so 0.9 from different writers lands in one group.
            key = (str(s.get("dataset") or "unknown"), str(s.get("model") or "unknown"), name,
                   round(float(sp), 9), p.get("fine_tuned"))
            groups.setdefault(key, []).append((s, p))
    return groups


def _row(key: tuple, members: list[tuple[dict, dict]]) -> dict:
    dataset, model, name, sp, fine_tuned = key
    label = f"{name} at sparsity {sp:g}"
    seeds = [s.get("seed") for s, _ in members]
    known = [x for x in seeds if x is not None]
    if len(set(known)) != len(known):
        dup = next(x for x in known if known.count(x) > 1)
        dirs = [s.get("run_dir", "?") for s, _ in members if s.get("seed") == dup]
        raise SparsehaloError(f"runs of {label} repeat seed {dup}: {', '.join(dirs)}")
    epochs: dict[Any, list[str]] = {}
    denominators: dict[Any, list[str]] = {}
    for s, p in members:
        # A point may state its own budget (e.g. IMP rounds to reach it); else the run's.
        epochs.setdefault(p.get("epochs", s.get("epochs")), []).append(s.get("run_dir", "?"))
        if p.get("denominator"):
            denominators.setdefault(p["denominator"], []).append(s.get("run_dir", "?"))
    accs = [float(p["test_accuracy"]) for _, p in members]
    acc_mean, acc_std = mean_std(accs)
    first = members[0][0]
    return {
        "dataset": dataset,
        "model": model,
        "method": str(first.get("label") or name),
        "name": name,
        "procedure": first.get("method"),
        "penalty": first.get("penalty"),
        "sparsity": sp,
        "fine_tuned": fine_tuned,
        "seeds": len(members),
        "seed_list": sorted(known),
        "acc_mean": acc_mean,
        "acc_std": acc_std,
        "acc_min": min(accs),
        "acc_max": max(accs),
        "sparsity_measured_mean": _mean([p.get("sparsity_measured") for _, p in members]),
        "epochs": _one(epochs, "epochs", label),
        "denominator": _one(denominators, "the sparsity denominator", label),
        "flops_nonzero_mean": _mean([p.get("flops_nonzero") for _, p in members]),
        "compression_mean": _mean([p.get("compression") for _, p in members]),
        "speedup_mean": _mean([p.get("speedup") for _, p in members]),
        "run_dirs": [s.get("run_dir") for s, _ in members],
    }


def aggregate(summaries: Iterable[dict]) -> list[dict]:
    """Average the seeds of each method at each sparsity.

    Runs are grouped by ``(dataset, model, name)``, then points by requested sparsity (and by
    ``fine_tuned`` when a run reports both).  Points without a test accuracy are skipped.

    Returns:
        Rows sorted by dataset, model, method, name, sparsity, with keys ``dataset``, ``model``,
        ``method`` (the run's ``label``), ``name``, ``procedure`` (the run's ``method``),
        ``penalty``, ``sparsity`` (requested), ``fine_tuned``, ``seeds``, ``seed_list``,
        ``acc_mean``, ``acc_std`` (sample std, 0.0 for one seed), ``acc_min``, ``acc_max``,
        ``sparsity_measured_mean``, ``epochs``, ``denominator``, ``flops_nonzero_mean``,
        ``compression_mean``, ``speedup_mean``, ``run_dirs``.

    Raises:
        SparsehaloError: a malformed point, the same seed twice in a group, or runs of one group
            that disagree on epochs or on the sparsity denominator.
    """
    rows = [_row(key, members) for key, members in _groups(summaries).items()]
    rows.sort(key=lambda r: (r["dataset"], r["model"], r["method"], r["name"], r["sparsity"], r["fine_tuned"] is True))
    return rows
