"""Property-based tests (hypothesis) of the config parser and of magnitude pruning (issue 13, item 8).

Config (``sparsehalo.config``):

* generated valid settings of real keys, in their documented ranges, read the same through
  ``from_dict``, through ``--set`` overrides (TOML text) and back from ``to_dict`` / ``config.json``,
  with the same hash;
* the hash ignores ``name`` and ``run``, changes when a hashed value changes, and is a function of
  the config's value (equal configs, equal hashes);
* every out-of-range, wrong-type or non-finite value of those keys is a ``ConfigError``; arbitrary
  text values and arbitrary unknown keys give a ``SparsehaloError`` (or a usable config), never
  another exception.

Pruning (``sparsehalo.pruning.prune``) on small random ``nn.Sequential`` of Linear layers with ties and
exact zeros:

* exactly ``round(s * N)`` entries are removed (``round(s * n_l)`` per tensor for ``layer``), as the
  docstring of :mod:`sparsehalo.pruning.threshold` promises, and the measured zeros are
  ``max(removed, zeros already there)``;
* every kept ``|w|`` >= every pruned ``|w|`` (across tensors for ``global``, within each for
  ``layer``), ties broken by position;
* pruning twice at the same sparsity changes nothing;
* masks survive ``state_dict`` / ``torch.save`` and the checkpoint files (``save_torch`` /
  ``load_torch``) exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools
import json
import math
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from sparsehalo import config, penalties
from sparsehalo.config.checks import NAME
from sparsehalo.errors import ConfigError, SparsehaloError
from sparsehalo.io import load_torch, save_torch
from sparsehalo.measure import sparsity_table
from sparsehalo.pruning import Mask, prunable_parameters, prune

CONFIG_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PRUNE_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INF = math.inf
#: integers tomllib reads (it has no 64-bit limit) but no float can hold
HUGE = st.one_of(st.integers(min_value=2**1024, max_value=2**1100), st.integers(min_value=-(2**1100), max_value=-(2**1024)))
NON_FINITE = st.sampled_from([INF, -INF, math.nan])


# ------------------------------------------------------------------------------------------------
# TOML text of Python values (what a user types after --set key=)


def toml_str(s: str) -> str:
    """A TOML basic string: printable ASCII as is, everything else as a \\U escape."""
    out = []
    for c in s:
        if 0x20 <= ord(c) < 0x7F and c not in '"\\':
            out.append(c)
        else:
            out.append(f"\\U{ord(c):08X}")
    return '"' + "".join(out) + '"'


def toml(v) -> str:
    import datetime as dt

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)  # repr: 'inf', '-inf', '-0.0', '1e-05', '1e+16'
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, (dt.date, dt.time)):  # datetime is a date
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_str(k)} = {toml(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


# ------------------------------------------------------------------------------------------------
# Real keys: (valid values, invalid values) from the ranges in sparsehalo.config.sections


def _after(x: float) -> float:
    return math.nextafter(x, INF)


def _before(x: float) -> float:
    return math.nextafter(x, -INF)


def float_key(lo=None, hi=None, lo_open=False, hi_open=False):
    """A float field checked by ``between(lo, hi, ...)``: valid floats (and ints, read as floats),
    and out-of-range, non-finite, huge-integer and wrong-type values."""
    valid = st.floats(lo, hi, exclude_min=lo_open and lo is not None, exclude_max=hi_open and hi is not None,
                      allow_nan=False, allow_infinity=False)
    int_lo = None if lo is None else (math.floor(lo) + 1 if lo_open else math.ceil(lo))
    int_hi = None if hi is None else (math.ceil(hi) - 1 if hi_open else math.floor(hi))
    ints = st.integers(int_lo if int_lo is not None else -(10**12), int_hi if int_hi is not None else 10**12)
    if int_lo is None or int_hi is None or int_lo <= int_hi:
        valid = st.one_of(valid, ints)
    bad = [NON_FINITE, HUGE, WRONG_NUMBER]
    if lo is not None:
        # below: lo itself when open; never -0.0 for lo = 0 (it equals 0 and passes the check)
        top = lo if lo_open else _before(lo)
        bad += [st.floats(max_value=top, allow_nan=False, allow_infinity=False), st.integers(max_value=math.ceil(lo) - 1)]
    if hi is not None:
        bottom = hi if hi_open else _after(hi)
        bad += [st.floats(min_value=bottom, allow_nan=False, allow_infinity=False), st.integers(min_value=math.floor(hi) + 1)]
    return valid, st.one_of(*bad)


def int_key(lo, hi=None):
    valid = st.integers(lo, hi if hi is not None else 10**12)
    bad = [st.integers(max_value=lo - 1), HUGE, WRONG_NUMBER, st.floats(allow_nan=False, allow_infinity=False), NON_FINITE]
    if hi is not None:
        bad.append(st.integers(min_value=hi + 1))
    return valid, st.one_of(*bad)


def choice_key(*choices):
    return st.sampled_from(choices), st.one_of(st.text().filter(lambda s: s not in choices), st.integers(), st.booleans(),
                                               st.lists(st.sampled_from(choices), min_size=1, max_size=2))


def float_list_key(lo, hi=None, hi_open=False, most=1000, max_size=8):
    item, bad_item = float_key(lo, hi, hi_open=hi_open)
    valid = st.lists(item, max_size=min(most, max_size))
    bad = st.one_of(
        item.map(lambda v: [v] * (most + 1)),  # too many entries
        st.tuples(st.lists(item, max_size=3), bad_item, st.lists(item, max_size=3)).map(lambda t: [*t[0], t[1], *t[2]]),
        st.floats(lo, hi, allow_nan=False), st.text(), st.booleans(),  # a scalar where a list is due
    )
    return valid, bad


WRONG_NUMBER = st.one_of(st.text(), st.booleans(), st.lists(st.integers(0, 3), max_size=2),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
BOOL = (st.booleans(), st.one_of(st.integers(), st.floats(allow_nan=False), st.text(), st.lists(st.booleans(), max_size=2)))
STR_LIST = (st.lists(st.sampled_from(["Linear", "Conv2d", "BatchNorm2d"]), max_size=3),
            st.one_of(st.text(), st.integers(), st.lists(st.integers(), min_size=1, max_size=2),
                      st.text(max_size=3).map(lambda v: [v] * 1001)))

#: hashed keys (everything but ``name`` and ``run``), without the penalty's own settings
HASHED = {
    "train.epochs": int_key(1, 10**6),
    "train.seed": int_key(0, 2**32 - 1),
    "train.amp": choice_key("none", "bf16", "fp16"),
    "optim.lr": float_key(0, None, lo_open=True),
    "optim.momentum": float_key(0, 1, hi_open=True),
    "optim.weight_decay": float_key(0),
    "optim.nesterov": BOOL,
    "optim.betas": float_list_key(0, 1, hi_open=True, most=2),
    "optim.eps": float_key(0, None, lo_open=True),
    "data.batch_size": int_key(1, 10**7),
    "data.eval_batch_size": int_key(1, 10**7),
    "data.workers": int_key(0, 256),
    "data.val_size": int_key(0, 10**9),
    "data.train_size": int_key(0, 10**9),
    "data.in_memory": choice_key("auto", "yes", "no"),
    "data.augment": BOOL,
    "method.sparsity": float_key(0, 1, hi_open=True),
    "schedule.milestones": float_list_key(0),
    "schedule.step_size": float_key(0),
    "schedule.gamma": float_key(0, None, lo_open=True),
    "schedule.unit": choice_key("epoch", "step"),
    "prune.levels": float_list_key(0, 1, hi_open=True, most=100),
    "prune.eps": float_key(0),
    "prune.biases": BOOL,
    "prune.types": STR_LIST,
    "penalty.scale_lr": float_key(0, None, lo_open=True),
    "penalty.scale_momentum": float_key(0, 1, hi_open=True),
    "penalty.biases": BOOL,
    "penalty.types": STR_LIST,
}

#: settings of the ``halo`` penalty (``penalty.name = "halo"``): checked for type and finiteness when the
#: config is read (their ranges are the penalty constructor's, run by ``training.validate``)
_any_float = st.one_of(st.floats(0, 1e6, allow_nan=False), st.integers(0, 10**6))
HALO = {
    key: (_any_float, st.one_of(NON_FINITE, HUGE, WRONG_NUMBER))
    for key in ("penalty.xi", "penalty.psi", "penalty.lambda_init", "penalty.eps", "penalty.scale_weight_decay")
}

#: keys outside the hash
UNHASHED = {
    "name": (st.from_regex(NAME, fullmatch=True), st.one_of(st.just(""), st.just(".."), st.text().filter(lambda s: not NAME.fullmatch(s)),
                                                            st.integers())),
    "run.threads": int_key(0, 4096),
    "run.eval_pruned_every": int_key(0),
    "run.progress": BOOL,
    "run.channels_last": BOOL,
    "run.keep_freed_memory": BOOL,
    "run.device": (st.sampled_from(["auto", "cpu", "cuda", "cuda:1"]), st.one_of(st.integers(), st.booleans())),
    "run.data_dir": (st.text(), st.one_of(st.integers(), st.booleans(), st.lists(st.text(), max_size=1))),
}

SPEC = {**HASHED, **HALO, **UNHASHED}
PENALTY_OWN = {f.name for f in dataclasses.fields(config.PenaltyConfig)} - {"settings"}
FLOAT_KEYS = {k for k in SPEC if k in HALO or k in (
    "optim.lr", "optim.momentum", "optim.weight_decay", "optim.eps", "method.sparsity", "schedule.step_size", "schedule.gamma",
    "prune.eps", "penalty.scale_lr", "penalty.scale_momentum")}
FLOAT_LIST_KEYS = {"optim.betas", "schedule.milestones", "prune.levels"}


def nest(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        *sections, leaf = key.split(".")
        node = out
        for s in sections:
            node = node.setdefault(s, {})
        node[leaf] = value
    return out


def overrides(flat: dict) -> list[str]:
    return [f"{k}={toml(v)}" for k, v in flat.items() if v is not None]


def read_back(cfg: config.Config, key: str):
    if key.startswith("penalty.") and key.split(".")[1] not in PENALTY_OWN:
        return cfg.penalty.settings.get(key.split(".")[1])
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def as_read(key: str, value):
    """The value as the config holds it: ints where a float is due are read as floats."""
    if key in FLOAT_KEYS:
        return float(value)
    if key in FLOAT_LIST_KEYS:
        return [float(v) for v in value]
    return value


@st.composite
def valid_settings(draw, unhashed=True):
    """``{dotted key: valid value}`` for a random subset of the real keys (halo settings with their penalty)."""
    pool = sorted(HASHED)
    chosen = draw(st.sets(st.sampled_from(pool), max_size=len(pool)))
    if unhashed:
        chosen |= draw(st.sets(st.sampled_from(sorted(UNHASHED)), max_size=len(UNHASHED)))
    out = {k: draw(SPEC[k][0], label=k) for k in sorted(chosen)}
    if draw(st.booleans()):
        out["penalty.name"] = "halo"
        for k in sorted(draw(st.sets(st.sampled_from(sorted(HALO))))):
            out[k] = draw(HALO[k][0], label=k)
    return out


def hashed_only(flat: dict) -> dict:
    return {k: v for k, v in flat.items() if k not in UNHASHED}


# ------------------------------------------------------------------------------------------------
# Config: round trip and hash


@CONFIG_SETTINGS
@given(valid_settings())
def test_valid_settings_round_trip_with_the_same_hash(flat):
    cfg = config.from_dict(nest(flat))
    for key, value in flat.items():  # every generated value was read, as given
        assert read_back(cfg, key) == as_read(key, value), key
    # to_dict -> from_dict, directly and through config.json's JSON
    back = config.from_dict(cfg.to_dict())
    assert back == cfg and back.hash() == cfg.hash() and back.to_dict() == cfg.to_dict()
    via_json = config.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert via_json == cfg and via_json.hash() == cfg.hash()
    # the same settings typed as --set overrides (TOML values)
    loaded = config.load(None, overrides(flat))
    assert loaded == cfg and loaded.hash() == cfg.hash()
    assert "name" not in cfg.hashed_dict() and "run" not in cfg.hashed_dict()


@CONFIG_SETTINGS
@given(valid_settings(unhashed=False), st.data())
def test_hash_ignores_name_and_run(flat, data):
    cfg = config.from_dict(nest(flat))
    other = {k: data.draw(v[0], label=k) for k, v in UNHASHED.items() if data.draw(st.booleans(), label=f"set {k}")}
    assume(other)
    moved = config.from_dict(nest({**flat, **other}))
    for key, value in other.items():
        assert read_back(moved, key) == as_read(key, value), key
    assert moved.hash() == cfg.hash()
    assert moved.run_dir("out").name == f"{moved.name}-{cfg.hash()}"


@CONFIG_SETTINGS
@given(valid_settings(unhashed=False), st.data())
def test_hash_changes_when_a_hashed_value_changes(flat, data):
    cfg = config.from_dict(nest(flat))
    keys = sorted(HASHED) + (sorted(HALO) if flat.get("penalty.name") == "halo" else [])
    key = data.draw(st.sampled_from(keys), label="key")
    new = data.draw(SPEC[key][0], label="new value")
    changed = config.from_dict(nest({**flat, key: new}))
    assume(read_back(changed, key) != read_back(cfg, key))
    assert changed != cfg
    assert changed.hash() != cfg.hash(), (key, read_back(cfg, key), new)


def _negate_zeros(value):
    if isinstance(value, float) and value == 0.0:
        return -0.0
    if isinstance(value, list):
        return [_negate_zeros(v) for v in value]
    return value


@CONFIG_SETTINGS
@given(valid_settings(unhashed=False))
def test_equal_configs_have_equal_hashes(flat):
    """The hash is a function of the config's value: a zero typed as -0.0 is the same setting (it
    passes the same range checks and trains the same), so it must name the same run directory."""
    cfg = config.from_dict(nest(flat))
    twin = config.from_dict(nest({k: _negate_zeros(v) for k, v in flat.items()}))
    assert twin == cfg
    assert twin.hash() == cfg.hash(), (cfg.hashed_dict(), twin.hashed_dict())


# ------------------------------------------------------------------------------------------------
# Config: wrong values are ConfigErrors


@CONFIG_SETTINGS
@given(st.sampled_from(sorted(SPEC)), st.data())
def test_every_invalid_value_of_a_real_key_is_a_config_error(key, data):
    bad = data.draw(SPEC[key][1], label="bad value")
    base = hashed_only(data.draw(valid_settings(), label="base"))
    base.pop(key, None)
    if key in HALO:
        base["penalty.name"] = "halo"
    flat = {**base, key: bad}
    with pytest.raises(ConfigError):
        config.from_dict(nest(flat))
    with pytest.raises(ConfigError):
        config.load(None, overrides(flat))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["penalty.xi", "penalty.psi", "penalty.eps", "penalty.scale_weight_decay"]),
       st.one_of(st.floats(max_value=_before(0.0), allow_nan=False, allow_infinity=False), st.integers(max_value=-1)))
def test_negative_penalty_strengths_fail_before_training(key, value):
    """The config reads a halo setting's type; its range is the penalty's, checked by ``validate``
    (the model and penalty built on ``meta``), still as a ConfigError before anything runs."""
    from sparsehalo.training.validate import validate

    cfg = config.load(None, ['penalty.name="halo"', f"{key}={toml(value)}"])
    with pytest.raises(ConfigError):
        validate(cfg)


# ------------------------------------------------------------------------------------------------
# Config: arbitrary text and arbitrary keys never raise anything but a SparsehaloError

#: TOML values of every kind (dates and times included) and depth
TOML_VALUES = st.recursive(
    st.one_of(st.booleans(), st.integers(), HUGE, st.floats(), st.text(max_size=8), st.dates(), st.times(),
              st.datetimes()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
)
VALUE_TEXT = st.one_of(st.text(), TOML_VALUES.map(toml))
FREE_TABLES = ("model.kwargs", "data.kwargs", "method.options")
KNOWN_KEYS = sorted({*SPEC, "model.name", "data.name", "method.name", "optim.name", "schedule.name", "prune.scope",
                     "penalty.name", "penalty.include", "penalty.exclude", *FREE_TABLES, *(f"{t}.x" for t in FREE_TABLES)})


def assert_usable(cfg: config.Config) -> None:
    """A config that loads can be hashed, written as config.json and read back the same."""
    text = json.dumps(cfg.to_dict())
    back = config.from_dict(json.loads(text))
    assert back == cfg and back.hash() == cfg.hash()


@CONFIG_SETTINGS
@given(st.sampled_from(KNOWN_KEYS), VALUE_TEXT, st.booleans())
def test_any_text_for_a_real_key_is_a_sparsehalo_error_or_a_usable_config(key, text, halo):
    sets = (['penalty.name="halo"'] if halo else []) + [f"{key}={text}"]
    try:
        cfg = config.load(None, sets)
    except SparsehaloError:
        return
    assert_usable(cfg)


@CONFIG_SETTINGS
@given(st.sampled_from(KNOWN_KEYS), TOML_VALUES.map(toml) | st.text(), st.data())
def test_any_value_in_a_config_file_is_a_sparsehalo_error_or_a_usable_config(key, text, data):
    *sections, leaf = key.split(".")
    head = f"[{'.'.join(sections)}]\n" if sections else ""
    extra = data.draw(st.lists(st.sampled_from(["train.epochs=3", 'penalty.name="halo"', "prune.levels=[0.5]"]), max_size=2))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        path.write_text(f"{head}{leaf} = {text}\n", encoding="utf-8")
        try:
            cfg = config.load(path, extra)
        except SparsehaloError:
            return
    assert_usable(cfg)


HALO_OPTIONS = {f.name for f in penalties.PENALTIES.get("halo").option_fields()} | {
    f.metadata["stored_as"] for f in penalties.PENALTIES.get("halo").option_fields() if "stored_as" in f.metadata}
_SECTIONS = [f.name for f in dataclasses.fields(config.Config)]
_SEGMENT = st.one_of(st.sampled_from(_SECTIONS + ["epochs", "lr", "xi", "settings", "extends", "__class__"]),
                     st.text(st.characters(exclude_characters=".="), min_size=1, max_size=8))


def _is_known(parts: list[str]) -> bool:
    key = ".".join(parts).strip()
    return (key in KNOWN_KEYS or key in _SECTIONS or any(key == t or key.startswith(t + ".") for t in FREE_TABLES)
            or key.startswith("penalty.") and key.split(".")[1] in PENALTY_OWN | HALO_OPTIONS)


@CONFIG_SETTINGS
@given(st.lists(_SEGMENT, min_size=1, max_size=3), TOML_VALUES, st.booleans())
def test_unknown_keys_are_sparsehalo_errors(parts, value, halo):
    assume(not _is_known(parts))
    sets = (['penalty.name="halo"'] if halo else []) + [f"{'.'.join(parts)}={toml(value)}"]
    with pytest.raises(SparsehaloError):
        config.load(None, sets)
    data = nest({".".join(parts).strip(): value})
    if halo:
        data.setdefault("penalty", {})
        if isinstance(data["penalty"], dict):
            data["penalty"]["name"] = "halo"
    with pytest.raises(SparsehaloError):
        config.from_dict(data)


# ------------------------------------------------------------------------------------------------
# Pruning

SPECIAL_WEIGHTS = [0.0, -0.0, 0.25, -0.25, 0.5, -0.5, 1.0, -1.0]  # exact zeros and ties (w and -w)
WEIGHT = st.one_of(st.sampled_from(SPECIAL_WEIGHTS), st.floats(-2, 2, allow_nan=False, width=32))


@st.composite
def small_models(draw):
    """``nn.Sequential`` of 1-3 Linear layers with drawn sizes, weights and biases."""
    depth = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 6), min_size=depth + 1, max_size=depth + 1))
    bias = draw(st.booleans())
    model = nn.Sequential(*[nn.Linear(a, b, bias=bias) for a, b in itertools.pairwise(sizes)])
    with torch.no_grad():
        for layer in model:
            w = draw(st.lists(WEIGHT, min_size=layer.weight.numel(), max_size=layer.weight.numel()))
            layer.weight.copy_(torch.tensor(w, dtype=torch.float32).view_as(layer.weight))
            if bias:
                layer.bias.copy_(torch.tensor(draw(st.lists(WEIGHT, min_size=layer.out_features, max_size=layer.out_features))))
    return model


def draw_sparsity(data, total: int) -> float:
    """Any float in [0, 1), or a fraction at (or halfway between) whole counts of ``total``."""
    return data.draw(st.one_of(st.floats(0, 1, exclude_max=True), st.integers(0, 2 * total - 1).map(lambda j: j / (2 * total))),
                     label="sparsity")


def weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in prunable_parameters(model).items()}


def run_prune(model, sparsity, scope):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "removed every entry of ..." is expected here
        return prune(model, sparsity, scope=scope)


SCOPE = st.sampled_from(["global", "layer"])


@PRUNE_SETTINGS
@given(small_models(), SCOPE, st.data())
def test_prune_removes_exactly_round_s_n_entries(model, scope, data):
    before = weights(model)
    biases = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("bias")}
    total = sum(t.numel() for t in before.values())
    s = draw_sparsity(data, total)
    mask = run_prune(model, s, scope)
    assert list(mask) == list(before)
    if scope == "global":
        groups = [list(before)]  # one count over every tensor
    else:
        groups = [[n] for n in before]  # one count per tensor
    for names in groups:
        n = sum(before[x].numel() for x in names)
        k = round(s * n)  # the promise: exactly round(sparsity * N), Python's round
        pruned = sum(int((~mask[x]).sum()) for x in names)
        assert pruned == k, (names, s, n)
        assert abs(pruned / n - s) <= 0.5 / n + 1e-12
        # measured on the model: the pruned entries are zero, and the zeros that were there before
        # are the first to go, so the zeros now are max(k, zeros before)
        zeros_before = sum(int((before[x] == 0).sum()) for x in names)
        zeros_after = sum(int((prunable_parameters(model)[x] == 0).sum()) for x in names)
        assert zeros_after == max(k, zeros_before)
        if zeros_before <= k:
            assert abs(zeros_after / n - s) <= 1 / n
    expected = sum(round(s * before[n].numel()) for n in before) if scope == "layer" else round(s * total)
    assert mask.num_pruned == expected
    table = sparsity_table(model)
    assert table.total == total
    assert table.total - table.nonzero == sum(int((p == 0).sum()) for p in prunable_parameters(model).values())
    # pruned entries zeroed, kept entries and biases untouched
    for n, p in prunable_parameters(model).items():
        assert torch.equal(p.detach(), torch.where(mask[n], before[n], torch.zeros_like(before[n])))
    for n, b in biases.items():
        assert torch.equal(dict(model.named_parameters())[n].detach(), b)


def _check_order(magnitudes: torch.Tensor, keep: torch.Tensor) -> None:
    """Every kept |w| >= every pruned |w|; among entries at the cut's magnitude the pruned ones come first."""
    pruned, kept = magnitudes[~keep], magnitudes[keep]
    if pruned.numel() and kept.numel():
        assert float(pruned.max()) <= float(kept.min())
        at_cut = keep[magnitudes == pruned.max()]  # position order
        flips = (at_cut[1:].int() - at_cut[:-1].int())
        assert bool((flips >= 0).all()), "a tie at the cut kept an entry before a pruned one"


