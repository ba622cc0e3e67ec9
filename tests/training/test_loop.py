"""The training loop: run directory contents, resume, seeds, schedules, divergence, mixed precision."""

import csv
import json
import math

import pytest
import torch

from sparsehalo import config as config_mod
from sparsehalo import schedules, training
from sparsehalo.io import load_torch, write_json
from sparsehalo.progress import Progress
from sparsehalo.training import checkpointing, loop, summary as summary_mod
from sparsehalo.config import ScheduleConfig
from sparsehalo.errors import CheckpointError, ConfigError, DivergenceError


def make(settings, *extra):
    return config_mod.load(None, [*settings, *extra])


def test_train_writes_run_directory(tmp_path, tiny_settings):
    cfg = make(tiny_settings)
    run = cfg.run_dir(tmp_path)
    summary = training.train(cfg, run, echo=lambda s: None)
    for name in ("config.json", "metrics.csv", "checkpoint.pt", "summary.json"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for col in ("train_loss", "test_acc", "penalty", "scale_min", "scale_max", "natural_sparsity", "test_acc_pruned_0.9"):
        assert col in rows[0], col
    assert summary["test_accuracy"] == pytest.approx(float(rows[-1]["test_acc"]), abs=1e-4)
    assert summary["sparsity"]["total"] == 266200
    assert set(summary["pruned_test_accuracy"]) == {"0.5", "0.9"}
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 2
    ckpt = load_torch(run / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and "penalty" in ckpt and "scales.fc1__weight" in ckpt["penalty"]


def test_finished_run_is_skipped(tmp_path, tiny_settings):
    cfg = make(tiny_settings, "train.epochs=1")
    run = cfg.run_dir(tmp_path)
    training.train(cfg, run, echo=lambda s: None)
    stamp = (run / "checkpoint.pt").stat().st_mtime_ns
    said = []
    training.train(cfg, run, echo=said.append)
    assert (run / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert any("already finished" in s for s in said)


def test_other_config_in_same_directory_is_refused(tmp_path, tiny_settings):
    run = tmp_path / "run"
    training.train(make(tiny_settings, "train.epochs=1"), run, echo=lambda s: None)
    with pytest.raises(ConfigError, match="different config"):
        training.train(make(tiny_settings, "train.epochs=1", "train.seed=5"), run, echo=lambda s: None)


def test_resume_is_bit_identical(tmp_path, tiny_settings):
    """Stop after epoch 1 (as a kill would), resume, and match an uninterrupted run exactly."""
    cfg3 = make(tiny_settings, "train.epochs=3", 'optim.weight_decay=1e-4')
    full = training.train(cfg3, tmp_path / "full", echo=lambda s: None)
    part = tmp_path / "part"
    exp = training.build(cfg3)
    stats = loop.train_epoch(exp, 0, Progress(1, enabled=False))
    row = summary_mod.epoch_row(exp, 0, stats, final=False)
    part.mkdir()
    write_json(part / "config.json", cfg3.to_dict())
    checkpointing.save(exp, part / "checkpoint.pt", 1, [row])
    said = []
    resumed = training.train(cfg3, part, echo=said.append)
    assert any("resuming" in s for s in said)
    a = load_torch(tmp_path / "full" / "checkpoint.pt")
    b = load_torch(part / "checkpoint.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["penalty"]:
        assert torch.equal(a["penalty"][k], b["penalty"][k]), k
    assert resumed["test_accuracy"] == full["test_accuracy"]


def test_seed_changes_result_and_same_seed_repeats(tmp_path, tiny_settings):
    a = training.train(make(tiny_settings, "train.epochs=1"), tmp_path / "a", echo=lambda s: None)
    b = training.train(make(tiny_settings, "train.epochs=1"), tmp_path / "b", echo=lambda s: None)
    c = training.train(make(tiny_settings, "train.epochs=1", "train.seed=1"), tmp_path / "c", echo=lambda s: None)
    ma = load_torch(tmp_path / "a" / "checkpoint.pt")["model"]["fc1.weight"]
    mb = load_torch(tmp_path / "b" / "checkpoint.pt")["model"]["fc1.weight"]
    mc = load_torch(tmp_path / "c" / "checkpoint.pt")["model"]["fc1.weight"]
    assert torch.equal(ma, mb) and not torch.equal(ma, mc)
    assert a["final"]["train_loss"] == b["final"]["train_loss"] != c["final"]["train_loss"]


@pytest.mark.parametrize(
    "sched,expected",
    [
        (ScheduleConfig(name="cosine"), lambda t, T: 0.5 * (1 + math.cos(math.pi * t / T))),
        (ScheduleConfig(name="multistep", milestones=[3, 7], unit="step", gamma=0.5), lambda t, T: 0.5 ** ((t >= 3) + (t >= 7))),
        (ScheduleConfig(name="step", step_size=4, unit="step", gamma=0.1), lambda t, T: 0.1 ** (t // 4)),
        (ScheduleConfig(name="constant"), lambda t, T: 1.0),
    ],
)
def test_schedule_factors(sched, expected):
    f = schedules.factor_fn(sched, total_steps=10, steps_per_epoch=5)
    for t in range(11):
        assert f(t) == pytest.approx(expected(t, 10), abs=1e-12)


def test_schedule_applied_once_per_step_to_every_group(tmp_path, tiny_settings):
    # 512 training examples / batch 64 = 8 steps per epoch; milestones at epoch 1 and step 12.
    cfg = make(
        tiny_settings,
        "train.epochs=2",
        'schedule.name="multistep"',
        "schedule.milestones=[1, 1.5]",
        "schedule.gamma=0.5",
        "optim.lr=0.2",
        "penalty.scale_lr=0.02",
    )
    training.train(cfg, tmp_path / "r", echo=lambda s: None)
    groups = load_torch(tmp_path / "r" / "checkpoint.pt")["optimizer"]["param_groups"]
    assert [g["name"] for g in groups] == ["model", "penalty:halo"]
    # after 16 steps both milestones (8 and 12) passed exactly once: lr = initial * 0.25
    assert groups[0]["lr"] == pytest.approx(0.2 * 0.25, rel=1e-12)
    assert groups[1]["lr"] == pytest.approx(0.02 * 0.25, rel=1e-12)
    assert groups[1]["weight_decay"] == 0.0
    rows = list(csv.DictReader((tmp_path / "r" / "metrics.csv").open()))
    assert float(rows[0]["lr"]) == pytest.approx(0.2 * 0.5)  # after step 8: first milestone only


def test_divergence_is_reported_and_keeps_last_checkpoint(tmp_path, tiny_settings):
    cfg = make(tiny_settings, "train.epochs=1")
    run = cfg.run_dir(tmp_path)
    training.train(cfg, run, echo=lambda s: None)
    (run / "summary.json").unlink()
    before = (run / "checkpoint.pt").read_bytes()
    bad = make(tiny_settings, "train.epochs=3", "optim.lr=1e30")
    with pytest.raises(DivergenceError, match="non-finite loss"):
        training.train(bad, tmp_path / "bad", echo=lambda s: None)
    assert not (tmp_path / "bad" / "checkpoint.pt").exists()
    assert (run / "checkpoint.pt").read_bytes() == before


def test_penalty_option_the_class_does_not_take(tmp_path, tiny_settings):
    with pytest.raises(ConfigError, match="psi"):
        training.build(make(tiny_settings, 'penalty.name="l1"', "penalty.psi=0.1"))


def test_corrupt_checkpoint_is_one_clear_error(tmp_path):
    p = tmp_path / "checkpoint.pt"
    p.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_torch(p)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_and_differs_from_fp32(tmp_path, tiny_settings, amp):
    base = training.train(make(tiny_settings, "train.epochs=1"), tmp_path / "fp32", echo=lambda s: None)
    s = training.train(make(tiny_settings, "train.epochs=1", f'train.amp="{amp}"', "run.channels_last=true"), tmp_path / amp, echo=lambda s: None)
    assert math.isfinite(s["final"]["train_loss"]) and s["test_accuracy"] > 50  # the synthetic task is easy
    assert s["final"]["train_loss"] != base["final"]["train_loss"]
    assert make(tiny_settings, f'train.amp="{amp}"').hash() != make(tiny_settings).hash()
    assert make(tiny_settings, "run.channels_last=true").hash() == make(tiny_settings).hash()
    if amp == "fp16":
        assert load_torch(tmp_path / amp / "checkpoint.pt")["scaler"]["scale"] > 0


def test_train_size_subset(tiny_settings):
    exp = training.build(make(tiny_settings, "data.train_size=100"))
    assert len(exp.data.train) == 100 and exp.steps_per_epoch == 2
    again = training.build(make(tiny_settings, "data.train_size=100"))
    assert torch.equal(exp.data.train.labels, again.data.train.labels)
    with pytest.raises(ConfigError, match="train_size"):
        training.build(make(tiny_settings, "data.train_size=100000"))
