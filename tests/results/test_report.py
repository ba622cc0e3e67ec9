"""Reports from hand-written run directories: exact means and stds, CSV, markdown, plots."""

import csv
import json
import statistics

import pytest
import torch

from sparsehalo import checkpoint
from sparsehalo.errors import SparsehaloError
from sparsehalo.report import (
    aggregate,
    find_runs,
    load_summaries,
    make_report,
    plot_scales,
    write_report,
)

PNG = b"\x89PNG\r\n\x1a\n"
DENOM = "266,200 prunable weights (Linear weights, biases excluded)"
# method -> seed -> (accuracy at 90%, accuracy at 98.5%)
ACCS = {
    "HALO": {0: (98.10, 97.20), 1: (98.25, 97.05), 2: (98.31, 97.41)},
    "IMP": {0: (98.00, 96.50), 1: (97.80, 96.90), 2: (97.95, 96.61)},
}


def point(sparsity, acc, fine_tuned=False):
    return {
        "sparsity_requested": sparsity, "sparsity_measured": sparsity, "fine_tuned": fine_tuned,
        "test_accuracy": acc, "val_accuracy": None, "params_total": 266610, "params_nonzero": 27030,
        "prunable_total": 266200, "prunable_nonzero": 26620, "denominator": DENOM,
        "flops_dense": 266200, "flops_nonzero": 26620, "compression": 9.86, "speedup": 10.0,
    }


def write_run(root, label, seed, accs, epochs=30, **extra):
    name = f"mnist_lenet300_{label.lower()}"
    d = root / name / f"seed{seed}"
    d.mkdir(parents=True)
    summary = {
        "name": name, "label": label, "method": "oneshot" if label == "HALO" else "imp",
        "penalty": "halo" if label == "HALO" else "none", "dataset": "mnist", "model": "lenet300",
        "seed": seed, "epochs": epochs, "run_dir": "/somewhere/else", "unknown_extra": [1, 2],
        "points": [point(0.9, accs[0], label == "IMP"), point(0.985, accs[1], label == "IMP")],
        **extra,
    }
    (d / "summary.json").write_text(json.dumps(summary))
    return d


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for label, seeds in ACCS.items():
        for seed, accs in seeds.items():
            write_run(root, label, seed, accs)
    return root


def test_find_runs_recursive_sorted_and_deduplicated(runs, tmp_path):
    found = find_runs([runs, runs / "mnist_lenet300_halo", runs / "mnist_lenet300_imp" / "seed1" / "summary.json"])
    assert len(found) == 6
    assert found == sorted(found)
    assert found[0] == (runs / "mnist_lenet300_halo" / "seed0").resolve()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SparsehaloError, match="no finished runs"):
        find_runs([tmp_path / "empty"])
    with pytest.raises(SparsehaloError, match="no such"):
        find_runs([tmp_path / "missing"])


def test_load_summaries_names_a_bad_file(runs):
    bad = runs / "mnist_lenet300_imp" / "seed2" / "summary.json"
    bad.write_text("{not json")
    with pytest.raises(SparsehaloError, match="seed2.summary\\.json"):
        load_summaries(find_runs([runs]))
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(SparsehaloError, match="points"):
        load_summaries(find_runs([runs]))


def test_aggregate_matches_hand_computation(runs):
    summaries = load_summaries(find_runs([runs]))
    assert summaries[0]["run_dir"].endswith("seed0")  # the real location, not the stored one
    rows = aggregate(summaries)
    assert [(r["method"], r["sparsity"]) for r in rows] == [
        ("HALO", 0.9), ("HALO", 0.985), ("IMP", 0.9), ("IMP", 0.985)
    ]
    for r in rows:
        level = 0 if r["sparsity"] == 0.9 else 1
        accs = [ACCS[r["method"]][s][level] for s in (0, 1, 2)]
        assert r["acc_mean"] == statistics.mean(accs)
        assert r["acc_std"] == statistics.stdev(accs)
        assert (r["acc_min"], r["acc_max"]) == (min(accs), max(accs))
        assert (r["seeds"], r["seed_list"], r["epochs"]) == (3, [0, 1, 2], 30)
        assert r["denominator"] == DENOM
        assert r["fine_tuned"] is (r["method"] == "IMP")
        assert r["sparsity_measured_mean"] == pytest.approx(r["sparsity"])
        assert (r["flops_nonzero_mean"], r["compression_mean"]) == (26620, 9.86)
        assert r["dataset"] == "mnist" and r["model"] == "lenet300"


def test_single_seed_has_zero_std(tmp_path):
    write_run(tmp_path, "HALO", 0, (98.0, 97.0))
    rows = aggregate(load_summaries(find_runs([tmp_path])))
    assert [(r["seeds"], r["acc_mean"], r["acc_std"]) for r in rows] == [(1, 98.0, 0.0), (1, 97.0, 0.0)]


