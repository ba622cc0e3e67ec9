"""Per-field help and describe(): every config key with its type, default and help."""

import dataclasses
import json

import pytest

from sparsehalo import config
from sparsehalo.errors import ConfigError


def section_fields():
    for f in dataclasses.fields(config.Config):
        if dataclasses.is_dataclass(f.default_factory):
            yield from ((f.name, sf) for sf in dataclasses.fields(f.default_factory))


def test_every_field_has_help():
    assert all(f.metadata.get("help") for f in dataclasses.fields(config.Config))
    missing = [f"{s}.{f.name}" for s, f in section_fields() if not f.metadata.get("help")]
    assert missing == []


def test_describe_lists_every_key_with_type_default_and_help():
    rows = config.describe()
    keys = [r[0] for r in rows]
    assert len(keys) == len(set(keys))
    by_key = {k: (t, d, h) for k, t, d, h in rows}
    assert by_key["train.epochs"] == ("int", 30, "epochs in all (every phase of the method counted)")
    assert by_key["penalty.scale_lr"][:2] == ("float | None", None)
    assert by_key["prune.levels"][:2] == ("list[float]", [0.9, 0.95, 0.98, 0.99, 0.995])
    assert by_key["run.data_dir"][0] == "str | None" and by_key["model.kwargs"][0] == "table"
    # every section key once, the penalty's flat settings in place of the internal ``settings``
    expected = {"name"} | {f"{s}.{f.name}" for s, f in section_fields() if (s, f.name) != ("penalty", "settings")}
    assert expected <= set(keys) and "penalty.settings" not in keys
    assert {"penalty.xi", "penalty.psi", "penalty.gamma", "penalty.a", "penalty.hyper", "penalty.budget"} <= set(keys)
    # a key shared by penalties with different defaults names each one
    t, d, h = by_key["penalty.eps"]
    assert t == "float" and d is None and "halo 0.001" in h and "group_lasso 1e-06" in h
    assert "penalties: halo, l1, sws, mcp, scad, group_lasso, group_halo" in by_key["penalty.xi"][2]
    # the choices of a name come from its registry, and the help says which
    for key, registry in [("penalty.name", "PENALTIES"), ("method.name", "METHODS"), ("schedule.name", "SCHEDULES"),
                          ("prune.scope", "SCOPES"), ("model.name", "MODELS")]:
        assert registry in by_key[key][2], key
    assert "none | bf16 | fp16" in by_key["train.amp"][2]
    # every key is settable as listed (the defaults round-trip through --set)
    for key, _, default, _ in rows:
        if default is not None and key != "name" and not key.startswith("penalty."):
            assert config.load(None, [f"{key}={json.dumps(default)}"]).hash() == config.Config().hash(), key


def test_describe_one_penalty():
    rows = {k: (t, d, h) for k, t, d, h in config.describe("scad")}
    assert [k for k in rows if k.startswith("penalty.") and k.split(".")[1] in ("xi", "a", "psi", "eps")] == ["penalty.xi", "penalty.a"]
    assert rows["penalty.a"][:2] == ("float", 3.7)
    with pytest.raises(ConfigError, match="unknown penalty"):
        config.describe("lasso2")
