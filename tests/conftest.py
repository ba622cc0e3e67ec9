import os

import pytest
import torch


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
