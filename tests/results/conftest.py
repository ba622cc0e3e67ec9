"""Hand-written run directories for the tests of sparsehalo.results (exact values, no training)."""

import json
from types import SimpleNamespace

import pytest
import torch

from sparsehalo import io

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


def halo_run(tmp_path, n=30, psi=None):
    run = tmp_path / "halo_run"
    g = torch.Generator().manual_seed(0)
    w = torch.randn(n, 5, generator=g) * 0.1
    w[0, :3] = 0  # exact zeros stay off the log axes
    lam = (2e-3 * w.abs() / 1e-3).pow(1 / 3) + 1e-3
    io.save_torch(run / "checkpoint.pt", {
        "model": {"fc.weight": w, "fc.bias": torch.zeros(n)},
        "penalty": {"scales.fc__weight": lam},
        "config": "{}",
        "epoch": 1,
    })
    io.write_json(run / "config.json", {"name": "tiny", "penalty": {"name": "halo", "xi": 1e-3, "psi": psi}})
    return run


@pytest.fixture
def fake():
    """The builders above, for tests in this folder (conftest modules cannot be imported by name)."""
    return SimpleNamespace(ACCS=ACCS, DENOM=DENOM, point=point, write_run=write_run, halo_run=halo_run)


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for label, seeds in ACCS.items():
        for seed, accs in seeds.items():
            write_run(root, label, seed, accs)
    return root
