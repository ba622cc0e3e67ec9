"""Finding finished run directories and reading their summaries.

A run directory is finished when it holds a summary (:func:`sparsehalo.paths.summary`); its
``points`` list has one entry per evaluated sparsity.  Everything here only reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .. import paths
from ..errors import SparsehaloError
from ..io import read_json

#: The summary's file name, derived from :mod:`sparsehalo.paths` (never spelled here).
SUMMARY = paths.summary(Path()).name


def find_runs(where: Iterable[str | Path]) -> list[Path]:
    """Run directories (those holding a summary) at or below each of ``where``.

    Args:
        where: run directories, any parent of them, or summary files.

    Returns:
        Resolved directories, sorted and without duplicates.

    Raises:
        SparsehaloError: if a path does not exist or no run is found at all.
    """
    where = [Path(p) for p in where]
    found: set[Path] = set()
    for p in where:
        if not p.exists():
            raise SparsehaloError(f"no such file or directory: {str(p)!r}")
        if p.is_file():
            if p.name != SUMMARY:
                raise SparsehaloError(f"{str(p)!r} is neither a run directory nor a {SUMMARY}")
            found.add(p.resolve().parent)
            continue
        found.update(s.resolve().parent for s in p.rglob(SUMMARY) if s.is_file())
    if not found:
        places = ", ".join(repr(str(p)) for p in where) or "(no paths given)"
        raise SparsehaloError(f"no finished runs ({SUMMARY}) found in {places}")
    return sorted(found)


def has_runs(where: str | Path) -> bool:
    """Whether :func:`find_runs` would find any run at or below ``where`` (False if it is absent)."""
    try:
        return bool(find_runs([where]))
    except SparsehaloError:
        return False


def read_summary(run_dir: str | Path) -> dict:
    """The summary of one run, with ``run_dir`` set to where it was read from.

    The stored ``run_dir`` goes stale when runs are moved, so it is replaced.

    Raises:
        SparsehaloError: naming the file, if it is missing, not valid JSON, or has no ``points`` list.
    """
    path = paths.summary(Path(run_dir))
    obj = read_json(path, "run summary")
    if not isinstance(obj, dict):
        raise SparsehaloError(f"{str(path)!r} does not hold a JSON object")
    if not isinstance(obj.get("points"), list):
        raise SparsehaloError(f"{str(path)!r} has no 'points' list (one entry per evaluated sparsity)")
    obj["run_dir"] = str(Path(run_dir))
    return obj


def load_summaries(run_dirs: Iterable[str | Path]) -> list[dict]:
    """:func:`read_summary` of each run directory, in the given order."""
    return [read_summary(d) for d in run_dirs]


def run_name(summary: dict) -> str:
    """The name a run is grouped under: its ``name``, else its ``label``, else its directory's name."""
    return str(summary.get("name") or summary.get("label") or Path(summary.get("run_dir", "run")).name)


def group_name(summary: dict) -> str:
    """The method a run counts for: :func:`run_name`, plus `` (target)`` for a run in target mode
    (``target_sparsity`` set), so one name's fixed-strength and target runs are separate methods."""
    return run_name(summary) + ("" if summary.get("target_sparsity") is None else " (target)")


def summaries_named(root: str | Path, name: str) -> list[dict]:
    """Summaries of the finished runs called ``name`` directly under ``root`` (``<name>-<hash>/``).

    Sorted by directory, so pages built from them do not depend on the file system's order.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for d in sorted(root.glob(f"{name}-*")):
        if paths.summary(d).is_file():
            s = read_summary(d)
            if s.get("name") == name:  # "<name>-*" also matches longer names that extend this one
                found.append(s)
    return found


def accuracy_by_seed(root: str | Path, name: str, level: str, fine_tuned: bool = False) -> dict[int, float]:
    """Test accuracy at sparsity ``level`` (spelled as :func:`sparsehalo.paths.level_name`) of the
    finished runs called ``name`` under ``root``, by seed; only points with the given ``fine_tuned``."""
    out = {}
    for s in summaries_named(root, name):
        for p in s["points"]:
            if paths.level_name(p["sparsity_requested"]) == level and bool(p.get("fine_tuned")) == fine_tuned:
                out[s["seed"]] = p["test_accuracy"]
    return out
