"""Figures of the reports: accuracy against sparsity, and HALO's learned scales against the weights.

Figures are bare matplotlib figures from :func:`sparsehalo.io.new_figure`, written by
:func:`sparsehalo.io.save_figure` (atomically, no pyplot state).
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Sequence

import torch

from .. import paths
from ..errors import SparsehaloError
from ..io import load_torch, new_figure, read_json, save_figure
from ..penalties import HALO
from ..penalties.base import scale_key
from .style import assign_styles, family_of, thin_labels
from .tables import Column, column_key

# Closed-form scale curve uses the class's own defaults when the config leaves xi/psi unset.
_HALO_DEFAULTS = {k: inspect.signature(HALO.__init__).parameters[k].default for k in ("xi", "psi")}
# Free space between two shown tick labels, in points (1/72 inch).
TICK_GAP_PT = 4.0


def _legend_label(head: str, prefix: str) -> str:
    """``HALO [mnist_lenet300_halo_xi5e-05]`` -> ``HALO [halo_xi5e-05]`` for the names' shared prefix."""
    if prefix and "[" in head:
        before, _, rest = head.partition("[")
        if rest.startswith(prefix):
            return f"{before}[{rest[len(prefix):]}"
    return head


def _shared_prefix(names: Sequence[str]) -> str:
    """The longest common prefix of ``names`` that ends in ``_`` (empty for fewer than two names)."""
    if len(names) < 2:
        return ""
    prefix = names[0]
    for n in names[1:]:
        while not n.startswith(prefix):
            prefix = prefix[:-1]
    return prefix[: prefix.rfind("_") + 1]


def _thin_ticks(fig, axes, labels: list[list[str]]) -> None:
    """Blank the tick labels that would come closer than :data:`TICK_GAP_PT` on any of ``axes``.

    All axes share the tick positions; a label is kept on all of them or on none, judged by the
    widest of its texts, so the two scales of one level stay together.
    """
    fig.canvas.draw()  # lays the figure out: label extents are final
    renderer = fig.canvas.get_renderer()
    extents = [[t.get_window_extent(renderer) for t in ax.xaxis.get_ticklabels()] for ax in axes]
    centres = [(e.x0 + e.x1) / 2 for e in extents[0]]
    widths = [max(ex[i].width for ex in extents) for i in range(len(centres))]
    keep = set(thin_labels(centres, widths, TICK_GAP_PT * fig.dpi / 72))
    for ax, texts in zip(axes, labels):
        ax.set_xticks(ax.get_xticks(), [t if i in keep else "" for i, t in enumerate(texts)])


def plot_accuracy(rows: list[dict], cols: list[Column], path: str | Path, title: str, seeds_phrase: str) -> Path:
    """Write :func:`accuracy_figure` to ``path`` (PNG) and return it as a :class:`~pathlib.Path`."""
    path = Path(path)
    save_figure(accuracy_figure(rows, cols, title, seeds_phrase), path)
    return path


def accuracy_figure(rows: list[dict], cols: list[Column], title: str, seeds_phrase: str):
    """Test accuracy against the share of weights kept (log scale), one series per table column.

    Each series is styled by its method family (:mod:`sparsehalo.results.style`); the legend sits
    below the axes; tick labels that would overlap are left out (the tick marks stay).

    Args:
        rows: aggregated rows of one (dataset, model).
        cols: their table columns (:func:`sparsehalo.results.tables.columns`), the series order.
        title: first line of the title; ``seeds_phrase`` is the second.

    Returns:
        The matplotlib ``Figure`` (laid out; not yet written).
    """
    from matplotlib.ticker import NullLocator

    series = []
    for key, head in cols:
        mine = sorted((r for r in rows if column_key(r, cols) == key and r["sparsity"] < 1), key=lambda r: r["sparsity"])
        if mine:
            series.append((head, mine))
    styles = assign_styles([family_of(m[0]["procedure"], m[0]["penalty"]) for _, m in series],
                           [m[0]["fine_tuned"] for _, m in series])
    prefix = _shared_prefix(sorted({r["name"] for r in rows}))

    ncols = min(3, max(1, len(series)))
    fig = new_figure((9.0, 5.0 + 0.22 * math.ceil(len(series) / ncols)))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    levels = set()
    for (head, mine), style in zip(series, styles):
        levels.update(r["sparsity"] for r in mine)
        ax.errorbar([100 * (1 - r["sparsity"]) for r in mine], [r["acc_mean"] for r in mine],
                    yerr=[r["acc_std"] for r in mine], color=style.colour, marker=style.marker,
                    linestyle=style.linestyle, ms=5, lw=1.3, capsize=2.5, elinewidth=0.8,
                    label=_legend_label(head, prefix))
    ax.set_xscale("log")
    ax.invert_xaxis()  # density falls to the right, so sparsity grows to the right
    ticks = sorted({100 * (1 - s) for s in levels}, reverse=True)
    kept_labels = [f"{round(t, 6):g}" for t in ticks]
    sparsity_labels = [f"{round(100 - t, 6):g}" for t in ticks]
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(ticks, kept_labels)
    ax.set_xlabel("weights kept (%, log scale)")
    top = ax.secondary_xaxis("top")
    top.xaxis.set_minor_locator(NullLocator())
    top.set_xticks(ticks, sparsity_labels)
    top.set_xlabel("sparsity (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{title}\n{seeds_phrase}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.tick_params(axis="x", labelsize=8)
    top.tick_params(axis="x", labelsize=8)
    dashed = any(st.linestyle != "-" for st in styles)
    fig.legend(loc="outside lower center", ncols=ncols, fontsize=8, frameon=False,
               title="dashed: fine-tuned after pruning" if dashed else None, title_fontsize=8)
    if ticks:
        _thin_ticks(fig, [ax, top], [kept_labels, sparsity_labels])
    return fig


# -- HALO scales -------------------------------------------------------------------------------
def _halo_settings(run_dir: Path, ckpt: dict) -> tuple[dict, str]:
    """``penalty`` section of the run's config (its config file, else the checkpoint's copy)."""
    path = paths.config(run_dir)
    if path.is_file():
        cfg = read_json(path, "config")
        source = path.name
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
        run_dir: a run directory with a checkpoint (and ideally its config).
        out_path: where the PNG goes (written atomically).

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        SparsehaloError: unreadable checkpoint or config, a run without per-weight scales (not HALO),
            or scales that do not match the model's weights.
    """
    run_dir, out_path = Path(run_dir), Path(out_path)
    ckpt = load_torch(paths.checkpoint(run_dir), required=("model", "penalty"))
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

    fig = new_figure((11, 4.5))
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

    logs = [(values[values > 0].log10(), label) for values, label in ((w, "log10 |w|"), (lam, "log10 |λ|"))]
    logs = [(v, label) for v, label in logs if v.numel()]
    if logs:
        # Shared bins: scales bunched in a narrow range would otherwise get 100 bins too thin to see.
        lo, hi = min(float(v.min()) for v, _ in logs), max(float(v.max()) for v, _ in logs)
        edges = torch.linspace(lo, hi if hi > lo else lo + 1.0, 101).numpy()
        for v, label in logs:
            hx.hist(v.numpy(), bins=edges, alpha=0.5, label=label)
        hx.set_yscale("log")
    hx.set_xlabel("log10 of magnitude")
    hx.set_ylabel("entries (log scale)")
    hx.set_title("distribution over all penalized entries", fontsize=8)
    hx.legend(fontsize=8)
    fig.suptitle(f"learned HALO scales: {run_dir.name}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out_path)
    return out_path
