"""The examples run as their docstrings say, on a small slice of MNIST (bundled) and of Fashion-MNIST (../shared)."""

import json
import re
import subprocess
import sys

import pytest

from support import ROOT, run_cli, shared_path


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_own_transformer_example_penalizes_every_matrix_and_prunes(dataset):
    extra = [] if dataset == "mnist" else ["--dataset", dataset, "--data-dir", str(shared_path("datasets", "fashion-mnist"))]
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "own_transformer.py"), "--epochs", "1", "--train-size", "1000", "--threads", "1",
         *extra], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # 2 encoder layers x (in_proj, out_proj, linear1, linear2) + input projection + head
    assert re.search(r"penalized: 10 tensors", done.stdout), done.stdout
    levels = re.findall(r"pruned to (\d+)% of ([\d,]+) prunable weights", done.stdout)
    assert levels and len({total for _, total in levels}) == 1


def test_train_your_own_example_from_its_directory(tmp_path):
    here = ROOT / "examples" / "train_your_own"
    done = run_cli("train", "rows.toml", "--set", "data.kwargs={train_size=1000}", "--set", "train.epochs=1",
                   "--set", "prune.levels=[0.5]", "--out", tmp_path, cwd=here)
    assert done.returncode == 0, done.stderr
    assert "penalty halo: penalized: 10 tensors" in done.stderr
    run_dir = tmp_path / done.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model"] == "rows:row_transformer" and summary["dataset"] == "rows:mnist_rows"
    assert [p["sparsity_requested"] for p in summary["points"]] == [0.0, 0.5]
    assert all(p["uncounted"] == [] for p in summary["points"])  # every weight's MACs understood
