"""The engine on a user's own model, data and optimizer: import paths, the optimizer registry, export."""

import sys
import textwrap

import pytest
import torch

from sparsehalo import config as config_mod
from sparsehalo import training
from sparsehalo.errors import CheckpointError, ConfigError
from sparsehalo.export import export_run, load_sparse
from sparsehalo.io import load_torch
from sparsehalo.training import optimizers

from support import run_cli

SOURCE = textwrap.dedent("""
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    class Quadrants(Dataset):
        def __init__(self, n, seed):
            g = torch.Generator().manual_seed(seed)
            self.x = torch.randn(n, 6, generator=g)
            self.y = (self.x[:, 0] > 0).long() + 2 * (self.x[:, 1] > 0).long()
        def __len__(self):
            return len(self.x)
        def __getitem__(self, i):
            return self.x[i], int(self.y[i])

    def data(n_train=256):
        return {"train": Quadrants(n_train, 0), "test": Quadrants(128, 1)}

    class Net(nn.Module):
        def __init__(self, width, num_classes):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, num_classes))
        def forward(self, x):
            return self.body(x)

    def mlp(width=16, num_classes=10):
        return Net(width, num_classes)

    def fixed_width():
        return Net(8, 4)

    def not_a_model():
        return "a string"
""")

BASE = [
    'data.name="usermods:data"', 'model.name="usermods:mlp"', "data.batch_size=32", "data.eval_batch_size=64",
    "train.epochs=2", 'penalty.name="halo"', "penalty.xi=1e-3", "penalty.psi=1e-3", "prune.levels=[0.5, 0.9]",
    "run.progress=false", 'run.device="cpu"', "optim.lr=0.05",
]


