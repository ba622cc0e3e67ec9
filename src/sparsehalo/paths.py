"""Every file of a run directory, named in one place.

Each function takes the run root (``<out>/<name>-<hash>``) and returns one path, so the code that
writes a file and the code that reads it cannot drift apart (OpenLTH's ``foundations/paths.py``).
"""

from __future__ import annotations

from pathlib import Path


def config(root: Path) -> Path:
    """The full config of the run (its hash names ``root``)."""
    return Path(root) / "config.json"


def checkpoint(root: Path) -> Path:
    """Training state, rewritten atomically after every epoch."""
    return Path(root) / "checkpoint.pt"


def metrics(root: Path) -> Path:
    """One row per finished epoch."""
    return Path(root) / "metrics.csv"


def summary(root: Path) -> Path:
    """The result; its presence marks a finished run."""
    return Path(root) / "summary.json"


def lock(root: Path) -> Path:
    """Who is writing the run now (pid and host; see :mod:`sparsehalo.locks`)."""
    return Path(root) / "run.lock"


def level_name(sparsity: float) -> str:
    """How a sparsity level is spelled in file names and tables: ``0.98``, ``0.995``."""
    return f"{sparsity:g}"


def pruned_dir(root: Path) -> Path:
    return Path(root) / "pruned"


def pruned_stem(sparsity: float, scope: str = "global") -> str:
    """``sparsity-0.98`` for a global prune, ``sparsity-0.98-layer`` for a per-layer one."""
    return f"sparsity-{level_name(sparsity)}" + ("" if scope == "global" else f"-{scope}")


def pruned_checkpoint(root: Path, sparsity: float, scope: str = "global") -> Path:
    """The weights (and mask) written by ``sparsehalo prune``."""
    return pruned_dir(root) / f"{pruned_stem(sparsity, scope)}.pt"


def pruned_summary(root: Path, sparsity: float, scope: str = "global") -> Path:
    """What ``sparsehalo prune`` measured."""
    return pruned_dir(root) / f"{pruned_stem(sparsity, scope)}.json"


def pruned_checkpoints(root: Path, sparsity: float) -> list[Path]:
    """The pruned checkpoints of ``root`` at ``sparsity`` that exist, one per scope."""
    d = pruned_dir(root)
    stem = pruned_stem(sparsity)
    found = [d / f"{stem}.pt"] + sorted(d.glob(f"{stem}-*.pt"))
    return [p for p in found if p.is_file()]


def sweep_csv(root: Path) -> Path:
    return Path(root) / "sweep.csv"


def sweep_png(root: Path) -> Path:
    return Path(root) / "sweep.png"


def energy_json(root: Path) -> Path:
    return Path(root) / "energy.json"


def energy_png(root: Path) -> Path:
    return Path(root) / "energy.png"


def export_dir(root: Path) -> Path:
    return Path(root) / "export"


def sparse_export(root: Path) -> Path:
    return export_dir(root) / "model.sparse.safetensors"


def dense_export(root: Path) -> Path:
    return export_dir(root) / "model.pt"


def is_run(root: Path) -> bool:
    """Whether ``root`` looks like a run directory (it holds a config)."""
    return config(root).is_file()
