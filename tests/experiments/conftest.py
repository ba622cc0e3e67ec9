"""Hand-written run directories and a toy campaign for the tests of sparsehalo.experiments (no training)."""

import contextlib
import json
import os
from types import SimpleNamespace

import pytest

from sparsehalo import paths
from sparsehalo.experiments import claim
from sparsehalo.experiments.campaign import Campaign

# Enough of a config for every run of the toy campaign (never trained).
BASE = """
name = "{name}"
[model]
name = "{model}"
[data]
name = "synthetic"
[penalty]
name = "{penalty}"
[train]
epochs = 3
[prune]
levels = [0.9, 0.95]
"""


def summary(vals, epochs=3, seed=0, name="run", tests=None):
    """A summary with one point per ``{sparsity: val_accuracy}`` (test accuracy from ``tests``, else 90)."""
    tests = tests or {}
    points = [{"sparsity_requested": s, "val_accuracy": v, "test_accuracy": tests.get(s, 90.0), "fine_tuned": False}
              for s, v in vals.items()]
    return {"name": name, "seed": seed, "epochs": epochs, "points": points}


def write_summary(run_dir, vals, **kw):
    """Mark ``run_dir`` finished with :func:`summary` (its ``run_dir`` key is set on reading)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    paths.summary(run_dir).write_text(json.dumps(summary(vals, **kw)))
    return run_dir


def toy_campaign(tmp_path, **changes):
    """Two models (lenet5 reuses lenet300's sweep), HALO swept over xi, dense, GMP at 90%, seeds 0 and 1."""
    configs = tmp_path / "configs"
    configs.mkdir(exist_ok=True)
    for model in ("lenet300", "lenet5"):
        for method, penalty in (("halo", "halo"), ("dense", "none"), ("gmp", "none")):
            text = BASE.format(name=f"t_{model}_{method}", model=model, penalty=penalty)
            if method == "gmp":
                text += '[method]\nname = "gmp"\n'
            (configs / f"t_{model}_{method}.toml").write_text(text)
    kw = {"name": "toy", "prefix": "t", "models": ["lenet300", "lenet5"], "oneshot": ["halo", "dense"],
          "fixed": ["gmp"], "fixed_levels": [0.9], "sweep_of": {"lenet300": "lenet300", "lenet5": "lenet300"},
          "grids": {"halo": {"penalty.xi": [1e-4, 2e-4]}}, "select_levels": ("0.9", "0.95"),
          "per_level": ("0.9", "0.95"), "seeds": (0, 1), "repro": ["lenet300"], "out": tmp_path / "out",
          "configs": configs, "settings": ("run.progress=false",)}
    return Campaign(**{**kw, **changes})


@contextlib.contextmanager
def other_worker(run_dir):
    """A forked worker that claims ``run_dir`` and holds it (alive) until the block ends; yields its pid."""
    (ready_r, ready_w), (hold_r, hold_w) = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(hold_w)
            os.write(ready_w, b"1" if claim(run_dir) else b"0")
            os.read(hold_r, 1)  # EOF once the parent closes hold_w
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"1", "the other worker could not claim the run"
        yield pid
    finally:
        os.close(hold_w)
        os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, hold_r):
            os.close(fd)


@pytest.fixture
def kit():
    """The builders above (conftest modules cannot be imported by name)."""
    return SimpleNamespace(summary=summary, write_summary=write_summary, toy_campaign=toy_campaign,
                           other_worker=other_worker)
