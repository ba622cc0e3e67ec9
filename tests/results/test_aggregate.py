"""Means and sample standard deviations over seeds, checked against hand computation."""

import statistics

import pytest

from sparsehalo.errors import SparsehaloError
from sparsehalo.results import aggregate, find_runs, load_summaries, mean_std, status


def test_aggregate_matches_hand_computation(runs, fake):
    ACCS, DENOM = fake.ACCS, fake.DENOM
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


def test_single_seed_has_zero_std(tmp_path, fake):
    fake.write_run(tmp_path, "HALO", 0, (98.0, 97.0))
    rows = aggregate(load_summaries(find_runs([tmp_path])))
    assert [(r["seeds"], r["acc_mean"], r["acc_std"]) for r in rows] == [(1, 98.0, 0.0), (1, 97.0, 0.0)]


def test_epochs_disagreement_and_repeated_seed_error(tmp_path, fake):
    fake.write_run(tmp_path / "a", "HALO", 0, (98.0, 97.0), epochs=30)
    fake.write_run(tmp_path / "a", "HALO", 1, (98.0, 97.0), epochs=40)
    with pytest.raises(SparsehaloError, match="disagree on epochs"):
        aggregate(load_summaries(find_runs([tmp_path / "a"])))
    fake.write_run(tmp_path / "b", "HALO", 0, (98.0, 97.0))
    fake.write_run(tmp_path / "b" / "copy", "HALO", 0, (98.0, 97.0))
    with pytest.raises(SparsehaloError, match="repeat seed 0"):
        aggregate(load_summaries(find_runs([tmp_path / "b"])))


def test_mean_std_and_status():
    assert mean_std([97.0]) == (97.0, 0.0)
    assert mean_std([1.0, 2.0, 4.0]) == (statistics.mean([1.0, 2.0, 4.0]), statistics.stdev([1.0, 2.0, 4.0]))
    with pytest.raises(ValueError):
        mean_std([])
    assert status(98.0, [98.5, 97.6], seeds=3) == "pending"  # a seed is missing
    assert status(98.0, [98.5, 97.6, 97.9], seeds=3) == "met"  # mean 98.0 exactly reaches the target
    assert status(98.0, [98.5, 97.6, 97.8], seeds=3) == "missed"
