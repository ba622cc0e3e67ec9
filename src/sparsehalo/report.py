"""Tables and plots from any set of finished run directories.

A run directory holds ``summary.json`` with one entry in ``points`` per evaluated sparsity.  Runs that
share ``(dataset, model, name)`` are seeds of one method; :func:`aggregate` averages them per sparsity
and :func:`write_report` writes ``summary.csv``, ``report.md`` and one accuracy plot per
``(dataset, model)``.  Every table says how many seeds it averages, what the sparsity divides by and
how many epochs each method trained, so methods are only compared on stated terms.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import math
import re
import statistics
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from . import checkpoint
from .errors import SparsehaloError
from .penalties.base import scale_key
from .penalties.halo import HALO

SUMMARY = "summary.json"
CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"

#: Columns of ``summary.csv``: the first seven are fixed, the rest follow in this order.
CSV_COLUMNS = (
    "model", "method", "sparsity", "seeds", "acc_mean", "acc_std", "epochs",
    "dataset", "name", "sparsity_measured", "fine_tuned", "compression", "speedup", "denominator",
    "acc_min", "acc_max", "seed_list", "flops_nonzero",
)

# Closed-form scale curve uses the class's own defaults when the config leaves xi/psi unset.
_HALO_DEFAULTS = {k: inspect.signature(HALO.__init__).parameters[k].default for k in ("xi", "psi")}


# -- finding and reading runs ------------------------------------------------------------------
def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories (those holding ``summary.json``) at or below each of ``paths``.

    Args:
        paths: run directories, any parent of them, or ``summary.json`` files.

    Returns:
        Resolved directories, sorted and without duplicates.

    Raises:
        SparsehaloError: if a path does not exist or no run is found at all.
    """
    paths = [Path(p) for p in paths]
    found: set[Path] = set()
    for p in paths:
        if not p.exists():
            raise SparsehaloError(f"no such file or directory: {str(p)!r}")
        if p.is_file():
            if p.name != SUMMARY:
                raise SparsehaloError(f"{str(p)!r} is neither a run directory nor a {SUMMARY}")
            found.add(p.resolve().parent)
            continue
        found.update(s.resolve().parent for s in p.rglob(SUMMARY) if s.is_file())
    if not found:
        where = ", ".join(repr(str(p)) for p in paths) or "(no paths given)"
        raise SparsehaloError(f"no finished runs ({SUMMARY}) found in {where}")
    return sorted(found)


def load_summaries(run_dirs: Iterable[str | Path]) -> list[dict]:
    """Read ``summary.json`` of each run directory.

    ``run_dir`` in each returned dict is set to the directory it was read from (the stored value
    goes stale when runs are moved).

    Raises:
        SparsehaloError: naming the file, if it is missing, not valid JSON, or has no ``points`` list.
    """
    summaries = []
    for d in run_dirs:
        path = Path(d) / SUMMARY
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SparsehaloError(f"cannot read {str(path)!r}: {exc}") from None
        if not isinstance(obj, dict):
            raise SparsehaloError(f"{str(path)!r} does not hold a JSON object")
        if not isinstance(obj.get("points"), list):
            raise SparsehaloError(f"{str(path)!r} has no 'points' list (one entry per evaluated sparsity)")
        obj["run_dir"] = str(Path(d))
        summaries.append(obj)
    return summaries


# -- aggregation -------------------------------------------------------------------------------
def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _one(values: dict[Any, list[str]], what: str, group: str) -> Any:
    """The single value runs of a group agree on, or an error naming who disagrees."""
    if len(values) > 1:
        detail = "; ".join(f"{v} in {', '.join(dirs)}" for v, dirs in values.items())
        raise SparsehaloError(f"runs of {group} disagree on {what}: {detail}")
    return next(iter(values), None)


