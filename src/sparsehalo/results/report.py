"""Reports from any set of finished run directories: ``summary.csv``, ``report.md`` and figures.

Every table says how many seeds it averages, what the sparsity divides by and how many epochs each
method trained, so methods are only compared on stated terms.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import SparsehaloError
from ..io import atomic_write_text, read_json, sha256_file, write_json
from .aggregate import aggregate
from .plots import plot_accuracy, plot_scales
from .runs import find_runs, group_name, load_summaries
from .tables import columns, safe_name, section, seeds_phrase, summary_csv

#: The file in a report directory listing every file sparsehalo wrote there, with its SHA-256.
MANIFEST = ".sparsehalo-report.json"
MANIFEST_FORMAT = "sparsehalo-report-1"


def _manifest(out_dir: Path) -> dict[str, str]:
    """``{file name: SHA-256}`` of the files sparsehalo wrote into ``out_dir`` (empty without a readable manifest)."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return {}
    try:
        raw = read_json(path, "report manifest")
    except SparsehaloError:
        return {}  # damaged: nothing in the directory counts as ours
    files = raw.get("files") if isinstance(raw, dict) else None
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)}


def _refuse_foreign(out_dir: Path, names: Iterable[str], force: bool) -> None:
    """Refuse (unless ``force``) when ``out_dir`` holds a file of ``names`` that sparsehalo did not
    write, or that changed since: one the manifest does not list with its current SHA-256."""
    if force:
        return
    ours = _manifest(out_dir)
    foreign = []
    for name in dict.fromkeys(names):
        p = out_dir / name
        if (p.exists() or p.is_symlink()) and (not p.is_file() or ours.get(name) != sha256_file(p)):
            foreign.append(name)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise SparsehaloError(f"{str(out_dir)!r} already holds {shown}, which sparsehalo did not write (or which changed "
                              "since); move them away, choose another --out, or pass --force to replace them")


def _record(out_dir: Path, files: Iterable[Path]) -> None:
    """Add ``files`` (in ``out_dir``) with their SHA-256 to the manifest, dropping files that are gone."""
    ours = _manifest(out_dir)
    for p in files:
        ours[Path(p).name] = sha256_file(p)
    ours = {name: h for name, h in sorted(ours.items()) if (out_dir / name).is_file()}
    write_json(out_dir / MANIFEST, {"format": MANIFEST_FORMAT, "files": ours})


def _report_names(rows: list[dict]) -> list[str]:
    """The files :func:`write_report` writes for ``rows``."""
    figures = [f"accuracy_{safe_name(r['dataset'])}_{safe_name(r['model'])}.png" for r in rows]
    return ["summary.csv", *dict.fromkeys(figures), "report.md"]


