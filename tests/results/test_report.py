"""Reports from hand-written run directories: CSV, markdown, figures, links to scale plots."""

import csv
import json
import statistics

import pytest

from sparsehalo.results import cell, find_runs, load_summaries, make_report, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def test_write_report_files(runs, tmp_path, fake):
    ACCS, DENOM = fake.ACCS, fake.DENOM
    out = tmp_path / "report"
    written = write_report(load_summaries(find_runs([runs])), out, title="LeNet-300-100")
    assert set(written) == {"summary.csv", "report.md", "accuracy_mnist_lenet300.png"}
    assert all(p.parent == out for p in written.values())

    with open(out / "summary.csv", newline="") as f:
        table = list(csv.reader(f))
    assert table[0][:7] == ["model", "method", "sparsity", "seeds", "acc_mean", "acc_std", "epochs"]
    assert table[0][7:14] == ["dataset", "name", "sparsity_measured", "fine_tuned", "compression", "speedup", "denominator"]
    first = dict(zip(table[0], table[1]))
    accs = [ACCS["HALO"][s][0] for s in (0, 1, 2)]
    assert (first["model"], first["method"], first["sparsity"], first["seeds"], first["epochs"]) == (
        "lenet300", "HALO", "0.9", "3", "30")
    assert float(first["acc_mean"]) == statistics.mean(accs)
    assert float(first["acc_std"]) == statistics.stdev(accs)
    assert first["denominator"] == DENOM
    assert len(table) == 5
    assert b"\r" not in (out / "summary.csv").read_bytes()

    md = (out / "report.md").read_text()
    assert md.startswith("# LeNet-300-100")
    assert "mean ± std over 3 seeds" in md
    assert "| sparsity | HALO | IMP |" in md
    halo = [ACCS["HALO"][s][1] for s in (0, 1, 2)]
    cell_text = f"{statistics.mean(halo):.2f} ± {statistics.stdev(halo):.2f}"
    assert f"| 98.5% | {cell_text} |" in md
    assert cell_text == cell(statistics.mean(halo), statistics.stdev(halo), 3)  # the one cell format
    assert f"Sparsity = exact zeros / {DENOM}." in md
    assert "all methods: 30 epochs in total, fine-tuning and IMP rounds included" in md
    assert "Fine-tuned after pruning: IMP" in md
    assert "(n=" not in md
    assert "![test accuracy against sparsity, mnist / lenet300](accuracy_mnist_lenet300.png)" in md
    assert (out / "accuracy_mnist_lenet300.png").read_bytes().startswith(PNG)


def test_report_states_unequal_seeds_and_epochs(tmp_path, fake):
    fake.write_run(tmp_path, "HALO", 0, (98.0, 97.0))
    fake.write_run(tmp_path, "HALO", 1, (98.2, 97.4))
    fake.write_run(tmp_path, "IMP", 0, (97.0, 96.0), epochs=60)
    write_report(load_summaries(find_runs([tmp_path])), tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| 90% | 98.10 ± 0.14 (n=2) | 97.00 (n=1) |" in md
    assert "HALO: 30; IMP: 60" in md
    assert "all methods" not in md


def test_unpruned_level_and_missing_cells(tmp_path, fake):
    d = fake.write_run(tmp_path, "HALO", 0, (98.0, 97.0))
    s = json.loads((d / "summary.json").read_text())
    s["points"].insert(0, fake.point(0.0, 98.4))
    s["points"].append({"sparsity_requested": 0.99, "test_accuracy": None})  # skipped, not a crash
    del s["label"]
    (d / "summary.json").write_text(json.dumps(s))
    fake.write_run(tmp_path, "IMP", 0, (97.0, 96.0))
    write_report(load_summaries(find_runs([tmp_path])), tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| 0% (unpruned) | — | 98.40 |" in md
    assert "| sparsity | IMP | mnist_lenet300_halo |" in md  # no label: the name stands in
    assert "one seed per cell" in md


def _tiny_summary(run, fake):
    s = {"name": "tiny", "label": "HALO", "penalty": "halo", "dataset": "synthetic", "model": "mlp", "seed": 0,
         "epochs": 2, "points": [fake.point(0.5, 80.0)]}
    (run / "summary.json").write_text(json.dumps(s))


def test_make_report_links_scales(tmp_path, fake):
    run = fake.halo_run(tmp_path)
    _tiny_summary(run, fake)
    written = make_report([tmp_path], tmp_path / "out")
    assert set(written) == {"summary.csv", "report.md", "accuracy_synthetic_mlp.png", "scales_tiny.png"}
    assert "(scales_tiny.png)" in (tmp_path / "out" / "report.md").read_text()


def test_make_report_keeps_a_drawn_scales_figure_when_the_checkpoint_is_gone(tmp_path, fake):
    # Checkpoints are not committed: a report regenerated from summaries alone keeps the figure drawn earlier.
    run = fake.halo_run(tmp_path / "runs")
    _tiny_summary(run, fake)
    out = tmp_path / "out"
    make_report([tmp_path / "runs"], out)
    drawn = (out / "scales_tiny.png").read_bytes()
    (run / "checkpoint.pt").unlink()
    with pytest.warns(UserWarning, match="kept as it was"):
        written = make_report([tmp_path / "runs"], out)
    assert "scales_tiny.png" not in written  # not rewritten...
    assert (out / "scales_tiny.png").read_bytes() == drawn
    assert "(scales_tiny.png)" in (out / "report.md").read_text()  # ...but still linked
    (out / "scales_tiny.png").unlink()
    with pytest.warns(UserWarning, match="no scales plot"):
        make_report([tmp_path / "runs"], out)
    assert "scales_tiny" not in (out / "report.md").read_text()
