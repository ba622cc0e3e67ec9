"""Means and sample standard deviations over seeds, checked against hand computation."""

import json
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


def test_target_runs_of_one_name_are_seeds_of_their_own_method(tmp_path, fake):
    # One name trained at a fixed strength and in target mode at 0.9 and 0.985, all seed 0: the
    # target runs give only the point at their target, under "<name> (target)", and never clash.
    fake.write_run(tmp_path / "fixed", "HALO", 0, (98.0, 97.0))
    for where, accs, level in (("t90", (96.5, 11.0), 0.9), ("t985", (10.0, 95.25), 0.985)):
        d = fake.write_run(tmp_path / where, "HALO", 0, accs, target_sparsity=level)
        summary = json.loads((d / "summary.json").read_text())
        (d / "summary.json").write_text(json.dumps({**summary, "label": "HALO (target)"}))
    rows = aggregate(load_summaries(find_runs([tmp_path])))
    got = [(r["method"], r["name"], r["sparsity"], r["acc_mean"], r["seeds"]) for r in rows]
    assert got == [
        ("HALO", "mnist_lenet300_halo", 0.9, 98.0, 1), ("HALO", "mnist_lenet300_halo", 0.985, 97.0, 1),
        ("HALO (target)", "mnist_lenet300_halo (target)", 0.9, 96.5, 1),
        ("HALO (target)", "mnist_lenet300_halo (target)", 0.985, 95.25, 1),
    ]
    fake.write_run(tmp_path / "bad", "HALO", 1, (1.0, 1.0), target_sparsity=1.5)
    with pytest.raises(SparsehaloError, match="target_sparsity must be a number in"):
        aggregate(load_summaries(find_runs([tmp_path])))
