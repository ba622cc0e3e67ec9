"""The config hash: pinned hashes, the hash and config.json of every committed run, defaults left out."""

import json
import re

import pytest

from sparsehalo import config

from support import ROOT

# Hashes of shipped configs, fixed: a change here renames (orphans) every run directory of that config.
PINNED = {
    "mnist_lenet300_halo": "e675164246e4",
    "mnist_lenet300_mcp": "11f63a003fcf",
    "mnist_lenet300_l1": "e76bb14df702",
    "mnist_lenet300_sws": "c6b6e6dfe4a4",
    "mnist_lenet300_dense": "69d485245cf0",
    "mnist_lenet300_gmp": "bac7d95c5f8e",
    "cifar10_resnet20_cpu_halo": "676ee98111ef",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_hashes(name):
    assert config.load(ROOT / "configs" / f"{name}.toml").hash() == PINNED[name]


def committed_runs():
    return sorted((ROOT / "results").glob("**/config.json"))


def test_every_committed_run_keeps_its_hash_and_config_json():
    """Each committed run directory is ``<name>-<hash>``: its config.json, read back, has that hash,
    and writes back the same hashed sections, fields added since at their defaults (``run`` is not hashed)."""
    files = committed_runs()
    assert len(files) >= 250  # hundreds are committed: the test cannot pass on an empty glob
    names = set()
    for f in files:
        m = re.fullmatch(r".+-([0-9a-f]{12})", f.parent.name)
        assert m, f
        data = json.loads(f.read_text())
        cfg = config.from_dict(data)
        assert cfg.hash() == m.group(1), f
        written = cfg.to_dict()
        assert json.dumps(written["penalty"]) == json.dumps(data["penalty"]), f  # same keys, same order
        default = config.Config().to_dict()
        for section in ("model", "data", "method", "optim", "schedule", "train", "prune"):
            old = data[section]
            assert {k: written[section][k] for k in old} == old, (f, section)
            added = set(written[section]) - set(old)  # fields added since the run: at their defaults
            assert {k: written[section][k] for k in added} == {k: default[section][k] for k in added}, (f, section)
        names.add(data["penalty"]["name"])
    assert {"halo", "l1", "sws", "mcp", "none"} <= names


def test_hash_ignores_defaults_and_run():
    assert config.Config().hashed_dict() == {}
    assert config.load(None, ["train.epochs=30", "run.threads=3"]).hash() == config.Config().hash()
    assert config.load(None, ['penalty.name="halo"', "penalty.xi=1e-4"]).hashed_dict() == {"penalty": {"name": "halo", "xi": 1e-4}}
