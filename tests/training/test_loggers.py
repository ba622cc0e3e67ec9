"""The loggers: metrics.csv and TensorBoard (steps, epochs, histograms, resume)."""

import csv

import pytest
import torch

from sparsehalo import config as config_mod
from sparsehalo import paths
from sparsehalo.training import train
from sparsehalo.training.loggers import TensorBoardLogger

from support import ROOT, require_extra

event_accumulator = require_extra("tensorboard.backend.event_processing.event_accumulator", "tensorboard")

CONFIG = ROOT / "configs" / "mnist_lenet300_halo.toml"
SETTINGS = ['data.name="synthetic"', "data.batch_size=64", "train.epochs=2", "prune.levels=[0.5]",
            "run.progress=false", 'run.device="cpu"', 'run.loggers=["tensorboard"]', "run.log_every=3"]


def events(folder):
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def test_tensorboard_gets_steps_epochs_and_scale_histograms(tmp_path):
    cfg = config_mod.load(CONFIG, SETTINGS)
    run_dir = cfg.run_dir(tmp_path)
    train(cfg, run_dir, echo=lambda s: None)
    acc = events(paths.tensorboard(run_dir))
    rows = list(csv.DictReader(paths.metrics(run_dir).open()))
    steps_per_epoch = int(rows[0]["step"])
    logged = [e.step for e in acc.Scalars("step/loss")]
    assert logged == list(range(3, 2 * steps_per_epoch + 1, 3))  # every run.log_every optimizer steps
    assert {"step/loss", "step/penalty", "step/lr"} <= set(acc.Tags()["scalars"])
    for name in ("test_acc", "natural_sparsity", "penalty", "test_acc_pruned_0.5"):
        got = [(e.step, e.value) for e in acc.Scalars(f"epoch/{name}")]
        assert got == [(int(r["step"]), pytest.approx(float(r[name]), rel=1e-5)) for r in rows], name
    hist = acc.Tags()["histograms"]
    assert {"scales/scales.fc1__weight", "abs_weight/fc1.weight"} <= set(hist)
    last = acc.Histograms("scales/scales.fc1__weight")[-1]
    state = torch.load(paths.checkpoint(run_dir), weights_only=True)["penalty"]["scales.fc1__weight"]
    assert last.histogram_value.num == state.numel()
    assert last.histogram_value.max == pytest.approx(state.max().item(), rel=1e-6)


def test_a_resumed_writer_drops_what_the_cut_off_session_logged_after_the_checkpoint(tmp_path):
    first = TensorBoardLogger(tmp_path)
    for step in range(1, 11):
        first.log_step(step, {"loss": float(step)})
    first.close()
    again = TensorBoardLogger(tmp_path, resume_step=6)  # the checkpoint was at step 5
    for step in range(6, 11):
        again.log_step(step, {"loss": 100.0 + step})
    again.close()
    got = [(e.step, e.value) for e in events(paths.tensorboard(tmp_path)).Scalars("step/loss")]
    assert got == [(s, float(s)) for s in range(1, 6)] + [(s, 100.0 + s) for s in range(6, 11)]
