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
from ..io import atomic_write_text
from .aggregate import aggregate
from .plots import plot_accuracy, plot_scales
from .runs import find_runs, group_name, load_summaries
from .tables import columns, safe_name, section, seeds_phrase, summary_csv


def write_report(
    summaries: Iterable[dict],
    out_dir: str | Path,
    title: str | None = None,
    *,
    scale_plots: Mapping[str, str | Path] | None = None,
) -> dict[str, Path]:
    """Write ``summary.csv``, ``report.md`` and ``accuracy_<dataset>_<model>.png`` into ``out_dir``.

    Args:
        summaries: dicts as returned by :func:`~sparsehalo.results.runs.load_summaries`.
        out_dir: created if needed; existing files of the same names are replaced atomically.
        title: heading of ``report.md`` (default ``"sparsehalo report"``).
        scale_plots: ``{run name: image path}`` linked under that run's table (see :func:`plot_scales`).

    Returns:
        ``{file name: path}`` of every file written.

    Raises:
        SparsehaloError: if there is nothing to report, or as :func:`aggregate`.
    """
    rows = aggregate(summaries)
    if not rows:
        raise SparsehaloError("the runs have no points with a test accuracy to report")
    out_dir = Path(out_dir)
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
    paths: Iterable[str | Path], out_dir: str | Path, title: str | None = None, scales: bool = True
) -> dict[str, Path]:
    """Find runs under ``paths`` and write the full report into ``out_dir``.

    With ``scales``, also plots :func:`plot_scales` for one run (the lowest seed) of every HALO
    method into ``scales_<name>.png`` and links it.  Checkpoints are large and often not kept: when
    a run's checkpoint is gone, a ``scales_<name>.png`` already in ``out_dir`` (drawn from it
    earlier) stays linked, else the plot is skipped; both with a warning.

    Returns:
        ``{file name: path}`` of every file written.
    """
    summaries = load_summaries(find_runs(paths))
    out_dir = Path(out_dir)
    plots: dict[str, Path] = {}
    drawn: list[Path] = []
    if scales:
        for name, s in _first_seed(summaries).items():
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
    written = write_report(summaries, out_dir, title, scale_plots=plots)
    written.update({p.name: p for p in drawn})
    return dict(sorted(written.items()))
