"""Config files and overrides: the shipped configs, ``extends``, bad keys, the demo's configs."""

import pytest

from sparsehalo import config as config_mod
from sparsehalo.demo import demo_configs
from sparsehalo.errors import ConfigError

from support import ROOT


def test_config_hash_is_pinned_and_demo_matches_configs():
    cfg = config_mod.load(ROOT / "configs" / "mnist_lenet300_halo.toml")
    assert cfg.hash() == "e675164246e4"
    assert cfg.name == "mnist_lenet300_halo"
    # run-only settings do not change the hash; results-changing ones do
    assert config_mod.load(ROOT / "configs" / "mnist_lenet300_halo.toml", ['run.device="cpu"']).hash() == cfg.hash()
    assert config_mod.load(ROOT / "configs" / "mnist_lenet300_halo.toml", ["train.seed=1"]).hash() != cfg.hash()
    demo = demo_configs(epochs=30)
    assert demo["HALO"].to_dict() == cfg.to_dict()
    dense = config_mod.load(ROOT / "configs" / "mnist_lenet300_dense.toml")
    assert demo["no penalty"].to_dict() == dense.to_dict()


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.epoch=3", "did you mean 'train.epochs'"),
        ("train.epochs=abc", "needs an integer"),
        ("penalty.xi=true", "needs a number"),
        ("nosuchsection.x=1", "unknown config key 'nosuchsection'"),
        ("train=3", "must be a table"),
    ],
)
def test_bad_config_keys(override, message):
    with pytest.raises(ConfigError, match=message):
        config_mod.load(None, [override])


def test_every_shipped_config_parses_and_builds():
    """Each config's model, penalty and method (with its options and phases) can be built."""
    from sparsehalo import methods, models, penalties

    files = sorted((ROOT / "configs").glob("*.toml"))
    assert len(files) >= 40
    for f in files:
        cfg = config_mod.load(f)
        assert cfg.name == f.stem
        model = models.build(cfg.model.name, **cfg.model.kwargs)
        penalties.build(cfg.penalty.name, model, **cfg.penalty.selection(), **cfg.penalty.options())
        m = methods.build(cfg.method.name, cfg.method.sparsity, cfg.method.options)
        assert sum(m.phases(cfg.train.epochs)) == cfg.train.epochs


def test_config_extends(tmp_path):
    (tmp_path / "base.toml").write_text('name = "base"\n[train]\nepochs = 7\nseed = 3\n[penalty]\nname = "halo"\nxi = 0.5\n')
    (tmp_path / "child.toml").write_text('extends = "base.toml"\nname = "child"\n[train]\nepochs = 9\n')
    cfg = config_mod.load(tmp_path / "child.toml")
    assert (cfg.name, cfg.train.epochs, cfg.train.seed, cfg.penalty.name, cfg.penalty.settings["xi"]) == ("child", 9, 3, "halo", 0.5)
    (tmp_path / "loop.toml").write_text('extends = "loop.toml"\n')
    with pytest.raises(ConfigError, match="extends itself"):
        config_mod.load(tmp_path / "loop.toml")
    (tmp_path / "orphan.toml").write_text('extends = "missing.toml"\n')
    with pytest.raises(ConfigError, match="not found"):
        config_mod.load(tmp_path / "orphan.toml")


def test_an_override_value_cannot_smuggle_in_more_keys():
    import pytest

    from sparsehalo.config import load
    from sparsehalo.errors import ConfigError

    with pytest.raises(ConfigError, match="spans several lines"):
        load(None, ["train.epochs=5\nw = 1"])
