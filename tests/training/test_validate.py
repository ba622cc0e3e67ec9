"""Every setting checked before any data is read or anything is written (issue 13, part 2).

Each bad value goes through ``sparsehalo train`` in-process: exit 2, one line naming the setting, and
``--out`` left exactly as it was (no run directory, no ``config.json``).
"""

from __future__ import annotations

import math

import pytest
import torch

from sparsehalo import cli, config
from sparsehalo.config.checks import between, check_fields, items, run_name
from sparsehalo.errors import ConfigError
from sparsehalo.training.validate import resolve_device, validate
from support import ROOT

CONFIG = ROOT / "configs" / "mnist_lenet300_halo.toml"

# (override, a piece of the one-line message)
BAD = [
    ("train.epochs=0", "'train.epochs' must be in [1, 1e+06]"),
    ("train.epochs=-1", "'train.epochs' must be in [1, 1e+06]"),
    ("train.seed=-3", "'train.seed' must be in"),
    ("train.seed=99999999999999999999", "'train.seed'"),
    ('train.amp="fp8"', "'train.amp' must be one of none, bf16, fp16"),
    ("optim.lr=nan", "'optim.lr' must be a finite number"),
    ('run.loggers=["wandb"]', "unknown logger 'wandb'; known: csv, tensorboard"),
    ("run.log_every=0", "'run.log_every' must be in [1, 1e+09]"),
    ("run.keep_checkpoints=-1", "'run.keep_checkpoints' must be in [0, 10000]"),
    ('run.keep_checkpoints="all"', "'run.keep_checkpoints'"),
    ("optim.lr=-0.1", "'optim.lr' must be in (0, inf]"),
    ("optim.lr=0", "'optim.lr' must be in (0, inf]"),
    ("optim.momentum=-0.5", "'optim.momentum' must be in [0, 1)"),
    ("optim.momentum=1.0", "'optim.momentum' must be in [0, 1)"),
    ("optim.weight_decay=inf", "'optim.weight_decay' must be a finite number"),
    ("optim.weight_decay=-1e-4", "'optim.weight_decay' must be in [0, inf]"),
    ('optim.name="lion"', "unknown optimizer 'lion'"),
    ("prune.levels=[1.5]", "'prune.levels[0]' must be in [0, 1)"),
    ("prune.levels=[0.9, 1.0]", "'prune.levels[1]' must be in [0, 1)"),
    ("prune.levels=[-0.1]", "'prune.levels[0]' must be in [0, 1)"),
    (f"prune.levels={[0.5] * 101}", "'prune.levels' holds 101 entries; at most 100"),
    ('prune.scope="diagonal"', "unknown pruning scope 'diagonal'"),
    ("prune.eps=nan", "'prune.eps' must be a finite number"),
    ("penalty.psi=nan", "'penalty.settings.psi' must be a finite number"),
    ("penalty.eps=nan", "'penalty.settings.eps' must be a finite number"),
    ("penalty.psi=-1.0", "psi and eps must be >= 0"),
    ("penalty.target_sparsity=1.2", "target_sparsity must be in (0, 1)"),
    ("penalty.scale_lr=-1.0", "'penalty.scale_lr' must be in (0, inf]"),
    ("penalty.scale_momentum=2.0", "'penalty.scale_momentum' must be in [0, 1)"),
    ('penalty.name="l7"', "unknown penalty 'l7'"),
    ("data.batch_size=0", "'data.batch_size' must be in [1, 1e+07]"),
    ("data.eval_batch_size=-5", "'data.eval_batch_size' must be in [1, 1e+07]"),
    ("data.val_size=-1", "'data.val_size' must be in [0, 1e+09]"),
    ('data.in_memory="maybe"', "'data.in_memory' must be one of auto, yes, no"),
    ('data.name="imagenet22k"', "unknown dataset 'imagenet22k'"),
    ("data.augment=true", "dataset 'mnist' has no standard augmentation"),
    ('data.kwargs={root="x"}', "data.kwargs applies to a user's dataset factory"),
    ("model.kwargs={hidden=[-300, 100]}", "model 'lenet300' with model.kwargs"),
    ("model.kwargs={depth=3}", "model 'lenet300'"),
    ('model.name="resnet"', None),  # placeholder replaced below (depth must be 6n+2)
    ('method.name="magic"', "unknown method 'magic'"),
    ("method.sparsity=1.0", "'method.sparsity' must be in [0, 1)"),
    ('schedule.name="sawtooth"', "unknown schedule 'sawtooth'"),
    ("schedule.gamma=0", "'schedule.gamma' must be in (0, inf]"),
    ('schedule.unit="hour"', "'schedule.unit' must be one of epoch, step"),
    ("schedule.milestones=[nan]", "'schedule.milestones[0]' must be a finite number"),
    ("run.threads=-2", "'run.threads' must be in [0, 4096]"),
    ("run.eval_pruned_every=-1", "'run.eval_pruned_every' must be in [0, inf]"),
    ('run.device="mps"', "device 'mps' asked for, but it is not available here"),
    ('run.device="tpu9"', "unknown device 'tpu9'"),
    ('name="../elsewhere"', "'name' must be 1-200 letters"),
    ('name="/tmp/abs"', "'name' must be 1-200 letters"),
    ('name=".hidden"', "'name' must be 1-200 letters"),
    ('name=""', "'name' must be 1-200 letters"),
]
BAD[BAD.index(('model.name="resnet"', None))] = ("model.kwargs={depth=21}", "model 'lenet300'")


