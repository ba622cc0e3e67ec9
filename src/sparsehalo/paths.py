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


def snapshots_dir(root: Path) -> Path:
    """Earlier epochs' checkpoints, kept when ``run.keep_checkpoints`` > 1."""
    return Path(root) / "checkpoints"


def snapshot(root: Path, epoch: int) -> Path:
    """The checkpoint after ``epoch`` finished epochs, kept under :func:`snapshots_dir`."""
    return snapshots_dir(root) / f"epoch-{epoch:04d}.pt"


def snapshot_epoch(path: Path) -> int | None:
    """The epoch of a file named by :func:`snapshot`, or None."""
    stem = Path(path).name.removeprefix("epoch-").removesuffix(".pt")
    return int(stem) if Path(path).name == f"epoch-{stem}.pt" and stem.isdigit() else None


def metrics(root: Path) -> Path:
    """One row per finished epoch."""
    return Path(root) / "metrics.csv"


def tensorboard(root: Path) -> Path:
    """TensorBoard event files (``run.loggers = ["tensorboard"]``)."""
    return Path(root) / "tensorboard"


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


def pruned_stem(sparsity: float, scope: str = "global", min_density: float | None = None) -> str:
    """``sparsity-0.98`` for a global prune with the default options; every other option is spelled
    after it: ``sparsity-0.98-layer`` (per-layer scope), ``sparsity-0.98-min0.05`` (``--min-density
    0.05``), ``sparsity-0.98-layer-min0.05``.  A ``min_density`` of None or 0 (no floor) is the default."""
    stem = f"sparsity-{level_name(sparsity)}" + ("" if scope == "global" else f"-{scope}")
    return stem + (f"-min{min_density:g}" if min_density else "")


def pruned_options(sparsity: float, path: Path) -> tuple[str, float | None] | None:
    """``(scope, min_density)`` of a pruned file named by :func:`pruned_stem` at ``sparsity``, or None
    if its name is not one."""
    base = pruned_stem(sparsity)
    name = Path(path).name
    stem = name[: -len(".pt")] if name.endswith(".pt") else name[: -len(".json")] if name.endswith(".json") else None
    if stem is None or not (stem == base or stem.startswith(base + "-")):
        return None
    rest = stem[len(base):]
    min_density = None
    head, sep, tail = rest.rpartition("-min")
    if sep:
        try:
            min_density = float(tail)
        except ValueError:
            min_density = None
        else:
            rest = head
    scope = rest.removeprefix("-") or "global"
    if pruned_stem(sparsity, scope, min_density) != stem:
        return None
    return scope, min_density


def pruned_checkpoint(root: Path, sparsity: float, scope: str = "global", min_density: float | None = None) -> Path:
    """The weights (and mask) written by ``sparsehalo prune``."""
    return pruned_dir(root) / f"{pruned_stem(sparsity, scope, min_density)}.pt"


def pruned_summary(root: Path, sparsity: float, scope: str = "global", min_density: float | None = None) -> Path:
    """What ``sparsehalo prune`` measured."""
    return pruned_dir(root) / f"{pruned_stem(sparsity, scope, min_density)}.json"


def pruned_checkpoints(root: Path, sparsity: float) -> list[Path]:
    """The pruned checkpoints of ``root`` at ``sparsity`` that exist, one per set of options (scope,
    ``min_density``): the default one first, then the others by name."""
    d = pruned_dir(root)
    stem = pruned_stem(sparsity)
    found = [d / f"{stem}.pt"] + sorted(d.glob(f"{stem}-*.pt"))
    return [p for p in found if p.is_file() and pruned_options(sparsity, p) is not None]


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


def onnx_export(root: Path) -> Path:
    return export_dir(root) / "model.onnx"


def slim_dir(root: Path) -> Path:
    """Structurally pruned, slimmed models written by ``sparsehalo prune --structured``."""
    return Path(root) / "slim"


def slim_stem(channels: float | None = None, macs: float | None = None, scope: str = "global") -> str:
    """``macs-0.5`` / ``channels-0.3`` for a global structured prune; ``-layer`` after it for the per-layer scope."""
    target = f"macs-{level_name(macs)}" if macs is not None else f"channels-{level_name(channels)}"
    return target + ("" if scope == "global" else f"-{scope}")


def slim_checkpoint(root: Path, stem: str) -> Path:
    """The slim model (state dict, channel mask, architecture, config) of one structured prune."""
    return slim_dir(root) / f"{stem}.pt"


def slim_summary(root: Path, stem: str) -> Path:
    """What ``sparsehalo prune --structured`` measured (accuracy, parameters, MACs before and after)."""
    return slim_dir(root) / f"{stem}.json"


def slim_export(root: Path) -> Path:
    """``sparsehalo export --format slim``: the plain state dict (its description: ``model.slim.json`` next to it)."""
    return export_dir(root) / "model.slim.pt"


def is_run(root: Path) -> bool:
    """Whether ``root`` looks like a run directory (it holds a config)."""
    return config(root).is_file()