def write_report(
    summaries: Iterable[dict],
    out_dir: str | Path,
    title: str | None = None,
    *,
    scale_plots: Mapping[str, str | Path] | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Write ``summary.csv``, ``report.md`` and ``accuracy_<dataset>_<model>.png`` into ``out_dir``.

    Nothing sparsehalo did not write is replaced: ``out_dir/.sparsehalo-report.json`` lists every
    file written there with its SHA-256, and an existing file of the same name is only replaced when
    it is listed with its current hash (an earlier report, unchanged since), or with ``force``.

    Args:
        summaries: dicts as returned by :func:`~sparsehalo.results.runs.load_summaries`.
        out_dir: created if needed; files of an earlier report are replaced atomically.
        title: heading of ``report.md`` (default ``"sparsehalo report"``).
        scale_plots: ``{run name: image path}`` linked under that run's table (see :func:`plot_scales`).
        force: replace existing files of the same names even if sparsehalo did not write them.

    Returns:
        ``{file name: path}`` of every file written.

    Raises:
        SparsehaloError: if there is nothing to report, if ``out_dir`` holds a file of the same name
            that sparsehalo did not write (without ``force``; nothing is written then), or as
            :func:`aggregate`.
    """
    summaries = list(summaries)
    rows = aggregate(summaries)
    if not rows:
        raise SparsehaloError("the runs have no points with a test accuracy to report")
    out_dir = Path(out_dir)
    _refuse_foreign(out_dir, _report_names(rows), force)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    csv_path = out_dir / "summary.csv"
    atomic_write_text(csv_path, summary_csv(rows))
    written[csv_path.name] = csv_path

    md = [f"# {title or 'sparsehalo report'}", ""]
    tables: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        tables.setdefault((r["dataset"], r["model"]), []).append(r)
    for (dataset, model), mine in tables.items():
        png = out_dir / f"accuracy_{safe_name(dataset)}_{safe_name(model)}.png"
        plot_accuracy(mine, columns(mine), png, f"{dataset} / {model}: test accuracy after pruning", seeds_phrase(mine)[0])
        written[png.name] = png
        figures = [(f"test accuracy against sparsity, {dataset} / {model}", png.name)]
        for name in dict.fromkeys(r["name"] for r in mine):
            if scale_plots and name in scale_plots:
                target = Path(scale_plots[name])
                link = target.name if target.parent.resolve() == out_dir.resolve() else target.as_posix()
                figures.append((f"learned scales against weights, {name}", link))
        md += section(dataset, model, mine, figures)

    md_path = out_dir / "report.md"
    atomic_write_text(md_path, "\n".join(md).rstrip() + "\n")
    written[md_path.name] = md_path
    linked = [Path(p) for p in (scale_plots or {}).values() if Path(p).parent.resolve() == out_dir.resolve() and Path(p).is_file()]
    _record(out_dir, [*written.values(), *linked])
    return dict(sorted(written.items()))


def _first_seed(summaries: Iterable[dict]) -> dict[str, dict]:
    """The run with the lowest seed of every HALO method, by run name."""
    def seed(s: dict) -> float:
        return s["seed"] if isinstance(s.get("seed"), int) else math.inf

    halo: dict[str, dict] = {}
    for s in summaries:
        if s.get("penalty") == "halo":
            name = group_name(s)
            if name not in halo or seed(s) < seed(halo[name]):
                halo[name] = s
    return halo


def make_report(
    paths: Iterable[str | Path], out_dir: str | Path, title: str | None = None, scales: bool = True, force: bool = False
) -> dict[str, Path]:
    """Find runs under ``paths`` and write the full report into ``out_dir``.

    With ``scales``, also plots :func:`plot_scales` for one run (the lowest seed) of every HALO
    method into ``scales_<name>.png`` and links it.  Checkpoints are large and often not kept: when
    a run's checkpoint is gone, a ``scales_<name>.png`` already in ``out_dir`` (drawn from it
    earlier) stays linked, else the plot is skipped; both with a warning.

    As :func:`write_report`, no file that sparsehalo did not write into ``out_dir`` is replaced
    without ``force`` (the check covers every file of the report before the first is written).

    Returns:
        ``{file name: path}`` of every file written.

    Raises:
        SparsehaloError: no runs or nothing to report, or (without ``force``) a file of the report's
            names in ``out_dir`` that sparsehalo did not write; nothing is written then.
    """
    summaries = load_summaries(find_runs(paths))
    rows = aggregate(summaries)
    if not rows:
        raise SparsehaloError("the runs have no points with a test accuracy to report")
    out_dir = Path(out_dir)
    halo = _first_seed(summaries) if scales else {}
    _refuse_foreign(out_dir, [*_report_names(rows), *(f"scales_{safe_name(name)}.png" for name in halo)], force)
    plots: dict[str, Path] = {}
    drawn: list[Path] = []
    if scales:
        for name, s in halo.items():
            target = out_dir / f"scales_{safe_name(name)}.png"
            try:
                plots[name] = plot_scales(s["run_dir"], target)
                drawn.append(target)
            except SparsehaloError as exc:
                if target.is_file():
                    plots[name] = target
                    warnings.warn(f"scales plot for {name} kept as it was: {exc}", stacklevel=2)
                else:
                    warnings.warn(f"no scales plot for {name}: {exc}", stacklevel=2)
    written = write_report(summaries, out_dir, title, scale_plots=plots, force=True)  # checked above
    written.update({p.name: p for p in drawn})
    return dict(sorted(written.items()))
