"""Kill harness: SIGKILL ``sparsehalo train`` at many points, during every kind of write, then run it
again: the final weights are bit-identical to an uninterrupted run's, and no temp file or lock is left.

The points are the stages of :func:`sparsehalo.io.atomic_write_bytes` (``written``: the temp file is
on disk, not yet renamed; ``sidecar``: the sidecar lists the new and old hashes, the file is still
old; ``replaced``: the file is new, its sidecar still lists both) for each file a run writes, at
the first and a later epoch (``SPARSEHALO_TEST_KILL``).
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparsehalo import config as config_mod
from sparsehalo import locks, paths, training
from sparsehalo.io import KILL_ENV, load_torch

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "mnist_lenet300_halo.toml")
SETTINGS = ['data.name="synthetic"', "data.batch_size=64", "train.epochs=3", "penalty.xi=1e-3", "penalty.psi=1e-3",
            "prune.levels=[0.5]", "run.progress=false", 'run.device="cpu"', "run.threads=1", 'name="killed"']
#: (stage, file, n-th time): 15 points; checkpoint.pt, metrics.csv are written once per epoch
POINTS = [
    ("written", "config.json", 1), ("replaced", "config.json", 1),
    ("written", "checkpoint.pt", 1), ("sidecar", "checkpoint.pt", 1), ("replaced", "checkpoint.pt", 1),
    ("written", "checkpoint.pt", 2), ("sidecar", "checkpoint.pt", 2), ("replaced", "checkpoint.pt", 3),
    ("written", "checkpoint.pt.sha256", 2), ("replaced", "checkpoint.pt.sha256", 4),
    ("written", "metrics.csv", 1), ("replaced", "metrics.csv", 2),
    ("written", "summary.json", 1), ("sidecar", "summary.json", 1), ("replaced", "summary.json", 1),
]


def weights(run_dir):
    return load_torch(paths.checkpoint(run_dir))["model"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cfg = config_mod.load(CONFIG, SETTINGS)
    out = tmp_path_factory.mktemp("ref")
    training.train(cfg, cfg.run_dir(out), echo=lambda s: None)
    return cfg, weights(cfg.run_dir(out))


def test_kill_points_cover_every_kind_of_write():
    assert len(POINTS) >= 10
    assert {f for _, f, _ in POINTS} >= {"config.json", "checkpoint.pt", "checkpoint.pt.sha256", "metrics.csv", "summary.json"}
    assert {s for s, _, _ in POINTS} == {"written", "sidecar", "replaced"}


@pytest.mark.parametrize("stage, name, n", POINTS, ids=[f"{s}-{f}-{n}" for s, f, n in POINTS])
def test_sigkill_then_rerun_gives_bit_identical_weights(reference, tmp_path, stage, name, n):
    cfg, want = reference
    cmd = [sys.executable, "-m", "sparsehalo", "train", CONFIG, "--out", str(tmp_path), "--quiet",
           *sum((["--set", s] for s in SETTINGS), [])]
    env = {**os.environ, KILL_ENV: f"{stage}:{name}:{n}", "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-500:]  # it died at that point, not before or after
    run_dir = cfg.run_dir(tmp_path)
    assert not locks.is_held(run_dir)  # the dead process's lock went with it
    summary = training.train(cfg, run_dir, echo=lambda s: None)  # the next start resumes (or finishes the end hooks)
    got = weights(run_dir)
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert summary["epochs"] == 3 and paths.summary(run_dir).is_file()
    assert not list(run_dir.glob(".*.tmp")) and not paths.lock(run_dir).exists()
