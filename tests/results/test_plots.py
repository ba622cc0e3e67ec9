"""Figures: HALO's learned scales, and accuracy plots people can read."""

import pytest
import torch

from sparsehalo import io
from sparsehalo.errors import SparsehaloError
from sparsehalo.results import plot_scales
from sparsehalo.results.plots import TICK_GAP_PT, accuracy_figure
from sparsehalo.results.tables import columns

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_scales_writes_png(tmp_path, fake):
    run = fake.halo_run(tmp_path)
    out = plot_scales(run, tmp_path / "plots" / "scales.png")
    assert out == tmp_path / "plots" / "scales.png"
    assert out.read_bytes().startswith(PNG)
    big = fake.halo_run(tmp_path / "big", n=5000)  # 25,000 entries: subsampled
    assert plot_scales(big, tmp_path / "big.png").read_bytes().startswith(PNG)


def test_plot_scales_refuses_runs_without_scales(tmp_path):
    run = tmp_path / "plain"
    io.save_torch(run / "checkpoint.pt", {"model": {"fc.weight": torch.ones(2, 2)}, "penalty": {}, "config": "{}", "epoch": 1})
    with pytest.raises(SparsehaloError, match="no per-weight scales"):
        plot_scales(run, tmp_path / "x.png")
    with pytest.raises(SparsehaloError, match="not found"):
        plot_scales(tmp_path / "nothing", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# Levels of the MNIST campaign: 99.5 / 99.6 (0.5 / 0.4 kept) and 98 / 98.5 sit close on a log axis.
LEVELS = [0.0, 0.9, 0.95, 0.98, 0.985, 0.99, 0.995, 0.996, 0.997, 0.998]
SERIES = [  # (label, procedure, penalty, name, fine_tuned)
    *(("HALO", "oneshot", "halo", f"m_halo_xi{i}", False) for i in range(5)),
    ("L1", "oneshot", "l1", "m_l1", False), ("SWS", "oneshot", "sws", "m_sws", False),
    ("MCP", "oneshot", "mcp", "m_mcp", False), ("magnitude", "oneshot", "none", "m_dense", False),
    ("GMP", "gmp", "none", "m_gmp", True), ("IMP", "imp", "none", "m_imp", True),
    ("SNIP", "snip", "none", "m_snip", True), ("random", "random", "none", "m_random", True),
    ("magnitude+FT", "finetune", "none", "m_finetune", True),
]


def crowded_rows():
    return [{"method": label, "procedure": proc, "penalty": pen, "name": name, "fine_tuned": ft, "sparsity": s,
             "acc_mean": 90.0 - 10 * k * s, "acc_std": 0.5, "seeds": 3}
            for k, (label, proc, pen, name, ft) in enumerate(SERIES) for s in LEVELS]


def test_accuracy_figure_is_readable():
    rows = crowded_rows()
    fig = accuracy_figure(rows, columns(rows), "crowded", "mean ± std over 3 seeds")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    top = ax.child_axes[0]  # the secondary (sparsity) axis on top
    gap = TICK_GAP_PT * fig.dpi / 72
    for axis in (ax.xaxis, top.xaxis):
        shown = sorted((t.get_window_extent(renderer) for t in axis.get_ticklabels() if t.get_text()), key=lambda e: e.x0)
        assert len(shown) >= 4  # thinned, not emptied
        for left, right in zip(shown, shown[1:]):
            assert right.x0 - left.x1 >= gap - 1  # no two labels closer than the gap (1 px of layout slack)
    # All tick marks stay, one per level, even where a label was dropped.
    assert len(ax.get_xticks()) == len(LEVELS)
    assert sum(not t.get_text() for t in top.xaxis.get_ticklabels()) >= 1  # the crowded end was thinned
    # The legend is outside the axes (below them) and lists every series.
    legend = fig.legends[0]
    assert legend.get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y0
    assert len(legend.get_texts()) == len(SERIES)
    # Every series has its own colour + marker; fine-tuned series are dashed.
    lines = {c.get_label(): c.lines[0] for c in ax.containers}
    looks = {(line.get_color(), line.get_marker()) for line in lines.values()}
    assert len(lines) == len(looks) == len(SERIES)
    dashed = {label for label, line in lines.items() if line.get_linestyle() == "--"}
    assert dashed == {"GMP", "IMP", "SNIP", "random", "magnitude+FT"}