def _train(tmp_path, capsys, override: str) -> tuple[int, list[str]]:
    code = cli.main(["train", str(CONFIG), "--out", str(tmp_path / "out"), "--set", override, "--set", "run.progress=false"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


def test_the_table_covers_at_least_40_distinct_bad_inputs():
    assert len({o for o, _ in BAD}) == len(BAD) >= 40


@pytest.mark.parametrize(("override", "message"), BAD, ids=[o[:40] for o, _ in BAD])
def test_bad_setting_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, override, message):
    if override == 'run.device="mps"' and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("a user's file")
    code, err = _train(tmp_path, capsys, override)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("sparsehalo: error: "), err
    assert message in err[0], err[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]  # nothing written


def test_a_good_config_passes_and_validation_reads_no_data(monkeypatch):
    import sparsehalo.data.registry as registry

    def no_data(*a, **k):
        raise AssertionError("validate read data")

    monkeypatch.setattr(registry, "load_dataset", no_data)
    validate(config.load(CONFIG, ["penalty.target_sparsity=0.99"]))  # target mode without total_steps too


def test_checks_by_hand():
    between(0, 1, hi_open=True)(0.0, "k")
    with pytest.raises(ConfigError, match=r"'k' must be in \[0, 1\), got 1"):
        between(0, 1, hi_open=True)(1, "k")
    with pytest.raises(ConfigError, match=r"'k' must be in \(0, inf\], got 0"):
        between(0, None, lo_open=True)(0, "k")
    with pytest.raises(ConfigError, match="finite"):
        between()(math.inf, "k")
    between(0, 1)(None, "k")  # unset optional settings pass
    with pytest.raises(ConfigError, match=r"'k\[1\]' must be in"):
        items(between(0, 1))([0.5, 2.0], "k")
    for ok in ("a", "mnist_lenet300_halo", "x.y-z", "A1"):
        run_name(ok, "name")
    for bad in ("..", "a/b", "a\\b", "-x", ".x", "a" * 201, "a b"):
        with pytest.raises(ConfigError):
            run_name(bad, "name")


def test_a_config_built_in_python_is_checked_too():
    cfg = config.load(CONFIG)
    cfg.train.epochs = 0
    with pytest.raises(ConfigError, match="train.epochs"):
        check_fields(cfg)
    with pytest.raises(ConfigError, match="train.epochs"):
        validate(cfg)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(ConfigError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
