"""Packaging: the wheel holds the configs, py.typed, an SPDX license and the honest torch floor; one version
source; bundled configs resolve by name, from a checkout and from an installed wheel.

The wheel is built from a copy of the tree (pyproject.toml, README.md, LICENSE, configs/, src/; the link
src/sparsehalo/configs -> ../../configs copied as a link), so the checkout gets no build/ or egg-info.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile

import pytest

import sparsehalo
from sparsehalo import config as config_mod
from sparsehalo.errors import ConfigError

from support import ROOT, cli

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.toml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "configs", tree / "configs")
    shutil.copytree(ROOT / "src", tree / "src", symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-w", str(dist), str(tree)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = dist.glob("sparsehalo-*.whl")
    return path


def test_wheel_holds_configs_types_license_and_metadata(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = f"sparsehalo-{VERSION}.dist-info"
        meta = z.read(f"{info}/METADATA").decode()
        bundled = sorted(n.removeprefix("sparsehalo/configs/") for n in names if n.startswith("sparsehalo/configs/"))
        assert bundled == CONFIGS and len(CONFIGS) >= 40  # every shipped config, nothing else
        assert z.read("sparsehalo/configs/fashion_lenet300_halo.toml") == (ROOT / "configs" / "fashion_lenet300_halo.toml").read_bytes()
        assert "sparsehalo/py.typed" in names
        assert "sparsehalo/data/mnist/train-images-idx3-ubyte.gz" in names  # the older package data is still there
        license_text = z.read(f"{info}/licenses/LICENSE").decode()
    assert license_text.startswith("MIT License") and "Copyright (c) 2026 the sparsehalo authors" in license_text
    fields = [line.partition(": ") for line in meta.split("\n\n")[0].splitlines()]
    header = {}
    for key, _, value in fields:
        header.setdefault(key, []).append(value)
    assert header["Version"] == [VERSION]
    assert header.get("License-Expression") == ["MIT"] or header.get("License") == ["MIT"]
    assert "torch>=2.3" in header["Requires-Dist"]
    assert [r for r in header["Requires-Dist"] if re.match(r"torch(?![-_\w])", r)] == ["torch>=2.3"]  # not torch-pruning


def test_installed_wheel_finds_bundled_configs_by_name(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:  # a pure-Python wheel installs by unpacking it into site-packages
        z.extractall(site)
    work = tmp_path / "elsewhere"  # no configs/ here: only the installed copy can answer
    work.mkdir()
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(site)!r})
        import sparsehalo
        from sparsehalo import config
        from sparsehalo.cli import main
        cfg = config.load("fashion_lenet300_halo")  # it `extends` another bundled file
        rc = main(["train", "mnist_lenet300_hallo"])
        print(json.dumps({{"file": sparsehalo.__file__, "version": sparsehalo.__version__,
                           "resolved": str(config.resolve_config("mnist_lenet300_halo")), "dir": str(config.bundled_dir()),
                           "names": config.bundled_configs(), "name": cfg.name, "hash": cfg.hash(), "rc": rc}}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=dict(env, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["file"].startswith(str(site)) and got["dir"] == str(site / "sparsehalo" / "configs")
    assert not (site / "sparsehalo" / "configs").is_symlink()  # real files in the wheel
    assert got["resolved"] == str(site / "sparsehalo" / "configs" / "mnist_lenet300_halo.toml")
    assert got["names"] == [n.removesuffix(".toml") for n in CONFIGS]
    assert got["version"] == VERSION
    assert got["name"] == "fashion_lenet300_halo" and got["hash"] == config_mod.load(ROOT / "configs" / "fashion_lenet300_halo.toml").hash()
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert got["rc"] == 2 and len(err) == 1 and "did you mean mnist_lenet300_halo?" in err[0], err


def test_resolver_in_a_checkout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    by_name = config_mod.load("mnist_lenet300_halo")
    assert config_mod.resolve_config("mnist_lenet300_halo.toml") == config_mod.resolve_config("mnist_lenet300_halo")
    assert by_name.name == "mnist_lenet300_halo"
    assert by_name.hash() == config_mod.load(ROOT / "configs" / "mnist_lenet300_halo.toml").hash()
    # a file of that name in the current directory wins over the bundled config
    (tmp_path / "mnist_lenet300_halo.toml").write_text('name = "mine"\n[train]\nepochs = 3\n')
    mine = config_mod.load("mnist_lenet300_halo.toml")
    assert mine.name == "mine" and mine.train.epochs == 3
    with pytest.raises(ConfigError, match="not found"):  # a path is never looked up among the bundled configs
        config_mod.load("sub/mnist_lenet300_halo.toml")
    with pytest.raises(ConfigError) as info:
        config_mod.load("no_such_config")
    message = str(info.value)
    assert "\n" not in message and "neither a file nor a bundled config" in message
    assert all(n.removesuffix(".toml") in message for n in CONFIGS)
    rc, out, err = cli(capsys, "train", "mnist_lenet5_hallo", "--out", tmp_path / "runs")
    assert rc == 2 and len(err) == 1 and err[0].startswith("sparsehalo: error: config 'mnist_lenet5_hallo'"), err
    assert "did you mean mnist_lenet5_halo?" in err[0] and not (tmp_path / "runs").exists()


def test_one_version_source(monkeypatch):
    assert sparsehalo.__version__ == VERSION
    init = (ROOT / "src" / "sparsehalo" / "__init__.py").read_text()
    assert not re.search(r"__version__\s*=\s*['\"]", init)  # no literal version in the package
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)  # an uninstalled source tree
    assert sparsehalo._version() == VERSION