@PRUNE_SETTINGS
@given(small_models(), SCOPE, st.data())
def test_kept_magnitudes_are_at_least_the_pruned_ones(model, scope, data):
    before = weights(model)
    s = draw_sparsity(data, sum(t.numel() for t in before.values()))
    mask = run_prune(model, s, scope)
    if scope == "global":
        _check_order(torch.cat([before[n].abs().flatten() for n in before]), torch.cat([mask[n].flatten() for n in before]))
    else:
        for n in before:
            _check_order(before[n].abs().flatten(), mask[n].flatten())


@PRUNE_SETTINGS
@given(small_models(), SCOPE, st.data())
def test_pruning_twice_changes_nothing(model, scope, data):
    s = draw_sparsity(data, sum(t.numel() for t in weights(model).values()))
    first = run_prune(model, s, scope)
    after_first = {n: p.detach().clone() for n, p in model.named_parameters()}
    second = run_prune(model, s, scope)
    same_mask = second == first  # Mask.__eq__: same names, shapes and entries
    assert same_mask
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), after_first[n]), n


@PRUNE_SETTINGS
@given(small_models(), SCOPE, st.data())
def test_masks_survive_save_and_load(model, scope, data):
    unpruned = copy.deepcopy(model)
    s = draw_sparsity(data, sum(t.numel() for t in weights(model).values()))
    mask = run_prune(model, s, scope)

    # the mask's own state_dict through torch.save / torch.load(weights_only=True)
    buf = io.BytesIO()
    torch.save(mask.state_dict(), buf)
    buf.seek(0)
    back = Mask.from_state_dict(torch.load(buf, weights_only=True))
    same_mask = back == mask
    assert same_mask and list(back) == list(mask)
    assert all(back[n].dtype == torch.bool and back[n].shape == mask[n].shape for n in mask)
    assert (back.num_pruned, back.num_total) == (mask.num_pruned, mask.num_total)

    # a checkpoint file as training writes it (model + mask, SHA-256 sidecar), read back safely
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.pt"
        save_torch(path, {"model": model.state_dict(), "mask": mask.state_dict()})
        ckpt = load_torch(path, required=("model", "mask"))
    loaded = Mask.from_state_dict(ckpt["mask"])
    same_mask = loaded == mask
    assert same_mask
    loaded.check(unpruned)
    restored = copy.deepcopy(unpruned)
    restored.load_state_dict(ckpt["model"])
    loaded.apply(unpruned)  # the loaded mask on the unpruned weights gives the pruned model again
    for (n, p), q, r in zip(model.named_parameters(), unpruned.parameters(), restored.parameters()):
        assert torch.equal(p.detach(), q.detach()), n
        assert torch.equal(p.detach(), r.detach()), n
