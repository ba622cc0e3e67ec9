"""Finding run directories and reading their summaries."""

import json

import pytest

from sparsehalo.errors import SparsehaloError
from sparsehalo.results import accuracy_by_seed, find_runs, has_runs, load_summaries, summaries_named


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
    assert has_runs(runs) and not has_runs(tmp_path / "empty") and not has_runs(tmp_path / "missing")


def test_load_summaries_names_a_bad_file(runs):
    bad = runs / "mnist_lenet300_imp" / "seed2" / "summary.json"
    bad.write_text("{not json")
    with pytest.raises(SparsehaloError, match="seed2.summary\\.json"):
        load_summaries(find_runs([runs]))
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(SparsehaloError, match="points"):
        load_summaries(find_runs([runs]))


def test_summaries_named_and_accuracy_by_seed(tmp_path, fake):
    # Run directories named <name>-<hash>; a longer name sharing the prefix must not be picked up.
    for seed, acc in ((1, 97.0), (0, 96.0)):
        d = fake.write_run(tmp_path / "x", "HALO", seed, (98.0, acc))
        d.rename(tmp_path / f"mnist_lenet300_halo-{seed:012d}")
    other = fake.write_run(tmp_path / "y", "HALO", 5, (1.0, 1.0))
    s = json.loads((other / "summary.json").read_text())
    s["name"] = "mnist_lenet300_halo-long"
    (other / "summary.json").write_text(json.dumps(s))
    other.rename(tmp_path / "mnist_lenet300_halo-long-abc")
    found = summaries_named(tmp_path, "mnist_lenet300_halo")
    assert [s["seed"] for s in found] == [0, 1]  # sorted by directory
    assert found[0]["run_dir"].endswith("mnist_lenet300_halo-000000000000")
    assert accuracy_by_seed(tmp_path, "mnist_lenet300_halo", "0.985") == {0: 96.0, 1: 97.0}
    assert accuracy_by_seed(tmp_path, "mnist_lenet300_halo", "0.985", fine_tuned=True) == {}
    assert accuracy_by_seed(tmp_path, "mnist_lenet300_halo", "0.5") == {}
    assert summaries_named(tmp_path / "absent", "x") == []
