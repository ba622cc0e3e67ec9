"""Tests for sparsehalo.data.registry and the data package's structure.

Covers the one dataset table, the one name normalization, loading and downloading by name, and the
import graph of ``sparsehalo/data`` (read with ``ast``, imports inside functions included): no cycle,
the leaf modules import nothing from the package, and no loader imports the downloader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sparsehalo.data as data
from sparsehalo.data import (
    DATASETS,
    download_dataset,
    downloadable,
    load_dataset,
    normalize_name,
    registry,
)
from sparsehalo.data.specs import FASHION_MNIST
from sparsehalo.errors import DataError
from sparsehalo.registry import Registry

PACKAGE = Path(data.__file__).resolve().parent
LEAVES = {"specs", "paths", "checksums"}
LOADERS = {"idx", "mnist", "cifar", "pickle_archive", "image_folder", "archives", "arrays", "augment", "synthetic", "user"}


def test_unknown_dataset(one_line):
    with pytest.raises(DataError) as exc:
        load_dataset("cifar-1000")
    assert "mnist" in one_line(exc)
    assert str(exc.value) == (
        "unknown dataset 'cifar-1000'; choose one of: mnist, fashion-mnist, synthetic, cifar10, cifar10-jpeg, cifar100"
    )


def test_one_registry_of_every_dataset():
    assert isinstance(DATASETS, Registry) and DATASETS is registry.DATASETS
    assert DATASETS.names() == ["mnist", "fashion-mnist", "synthetic", "cifar10", "cifar10-jpeg", "cifar100"]
    for name, entry in DATASETS.items():
        assert entry.num_classes in (10, 100) and entry.description
        if entry.spec is not None:
            assert entry.spec.name == name  # files go to <root>/<name>, where the loader looks


def test_downloadable_names_are_the_cli_choices():
    assert downloadable() == ["mnist", "fashion-mnist", "cifar10", "cifar100"]
    assert all(DATASETS[n].downloadable for n in downloadable())
    assert not DATASETS["synthetic"].downloadable and not DATASETS["cifar10-jpeg"].downloadable


@pytest.mark.parametrize(
    "spelled, key",
    [
        ("fashion-mnist", "fashion-mnist"),
        ("fashion_mnist", "fashion-mnist"),
        ("Fashion-MNIST", "fashion-mnist"),
        (" FASHION_MNIST\n", "fashion-mnist"),
        ("CIFAR10_jpeg", "cifar10-jpeg"),
        ("Synthetic", "synthetic"),
    ],
)
def test_normalize_name(spelled, key):
    assert normalize_name(spelled) == key


def test_load_and_download_use_the_same_normalization(monkeypatch, tmp_path):
    assert load_dataset(" Synthetic ").name == "synthetic"
    calls = []

    def fake_download(spec, dest, url, **kw):
        calls.append((spec, dest, url))
        return dest

    monkeypatch.setattr(registry, "download_files", fake_download)
    assert download_dataset("Fashion_MNIST", tmp_path, "http://m/") == tmp_path
    assert calls == [(FASHION_MNIST, tmp_path, "http://m/")]
    # The message names the dataset as the user wrote it.
    with pytest.raises(DataError) as exc:
        download_dataset("Synthetic")
    names = "cifar10, cifar100, fashion-mnist, mnist"
    assert str(exc.value) == f"cannot download 'Synthetic': downloadable datasets are {names}"


def test_download_flag_is_ignored_for_datasets_that_cannot_be_downloaded(monkeypatch):
    monkeypatch.setattr(registry, "download_files", lambda *a, **kw: pytest.fail("nothing to download"))
    assert len(load_dataset("synthetic", download=True).train) == 512


def _calls_replace_underscore(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "replace"
            and [a.value for a in node.args if isinstance(a, ast.Constant)] == ["_", "-"]
        ):
            return True
    return False


def test_names_are_normalized_in_one_place():
    normalizing = sorted(p.stem for p in PACKAGE.glob("*.py") if _calls_replace_underscore(ast.parse(p.read_text())))
    assert normalizing == ["registry"]


# ------------------------------------------------------------------------------------ import graph


def data_imports(path: Path) -> set[str]:
    """Modules of sparsehalo.data that ``path`` imports anywhere (top level, functions, TYPE_CHECKING)."""
    here = path.stem
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from . import x / from .x import y
                if node.module is None:
                    found.update(a.name for a in node.names)
                else:
                    found.add(node.module.split(".")[0])
            elif node.level == 0 and (node.module or "").startswith("sparsehalo.data"):
                rest = node.module.split(".")[2:]
                found.update([rest[0]] if rest else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[:2] == ["sparsehalo", "data"] and len(parts) > 2:
                    found.add(parts[2])
    found.discard(here)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return {p.stem: data_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def test_import_graph_reader_sees_every_kind_of_import(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "from . import a\nfrom .b import x\nimport sparsehalo.data.c\nfrom sparsehalo.data import d\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .e import y\n"
        "def f():\n    from .g import z\nfrom ..errors import DataError\n"
    )
    assert data_imports(src) == {"a", "b", "c", "d", "e", "g"}


def test_data_package_has_no_import_cycle(graph):
    assert set(graph) == LEAVES | LOADERS | {"download", "registry"}, "a new module: classify it above"
    state: dict[str, str] = {}

    def visit(mod: str, stack: list[str]) -> None:
        state[mod] = "open"
        for dep in sorted(graph.get(mod, ())):
            assert state.get(dep) != "open", f"import cycle: {' -> '.join(stack + [mod, dep])}"
            if dep not in state:
                visit(dep, stack + [mod])
        state[mod] = "done"

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [])


def test_leaves_import_nothing_from_the_package(graph):
    for leaf in LEAVES:
        assert graph[leaf] == set(), leaf


def test_no_loader_imports_download_and_download_imports_leaves_only(graph):
    def reachable(mod: str) -> set[str]:
        seen, todo = set(), [mod]
        while todo:
            for dep in graph[todo.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    for loader in LOADERS:
        assert "download" not in reachable(loader), loader
        assert "registry" not in reachable(loader), loader
    assert graph["download"] <= LEAVES
    assert [m for m, deps in graph.items() if "download" in deps] == ["registry"]


def test_public_names():
    for name in data.__all__:
        assert getattr(data, name) is not None, name
    assert {"ARCHIVE_DATASETS", "IDX_DATASETS"}.isdisjoint(data.__all__)
