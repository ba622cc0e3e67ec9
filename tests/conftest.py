import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# Two cores here: keep each test process to one thread so parallel work never oversubscribes.
torch.set_num_threads(1)
# The fused penalty kernels run eagerly in tests (same code, no compile time); test_fused.py
# switches compilation on where it checks the compiled path.
os.environ.setdefault("SPARSEHALO_COMPILE", "0")


@pytest.fixture
def tiny_settings():
    """Overrides for a fast training run on the synthetic dataset."""
    return [
        'data.name="synthetic"',
        "data.batch_size=64",
        "data.eval_batch_size=256",
        "train.epochs=2",
        'penalty.name="halo"',
        "penalty.xi=1e-3",
        "penalty.psi=1e-3",
        "prune.levels=[0.5, 0.9]",
        "run.progress=false",
        'run.device="cpu"',
    ]


def run_cli(*args, cwd=ROOT, env=None, timeout=300):
    """Run the installed console entry point in a subprocess."""
    import subprocess

    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "sparsehalo.cli", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