def _name(s: dict) -> str:
    return str(s.get("name") or s.get("label") or Path(s.get("run_dir", "run")).name)


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
    groups: dict[tuple, list[tuple[dict, dict]]] = {}
    for s in summaries:
        where = s.get("run_dir", _name(s))
        for p in s.get("points", []):
            sp = p.get("sparsity_requested") if isinstance(p, dict) else None
            if not isinstance(sp, (int, float)) or isinstance(sp, bool) or not 0 <= sp <= 1:
                raise SparsehaloError(f"run {where}: point without a valid sparsity_requested: {p!r}"[:300])
            if p.get("test_accuracy") is None:
                continue
            # Rounded so 0.9 from different writers lands in one group.
            key = (str(s.get("dataset") or "unknown"), str(s.get("model") or "unknown"), _name(s),
                   round(float(sp), 9), p.get("fine_tuned"))
            groups.setdefault(key, []).append((s, p))

    rows = []
    for (dataset, model, name, sp, fine_tuned), members in groups.items():
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
        first = members[0][0]
        rows.append(
            {
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
                "acc_mean": statistics.mean(accs),
                "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
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
        )
    rows.sort(key=lambda r: (r["dataset"], r["model"], r["method"], r["name"], r["sparsity"], r["fine_tuned"] is True))
    return rows


# -- writing -----------------------------------------------------------------------------------
def _csv_text(rows: list[dict]) -> str:
    def cell(v):
        return "" if v is None else v

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([cell(v) for v in (
            r["model"], r["method"], r["sparsity"], r["seeds"], r["acc_mean"], r["acc_std"], r["epochs"],
            r["dataset"], r["name"], r["sparsity_measured_mean"], r["fine_tuned"], r["compression_mean"],
            r["speedup_mean"], r["denominator"], r["acc_min"], r["acc_max"],
            " ".join(map(str, r["seed_list"])), r["flops_nonzero_mean"],
        )])
    return buf.getvalue()


def _level(sparsity: float) -> str:
    """``0.985`` -> ``"98.5%"``; the unpruned level is marked."""
    text = f"{round(100 * sparsity, 6):g}%"
    return f"{text} (unpruned)" if sparsity == 0 else text


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _columns(rows: list[dict]) -> list[tuple[tuple, str]]:
    """Table columns of one (dataset, model): ``[(key, header)]`` with unique headers.

    A column is a run name, split by ``fine_tuned`` only when that name reports both.
    """
    variants: dict[str, set] = {}
    for r in rows:
        variants.setdefault(r["name"], set()).add(r["fine_tuned"])
    labels: dict[str, set] = {}
    for r in rows:
        labels.setdefault(r["method"], set()).add(r["name"])
    cols: dict[tuple, str] = {}
    for r in rows:
        split = len(variants[r["name"]]) > 1
        key = (r["name"], r["fine_tuned"] if split else None)
        if key in cols:
            continue
        head = r["method"] if len(labels[r["method"]]) == 1 else f"{r['method']} [{r['name']}]"
        if split:
            head += " (fine-tuned)" if r["fine_tuned"] else " (no fine-tuning)"
        cols[key] = head
    return list(cols.items())


def _col_key(row: dict, cols: list[tuple[tuple, str]]) -> tuple:
    keys = {k for k, _ in cols}
    split = (row["name"], row["fine_tuned"])
    return split if split in keys else (row["name"], None)


def _seeds_phrase(rows: list[dict]) -> tuple[str, bool]:
    """Sentence about seed counts and whether cells must state their own ``n``."""
    counts = {r["seeds"] for r in rows}
    if len(counts) > 1:
        return "mean ± std over the seeds of each cell (n given in the cell; sample standard deviation)", True
    n = counts.pop()
    if n == 1:
        return "one seed per cell (no standard deviation)", False
    return f"mean ± std over {n} seeds (sample standard deviation)", False


def _cell(r: dict, show_n: bool) -> str:
    text = f"{r['acc_mean']:.2f}" if r["seeds"] == 1 else f"{r['acc_mean']:.2f} ± {r['acc_std']:.2f}"
    return f"{text} (n={r['seeds']})" if show_n else text


def _per_column(rows: list[dict], cols, field: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for key, head in cols:
        values = {r[field] for r in rows if _col_key(r, cols) == key}
        out[head] = sorted(values, key=lambda v: (v is None, str(v) if not isinstance(v, (int, float)) else v))
    return out


def _epochs_line(rows: list[dict], cols) -> str:
    per = _per_column(rows, cols, "epochs")
    every = {e for values in per.values() for e in values}
    if len(every) == 1 and None not in every:
        return f"Training budget: all methods: {every.pop()} epochs in total, fine-tuning and IMP rounds included."
    parts = [
        f"{head}: {', '.join('not recorded' if e is None else str(e) for e in values)}"
        for head, values in per.items()
    ]
    return "Training budget (epochs in total, fine-tuning and IMP rounds included): " + "; ".join(parts) + "."


def _denominator_line(rows: list[dict], cols) -> str:
    per = _per_column(rows, cols, "denominator")
    every = {d for values in per.values() for d in values}
    if len(every) == 1 and None not in every:
        return f"Sparsity = exact zeros / {every.pop()}."
    parts = [f"{head}: {' / '.join('not recorded' if d is None else d for d in values)}" for head, values in per.items()]
    return "Sparsity = exact zeros / (differs per method) " + "; ".join(parts) + "."


def _measured_line(rows: list[dict]) -> str:
    gaps = [abs(r["sparsity_measured_mean"] - r["sparsity"]) for r in rows if r["sparsity_measured_mean"] is not None]
    if not gaps:
        return "Rows are the requested sparsity levels (measured sparsity not recorded)."
    worst = max(gaps)
    if worst < 5e-5:
        return "Rows are the requested sparsity levels; the measured sparsity matches them to within 0.01%."
    return f"Rows are the requested sparsity levels; the measured sparsity differs by up to {100 * worst:.2f}% (see summary.csv)."


def _fine_tune_line(rows: list[dict], cols) -> str | None:
    per = _per_column(rows, cols, "fine_tuned")
    tuned = [h for h, v in per.items() if v == [True]]
    plain = [h for h, v in per.items() if v == [False]]
    parts = []
    if tuned:
        parts.append(f"fine-tuned after pruning: {', '.join(tuned)}")
    if plain:
        parts.append(f"evaluated right after pruning, no fine-tuning: {', '.join(plain)}")
    if not parts:
        return None
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _plot_accuracy(rows: list[dict], cols, path: Path, title: str, seeds_phrase: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, NullLocator

    # A bare Figure on the Agg canvas: no pyplot, so no global backend switch and no figure leaks.
    fig = Figure(figsize=(6.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    levels = set()
    for key, head in cols:
        mine = sorted((r for r in rows if _col_key(r, cols) == key and r["sparsity"] < 1), key=lambda r: r["sparsity"])
        if not mine:
            continue
        x = [100 * (1 - r["sparsity"]) for r in mine]
        levels.update(r["sparsity"] for r in mine)
        ax.errorbar(x, [r["acc_mean"] for r in mine], yerr=[r["acc_std"] for r in mine],
                    marker="o", ms=4, capsize=3, label=head)
    ax.set_xscale("log")
    ax.invert_xaxis()  # density falls to the right, so sparsity grows to the right
    ticks = sorted({100 * (1 - s) for s in levels}, reverse=True)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ticks, [f"{round(t, 6):g}" for t in ticks])
    ax.set_xlabel("weights kept (%, log scale)")
    top = ax.secondary_xaxis("top")
    top.xaxis.set_minor_locator(NullLocator())
    top.set_xticks(ticks, [f"{round(100 - t, 6):g}" for t in ticks])
    top.set_xlabel("sparsity (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{title}\n{seeds_phrase}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    checkpoint.atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))


def write_report(
    summaries: Iterable[dict],
    out_dir: str | Path,
    title: str | None = None,
    *,
    scale_plots: Mapping[str, str | Path] | None = None,
) -> dict[str, Path]:
    """Write ``summary.csv``, ``report.md`` and ``accuracy_<dataset>_<model>.png`` into ``out_dir``.

    Args:
        summaries: dicts as returned by :func:`load_summaries`.
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
    checkpoint.atomic_write_text(csv_path, _csv_text(rows))
    written[csv_path.name] = csv_path

    md = [f"# {title or 'sparsehalo report'}", ""]
    tables: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        tables.setdefault((r["dataset"], r["model"]), []).append(r)
    for (dataset, model), mine in tables.items():
        cols = _columns(mine)
        phrase, show_n = _seeds_phrase(mine)
        cells = {(r["sparsity"], _col_key(r, cols)): r for r in mine}
        md += [f"## {dataset} / {model}", "", f"Test accuracy (%), {phrase}.", ""]
        md.append("| sparsity | " + " | ".join(head for _, head in cols) + " |")
        md.append("|---:|" + "---:|" * len(cols))
        for sp in sorted({r["sparsity"] for r in mine}):
            line = [_cell(cells[sp, key], show_n) if (sp, key) in cells else "—" for key, _ in cols]
            md.append(f"| {_level(sp)} | " + " | ".join(line) + " |")
        md += ["", _denominator_line(mine, cols), _measured_line(mine), _epochs_line(mine, cols)]
        fine = _fine_tune_line(mine, cols)
        if fine:
            md.append(fine)
        runs = {}
        for r in mine:
            runs.setdefault((r["method"], r["name"]), set()).update(r["seed_list"])
        md += ["", "Runs: " + "; ".join(
            f"{method} (`{name}`, seeds {', '.join(map(str, sorted(seeds))) or 'not recorded'})"
            for (method, name), seeds in runs.items()
        ) + ".", ""]

        png = out_dir / f"accuracy_{_safe(dataset)}_{_safe(model)}.png"
        _plot_accuracy(mine, cols, png, f"{dataset} / {model}: test accuracy after pruning", phrase)
        written[png.name] = png
        md += [f"![test accuracy against sparsity, {dataset} / {model}]({png.name})", ""]
        for name in dict.fromkeys(r["name"] for r in mine):
            if scale_plots and name in scale_plots:
                target = Path(scale_plots[name])
                link = target.name if target.parent.resolve() == out_dir.resolve() else target.as_posix()
                md += [f"![learned scales against weights, {name}]({link})", ""]

    md_path = out_dir / "report.md"
    checkpoint.atomic_write_text(md_path, "\n".join(md).rstrip() + "\n")
    written[md_path.name] = md_path
    return dict(sorted(written.items()))


# -- HALO scales -------------------------------------------------------------------------------
def _halo_settings(run_dir: Path, ckpt: dict) -> tuple[dict, str]:
    """``penalty`` section of the run's config (config.json, else the checkpoint's copy)."""
    path = run_dir / CONFIG
    if path.is_file():
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SparsehaloError(f"cannot read {str(path)!r}: {exc}") from None
        source = CONFIG
    else:
        cfg = ckpt.get("config")
        try:
            cfg = json.loads(cfg) if isinstance(cfg, str) else cfg
        except json.JSONDecodeError:
            cfg = None
        source = "the checkpoint"
    penalty = cfg.get("penalty") if isinstance(cfg, dict) else None
    if not isinstance(penalty, dict):
        return {}, "HALO defaults (no config found)"
    return penalty, source


def plot_scales(run_dir: str | Path, out_path: str | Path) -> Path:
    """Plot a HALO run's learned scales ``|lambda|`` against its weights ``|w|``.

    Left: scatter of at most 20,000 entries (a fixed random subset) on log-log axes, with the
    closed-form optimum ``lambda* = (2 xi |w| / psi)**(1/3)`` for the run's ``xi`` and ``psi``
    (HALO's defaults where the config leaves them unset).  Right: histograms of ``log10|w|`` and
    ``log10|lambda|`` over all entries.  Exact zeros cannot sit on a log axis and are counted in
    the title instead.

    Args:
        run_dir: a run directory with ``checkpoint.pt`` (and ideally ``config.json``).
        out_path: where the PNG goes (written atomically).

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        SparsehaloError: unreadable checkpoint or config, a run without per-weight scales (not HALO),
            or scales that do not match the model's weights.
    """
    run_dir, out_path = Path(run_dir), Path(out_path)
    ckpt = checkpoint.load(run_dir / CHECKPOINT, required=("model", "penalty"))
    model_state, penalty_state = ckpt["model"], ckpt["penalty"]
    prefix = "scales."
    scale_names = [k for k in penalty_state if k.startswith(prefix)]
    if not scale_names:
        raise SparsehaloError(f"run {str(run_dir)!r} has no per-weight scales (not a HALO run); nothing to plot")
    by_key = {scale_key(n): n for n in model_state}
    ws, lams = [], []
    for k in scale_names:
        name = by_key.get(k[len(prefix):])
        lam = penalty_state[k]
        if name is None or model_state[name].shape != lam.shape:
            raise SparsehaloError(f"checkpoint of {str(run_dir)!r}: scale {k!r} matches no weight of the same shape")
        ws.append(model_state[name].detach().float().abs().flatten())
        lams.append(lam.detach().float().abs().flatten())
    w, lam = torch.cat(ws), torch.cat(lams)

    settings, source = _halo_settings(run_dir, ckpt)
    xi = settings.get("xi") if settings.get("xi") is not None else _HALO_DEFAULTS["xi"]
    psi = settings.get("psi") if settings.get("psi") is not None else _HALO_DEFAULTS["psi"]
    hyper = settings.get("hyper") or "l1"

    both = (w > 0) & (lam > 0)
    idx = both.nonzero().flatten()
    if idx.numel() > 20_000:
        # Fixed generator: the same run always gives the same picture.
        pick = torch.randperm(idx.numel(), generator=torch.Generator().manual_seed(0))[:20_000]
        idx = idx[pick.sort().values]
    zeros_w, zeros_lam = int((w == 0).sum()), int((lam == 0).sum())

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    ax, hx = fig.subplots(1, 2)
    ax.scatter(w[idx].numpy(), lam[idx].numpy(), s=2, alpha=0.3, rasterized=True,
               label=f"{idx.numel():,} of {w.numel():,} entries")
    if idx.numel():
        lo, hi = float(w[idx].min()), float(w[idx].max())
        grid = torch.logspace(math.log10(lo), math.log10(hi), 200, dtype=torch.float64) if hi > lo else torch.tensor([lo])
        note = "" if hyper == "l1" else f" (l1 form; run used hyper={hyper})"
        ax.plot(grid.numpy(), (2 * xi * grid / psi).pow(1 / 3).numpy(), color="C3",
                label=f"λ* = (2ξ|w|/ψ)^(1/3){note}")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("|w|")
    ax.set_ylabel("|λ|")
    ax.set_title(f"ξ={xi:g}, ψ={psi:g} (from {source}); exact zeros left out: w {zeros_w:,}, λ {zeros_lam:,}", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    for values, label in ((w, "log10 |w|"), (lam, "log10 |λ|")):
        positive = values[values > 0]
        if positive.numel():
            hx.hist(positive.log10().numpy(), bins=100, alpha=0.5, label=label)
    hx.set_xlabel("log10 of magnitude")
    hx.set_ylabel("entries")
    hx.set_title("distribution over all penalized entries", fontsize=8)
    hx.legend(fontsize=8)
    fig.suptitle(f"learned HALO scales: {run_dir.name}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    checkpoint.atomic_write_bytes(out_path, lambda f: f.write(buf.getvalue()))
    return out_path


# -- everything at once ------------------------------------------------------------------------
def make_report(
    paths: Iterable[str | Path], out_dir: str | Path, title: str | None = None, scales: bool = True
) -> dict[str, Path]:
    """Find runs under ``paths`` and write the full report into ``out_dir``.

    With ``scales``, also plots :func:`plot_scales` for one run (the lowest seed) of every HALO
    method into ``scales_<name>.png`` and links it; a run whose checkpoint is gone is skipped with a
    warning.

    Returns:
        ``{file name: path}`` of every file written.
    """
    summaries = load_summaries(find_runs(paths))
    out_dir = Path(out_dir)
    plots: dict[str, Path] = {}
    if scales:
        halo: dict[str, dict] = {}
        for s in summaries:
            if s.get("penalty") == "halo":
                name = _name(s)
                best = halo.get(name)
                seed = s.get("seed") if isinstance(s.get("seed"), int) else math.inf
                if best is None or seed < (best.get("seed") if isinstance(best.get("seed"), int) else math.inf):
                    halo[name] = s
        for name, s in halo.items():
            try:
                plots[name] = plot_scales(s["run_dir"], out_dir / f"scales_{_safe(name)}.png")
            except SparsehaloError as exc:
                warnings.warn(f"no scales plot for {name}: {exc}", stacklevel=2)
    written = write_report(summaries, out_dir, title, scale_plots=plots)
    written.update({p.name: p for p in plots.values()})
    return dict(sorted(written.items()))
