"""Tests for sparsehalo.data.paths: the search order, the cache root, locating complete file sets."""

from __future__ import annotations

from pathlib import Path

import sparsehalo.data as data
from sparsehalo.data import paths
from sparsehalo.data.mnist import locate
from sparsehalo.data.specs import CIFAR10, FASHION_MNIST, IDX_FILES, MNIST, VENDORED_DIR


def test_search_order(tmp_path, monkeypatch):
    env = tmp_path / "env"
    (env / "mnist").mkdir(parents=True)
    for stem in IDX_FILES:
        (env / "mnist" / f"{stem}.gz").symlink_to(VENDORED_DIR / f"{stem}.gz")
    monkeypatch.setenv("SPARSEHALO_DATA_DIR", str(env))
    assert data.data_root() == env
    assert [p.parent for p in locate(MNIST)] == [env / "mnist"] * 4
    dirs = paths.dataset_dirs(MNIST)
    assert dirs == [env, env / "mnist", tmp_path / "xdg-cache" / "sparsehalo" / "mnist", VENDORED_DIR]
    assert paths.dataset_dirs(FASHION_MNIST, "/d") == [Path("/d"), Path("/d/fashion-mnist")]
    monkeypatch.setenv("SPARSEHALO_DATA_DIR", "")
    assert data.data_root() is None


def test_cache_root(tmp_path, monkeypatch):
    assert data.cache_root() == tmp_path / "xdg-cache" / "sparsehalo"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_root() == tmp_path / "home" / ".cache" / "sparsehalo"
    # Archives have no copy in the package: the cache is the last place searched.
    assert paths.dataset_dirs(CIFAR10)[-1] == tmp_path / "home" / ".cache" / "sparsehalo" / "cifar10"


def test_locate_prefers_first_complete_directory_and_first_name(tmp_path):
    choices = (("a", "a.gz"), ("b",))
    first, second = tmp_path / "1", tmp_path / "2"
    for d in (first, second):
        d.mkdir()
    (first / "a").write_bytes(b"")  # incomplete: no "b"
    for name in ("a", "a.gz", "b"):
        (second / name).write_bytes(b"")
    assert paths.files_in(first, choices) is None
    assert paths.locate(choices, [first, second]) == [second / "a", second / "b"]  # raw before .gz
    (second / "a").unlink()
    assert paths.locate(choices, [first, second]) == [second / "a.gz", second / "b"]
    assert paths.locate(choices, [first]) is None
    assert paths.find_dataset(MNIST, tmp_path / "nowhere") is None


def test_not_found_message_with_and_without_download_hint():
    dirs = [Path("/x"), Path("/x/d")]
    with_hint = paths.not_found_message("d", "f.tar", dirs, "d")
    assert with_hint == (
        "dataset 'd' not found: expected f.tar in one of: /x, /x/d; fix: pass --data-dir DIR, "
        "set SPARSEHALO_DATA_DIR=DIR, or run 'sparsehalo download d' (download=True)"
    )
    assert paths.not_found_message("d", "f.tar", dirs) == with_hint.split(", or run")[0]