def test_epochs_disagreement_and_repeated_seed_error(tmp_path):
    write_run(tmp_path / "a", "HALO", 0, (98.0, 97.0), epochs=30)
    write_run(tmp_path / "a", "HALO", 1, (98.0, 97.0), epochs=40)
    with pytest.raises(SparsehaloError, match="disagree on epochs"):
        aggregate(load_summaries(find_runs([tmp_path / "a"])))
    write_run(tmp_path / "b", "HALO", 0, (98.0, 97.0))
    write_run(tmp_path / "b" / "copy", "HALO", 0, (98.0, 97.0))
    with pytest.raises(SparsehaloError, match="repeat seed 0"):
        aggregate(load_summaries(find_runs([tmp_path / "b"])))


def test_write_report_files(runs, tmp_path):
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

    md = (out / "report.md").read_text()
    assert md.startswith("# LeNet-300-100")
    assert "mean ± std over 3 seeds" in md
    assert "| sparsity | HALO | IMP |" in md
    halo = [ACCS["HALO"][s][1] for s in (0, 1, 2)]
    cell = f"{statistics.mean(halo):.2f} ± {statistics.stdev(halo):.2f}"
    assert f"| 98.5% | {cell} |" in md
    assert f"Sparsity = exact zeros / {DENOM}." in md
    assert "all methods: 30 epochs in total, fine-tuning and IMP rounds included" in md
    assert "Fine-tuned after pruning: IMP" in md
    assert "(n=" not in md
    assert "![test accuracy against sparsity, mnist / lenet300](accuracy_mnist_lenet300.png)" in md
    assert (out / "accuracy_mnist_lenet300.png").read_bytes().startswith(PNG)


def test_report_states_unequal_seeds_and_epochs(tmp_path):
    write_run(tmp_path, "HALO", 0, (98.0, 97.0))
    write_run(tmp_path, "HALO", 1, (98.2, 97.4))
    write_run(tmp_path, "IMP", 0, (97.0, 96.0), epochs=60)
    write_report(load_summaries(find_runs([tmp_path])), tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| 90% | 98.10 ± 0.14 (n=2) | 97.00 (n=1) |" in md
    assert "HALO: 30; IMP: 60" in md
    assert "all methods" not in md


def test_unpruned_level_and_missing_cells(tmp_path):
    d = write_run(tmp_path, "HALO", 0, (98.0, 97.0))
    s = json.loads((d / "summary.json").read_text())
    s["points"].insert(0, point(0.0, 98.4))
    s["points"].append({"sparsity_requested": 0.99, "test_accuracy": None})  # skipped, not a crash
    del s["label"]
    (d / "summary.json").write_text(json.dumps(s))
    write_run(tmp_path, "IMP", 0, (97.0, 96.0))
    write_report(load_summaries(find_runs([tmp_path])), tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| 0% (unpruned) | — | 98.40 |" in md
    assert "| sparsity | IMP | mnist_lenet300_halo |" in md  # no label: the name stands in
    assert "one seed per cell" in md


def halo_run(tmp_path, n=30, psi=None):
    run = tmp_path / "halo_run"
    g = torch.Generator().manual_seed(0)
    w = torch.randn(n, 5, generator=g) * 0.1
    w[0, :3] = 0  # exact zeros stay off the log axes
    lam = (2e-3 * w.abs() / 1e-3).pow(1 / 3) + 1e-3
    checkpoint.save(run / "checkpoint.pt", {
        "model": {"fc.weight": w, "fc.bias": torch.zeros(n)},
        "penalty": {"scales.fc__weight": lam},
        "config": "{}",
        "epoch": 1,
    })
    checkpoint.write_json(run / "config.json", {"name": "tiny", "penalty": {"name": "halo", "xi": 1e-3, "psi": psi}})
    return run


def test_plot_scales_writes_png(tmp_path):
    run = halo_run(tmp_path)
    out = plot_scales(run, tmp_path / "plots" / "scales.png")
    assert out == tmp_path / "plots" / "scales.png"
    assert out.read_bytes().startswith(PNG)
    big = halo_run(tmp_path / "big", n=5000)  # 25,000 entries: subsampled
    assert plot_scales(big, tmp_path / "big.png").read_bytes().startswith(PNG)


def test_plot_scales_refuses_runs_without_scales(tmp_path):
    run = tmp_path / "plain"
    checkpoint.save(run / "checkpoint.pt", {"model": {"fc.weight": torch.ones(2, 2)}, "penalty": {}, "config": "{}", "epoch": 1})
    with pytest.raises(SparsehaloError, match="no per-weight scales"):
        plot_scales(run, tmp_path / "x.png")
    with pytest.raises(SparsehaloError, match="not found"):
        plot_scales(tmp_path / "nothing", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_make_report_links_scales(tmp_path):
    run = halo_run(tmp_path)
    s = {"name": "tiny", "label": "HALO", "penalty": "halo", "dataset": "synthetic", "model": "mlp", "seed": 0,
         "epochs": 2, "points": [point(0.5, 80.0)]}
    (run / "summary.json").write_text(json.dumps(s))
    written = make_report([tmp_path], tmp_path / "out")
    assert set(written) == {"summary.csv", "report.md", "accuracy_synthetic_mlp.png", "scales_tiny.png"}
    assert "(scales_tiny.png)" in (tmp_path / "out" / "report.md").read_text()