@pytest.fixture
def usermods(tmp_path, monkeypatch):
    (tmp_path / "usermods.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("usermods", None)


def make(*extra):
    return config_mod.load(None, [*BASE, *extra])


def weights(run_dir):
    return load_torch(run_dir / "checkpoint.pt")["model"]


def test_train_a_user_model_on_user_data_stacked_and_streamed_alike(usermods):
    lines = []
    a = training.train(make(), usermods / "a", echo=lines.append)
    training.train(make('data.in_memory="no"'), usermods / "b", echo=lambda s: None)
    assert a["model"] == "usermods:mlp" and a["sparsity"]["total"] == 6 * 16 + 16 * 4
    ckpt = load_torch(usermods / "a" / "checkpoint.pt")
    assert ckpt["num_classes"] == 4 and ckpt["model"]["body.2.weight"].shape == (4, 16)  # from the labels
    wa, wb = weights(usermods / "a"), weights(usermods / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the same batches in the same order
    assert any(line == "penalty halo: penalized: 2 tensors, 160 entries; left out: 2 tensors, 20 entries" for line in lines)


def test_model_kwargs_and_a_factory_without_num_classes(usermods):
    s = training.train(make("model.kwargs={width=5}"), usermods / "w", echo=lambda s: None)
    assert s["sparsity"]["total"] == 6 * 5 + 5 * 4
    s = training.train(make('model.name="usermods:fixed_width"'), usermods / "f", echo=lambda s: None)
    assert s["sparsity"]["total"] == 6 * 8 + 8 * 4


@pytest.mark.parametrize("setting,message", [
    ('model.name="usermods:not_a_model"', "returned str, not a torch.nn.Module"),
    ('model.name="usermods:missing"', "has no attribute 'missing'"),
    ("model.kwargs={depth=2}", "unexpected keyword argument 'depth'"),
    ('optim.name="lion"', "unknown optimizer 'lion'; known: sgd, adam, adamw"),
])
def test_bad_user_settings_are_config_errors(usermods, setting, message):
    with pytest.raises(ConfigError, match=message):
        training.build(make(setting))


def test_export_of_a_user_model_loads_only_into_a_model_the_caller_built(usermods):
    run = usermods / "e"
    training.train(make(), run, echo=lambda s: None)
    report = export_run(run, "sparse")
    with pytest.raises(CheckpointError, match="never imported from a file; build the model yourself"):
        load_sparse(report["path"])
    model = load_sparse(report["path"], model=sys.modules["usermods"].mlp(num_classes=4))
    want = weights(run)
    assert all(torch.equal(model.state_dict()[k], want[k]) for k in want)


def test_cli_trains_a_user_model_from_the_current_directory(usermods):
    (usermods / "mine.toml").write_text("\n".join(BASE[:2]) + "\n")
    args = ["mine.toml", *(f"--set={s}" for s in BASE[2:]), "--set=train.epochs=1", f"--out={usermods / 'runs'}"]
    done = run_cli("train", *args, cwd=usermods)
    assert done.returncode == 0, done.stderr
    assert "penalty halo: penalized: 2 tensors, 160 entries" in done.stderr
    bad = run_cli("train", *args, '--set=model.name="usermods:nothing"', cwd=usermods)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "has no attribute 'nothing'" in bad.stderr


# -- optimizers ----------------------------------------------------------------------------------


def groups_of(*settings):
    state = training.build(config_mod.load(None, ['data.name="synthetic"', 'penalty.name="halo"', 'run.device="cpu"', *settings]))
    return state.optimizer


def test_sgd_is_the_default_and_is_not_hashed():
    assert config_mod.load(None, ['optim.name="sgd"']).hash() == config_mod.Config().hash()
    opt = groups_of("penalty.scale_lr=0.5", "penalty.scale_momentum=0.3", "optim.weight_decay=1e-4")
    assert type(opt) is torch.optim.SGD
    model, scales = opt.param_groups
    assert (model["lr"], model["momentum"], model["weight_decay"]) == (0.1, 0.9, 1e-4)
    assert (scales["lr"], scales["momentum"], scales["weight_decay"], scales["name"]) == (0.5, 0.3, 0.0, "penalty:halo")


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_and_adamw_groups(name, cls):
    opt = groups_of(f'optim.name="{name}"', "optim.lr=0.003", "optim.betas=[0.8, 0.99]", "optim.eps=1e-6",
                    "optim.weight_decay=0.01", "penalty.scale_lr=0.002")
    assert type(opt) is cls
    model, scales = opt.param_groups
    assert (model["lr"], model["betas"], model["eps"], model["weight_decay"]) == (0.003, (0.8, 0.99), 1e-6, 0.01)
    assert (scales["lr"], scales["betas"], scales["weight_decay"]) == (0.002, (0.8, 0.99), 0.0)
    assert "momentum" not in scales


@pytest.mark.parametrize("settings,message", [
    (['optim.name="adam"', "optim.momentum=0.5"], "optim.momentum does not apply to optim.name='adam'"),
    (['optim.name="adamw"', "optim.nesterov=true"], "optim.nesterov does not apply"),
    (['optim.name="adam"', "penalty.scale_momentum=0.5"], "penalty.scale_momentum does not apply"),
    (["optim.betas=[0.5, 0.5]"], "optim.betas does not apply to optim.name='sgd'"),
    (['optim.name="adam"', "optim.betas=[0.9]"], "optim.betas needs two values"),
])
def test_settings_of_another_optimizer_are_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        optimizers.build(config_mod.load(None, settings), [torch.nn.Parameter(torch.ones(1))], _NoScales(), 0.1)


class _NoScales:
    def param_groups(self, **kw):
        return []


def test_adamw_step_matches_the_formula():
    """One AdamW step from zero state moves each entry by lr * (sign(g) * |g| / (|g| + eps') + wd * w),
    i.e. by about lr * (sign(g) + wd * w) (bias-corrected first step)."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    cfg = config_mod.load(None, ['optim.name="adamw"', "optim.weight_decay=0.1", "optim.eps=1e-8"])
    opt = optimizers.build(cfg, [w], _NoScales(), 0.01)
    (w * torch.tensor([3.0, -1.0, 0.0])).sum().backward()
    before = w.detach().clone()
    opt.step()
    g = torch.tensor([3.0, -1.0, 0.0])
    want = before * (1 - 0.01 * 0.1) - 0.01 * g / (g.abs() + 1e-8)
    assert torch.allclose(w.detach(), want, atol=1e-6)
