"""Each penalty's Options: its settings by name, checked by the config and by build(), and the
hash of every old spelling kept."""

import dataclasses
import inspect

import pytest
import torch
from torch import nn

from sparsehalo import config
from sparsehalo.errors import ConfigError
from sparsehalo.penalties import MCP, PENALTIES, SCAD, build

ALIASES = {"mcp": {"psi"}}  # old names a constructor still takes


@pytest.mark.parametrize("name", PENALTIES.names())
def test_options_are_the_constructor_keywords_with_their_defaults(name):
    cls = PENALTIES.get(name)
    keywords = {}
    for klass in cls.__mro__:  # a constructor passing **kwargs on takes its base class's keywords too
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        keywords = {**{k: p.default for k, p in params.items() if p.kind is p.KEYWORD_ONLY
                       and k not in ALIASES.get(name, ())}, **keywords}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    options = {f.name: f.default for f in dataclasses.fields(cls.Options)}
    assert options == keywords
    assert all(f.metadata["help"] for f in dataclasses.fields(cls.Options))


# one setting each penalty does not take, and what it does take
TARGET = ("target_sparsity, total_steps, target_ramp, target_schedule, target_gain, target_gain_p, target_factor, "
          "target_average, target_error, target_knob, target_zero, target_start")
UNKNOWN = {
    "halo": ("a", "xi, psi, lambda_init, hyper, budget, eps, scale_weight_decay, " + TARGET),
    "l1": ("psi", "xi, lambda_init, scale_weight_decay"),
    "sws": ("budget", "xi, psi, lambda_init, eps, scale_weight_decay"),
    "mcp": ("eps", "xi, gamma"),
    "scad": ("gamma", "xi, a"),
    "group_lasso": ("psi", "xi, eps"),
    "group_halo": ("a", "xi, psi, lambda_init, hyper, budget, eps, scale_weight_decay, " + TARGET + ", target_macs, input_shape"),
    "none": ("xi", "no settings"),
}


def test_every_penalty_has_an_unknown_key_case():
    assert sorted(UNKNOWN) == sorted(PENALTIES.names())


@pytest.mark.parametrize("name", sorted(UNKNOWN))
def test_a_setting_the_penalty_does_not_take_is_one_clear_error(name):
    key, takes = UNKNOWN[name]
    with pytest.raises(ConfigError) as err:
        config.load(None, [f'penalty.name="{name}"', f"penalty.{key}=1.0"])
    msg = str(err.value)
    assert f"penalty {name!r} has no setting {key!r}" in msg and msg.endswith(f"{name} takes: {takes}")
    m = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ConfigError, match=f"penalty {name!r} has no setting {key!r}; it takes: {takes}"):
        build(name, m, **{key: 1.0})


def test_unknown_key_and_wrong_types():
    with pytest.raises(ConfigError, match=r"unknown config key 'penalty.lamda_init' \(did you mean 'penalty.lambda_init'\?\)"):
        config.load(None, ['penalty.name="halo"', "penalty.lamda_init=1.0"])
    with pytest.raises(ConfigError, match="unknown config key 'penalty.zzz'; penalty 'l1' takes: xi, lambda_init"):
        config.load(None, ['penalty.name="l1"', "penalty.zzz=1.0"])
    with pytest.raises(ConfigError, match="'penalty.hyper' needs a string"):
        config.load(None, ['penalty.name="halo"', "penalty.hyper=1"])
    # a wrong value is reported as such even for a penalty that does not take the key
    with pytest.raises(ConfigError, match="'penalty.xi' needs a number"):
        config.load(None, ["penalty.xi=true"])
    with pytest.raises(ConfigError, match="unknown penalty 'lasso2'; known: halo, l1"):
        config.load(None, ['penalty.name="lasso2"'])
    assert config.load(None, ['penalty.name="halo"', "penalty.xi=1"]).penalty.settings == {"xi": 1.0}  # int read as float


def linear(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2)).double()


def built(cfg):
    pc = cfg.penalty
    return build(pc.name, linear(), **pc.selection(), **pc.options())


def test_scad_a_is_settable_from_a_config_and_used():
    base = ['penalty.name="scad"', "penalty.xi=0.5"]
    default, three = config.load(None, base), config.load(None, [*base, "penalty.a=3"])
    assert built(default).a == 3.7 and built(three).a == 3.0
    assert three.penalty.options() == {"xi": 0.5, "a": 3.0}
    # the value is SCAD's with a = 3 (lam = 0.5): lam|w| | (3|w| - w^2 - 0.25) / 4 | 0.5
    w = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    p = SCAD({"w": w}, **three.penalty.options())
    assert p().item() == pytest.approx(0.15 + 0.4375 + 0.5, abs=1e-14)
    # a new setting enters the hash and config.json only when given, so older configs keep theirs
    assert three.hash() != default.hash()
    assert "a" not in default.to_dict()["penalty"] and three.to_dict()["penalty"]["a"] == 3.0
    assert list(three.to_dict()["penalty"])[:9] == ["name", *config.FLAT_PENALTY_KEYS, "a"]
    assert config.from_dict(three.to_dict()).hash() == three.hash()


def test_mcp_gamma_and_its_old_name_psi_are_one_setting():
    base = ['penalty.name="mcp"', "penalty.xi=0.01", 'penalty.types=["Linear"]']
    new, old = config.load(None, [*base, "penalty.gamma=2.5"]), config.load(None, [*base, "penalty.psi=2.5"])
    assert new.penalty.settings == old.penalty.settings == {"xi": 0.01, "gamma": 2.5}
    assert new.hash() == old.hash()
    assert new.to_dict() == old.to_dict() and new.to_dict()["penalty"]["psi"] == 2.5  # stored as before
    assert "gamma" not in new.to_dict()["penalty"]
    a, b = built(new), built(old)
    assert isinstance(a, MCP) and a.gamma == b.gamma == 2.5 and torch.equal(a(), b())
    # the same value given under both names is one setting; different values are an error
    assert config.load(None, [*base, "penalty.psi=2.5", "penalty.gamma=2.5"]).hash() == new.hash()
    with pytest.raises(ConfigError, match="'gamma' and its old name 'psi' are both given"):
        config.load(None, [*base, "penalty.psi=2.5", "penalty.gamma=3"])
    # the class takes both names too
    w = torch.linspace(-1, 1, 9, dtype=torch.float64)
    assert torch.equal(MCP({"w": w}, xi=0.1, gamma=2.0)(), MCP({"w": w}, xi=0.1, psi=2.0)())


def test_null_means_not_given():
    """config.json writes every flat setting, null when unset: reading it back gives no setting."""
    cfg = config.load(None, ['penalty.name="l1"', "penalty.xi=0.01"])
    data = cfg.to_dict()
    assert data["penalty"]["psi"] is None and data["penalty"]["hyper"] is None
    again = config.from_dict(data)
    assert again.penalty.settings == {"xi": 0.01} and again.to_dict() == data


def test_settings_are_checked_again_when_the_name_changes():
    cfg = config.load(None, ['penalty.name="halo"', "penalty.psi=0.1"])
    with pytest.raises(ConfigError, match="penalty 'l1' has no setting 'psi'"):
        dataclasses.replace(cfg.penalty, name="l1")
