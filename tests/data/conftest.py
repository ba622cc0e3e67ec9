"""Fixtures for the data tests: isolated data locations, a registry swap, and builders of fake files.

The builders (tiny IDX datasets, CIFAR-style archives, JPEG folders) are plain functions offered as
fixtures of the same name, so a test asks for ``write_cifar10`` and calls ``write_cifar10(path)``.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sparsehalo.data import registry
from sparsehalo.data.idx import encode_idx, write_idx
from sparsehalo.data.specs import (
    CIFAR10,
    CIFAR10_CLASSES,
    FASHION_MNIST,
    MNIST,
    IdxDatasetSpec,
)
from sparsehalo.registry import Registry


@pytest.fixture(autouse=True)
def _isolated_locations(tmp_path, monkeypatch):
    """Keep the user's data dir, cache and mirror settings out of every test."""
    monkeypatch.delenv("SPARSEHALO_DATA_DIR", raising=False)
    for spec in (MNIST, FASHION_MNIST, CIFAR10):
        monkeypatch.delenv(spec.mirror_env, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def use_dataset(monkeypatch):
    """``use_dataset(name, entry)``: register (or replace) a dataset for the duration of one test."""

    def use(name: str, entry: registry.DatasetEntry) -> None:
        table: Registry[registry.DatasetEntry] = Registry("dataset")
        for key, old in registry.DATASETS.items():
            table.add(key, entry if key == name else old)
        if name not in table:
            table.add(name, entry)
        # load_dataset and download_dataset read the module's table at call time.
        monkeypatch.setattr(registry, "DATASETS", table)

    return use


def _provide(fn):
    """Offer the helper ``fn`` to the tests of this folder as a fixture of the same name."""

    @pytest.fixture(name=fn.__name__)
    def fixture():
        return fn

    return fixture


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# --------------------------------------------------------------------------------- tiny IDX dataset


def tiny_tensors(n_train=20, n_test=10):
    g = torch.Generator().manual_seed(7)
    return {
        "train-images-idx3-ubyte": torch.randint(0, 256, (n_train, 28, 28), generator=g, dtype=torch.uint8),
        "train-labels-idx1-ubyte": torch.arange(n_train, dtype=torch.uint8) % 10,
        "t10k-images-idx3-ubyte": torch.randint(0, 256, (n_test, 28, 28), generator=g, dtype=torch.uint8),
        "t10k-labels-idx1-ubyte": torch.arange(n_test, dtype=torch.uint8) % 10,
    }


def tiny_spec(tensors, name="tiny") -> IdxDatasetSpec:
    sha = {stem: hashlib.sha256(encode_idx(t)).hexdigest() for stem, t in tensors.items()}
    return IdxDatasetSpec(
        name=name, sha256=sha, default_mirror="http://127.0.0.1:9/", mirror_env="SPARSEHALO_TINY_MIRROR"
    )


def write_tiny(directory: Path, tensors, compress=True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stem, t in tensors.items():
        write_idx(directory / (f"{stem}.gz" if compress else stem), t, gzip=compress)


# ------------------------------------------------------------------------------ fake CIFAR archives


class _Py2Pickler(pickle._Pickler):
    """Writes strings the way Python 2's cPickle wrote its ``str``: as byte strings (BINSTRING).

    The official CIFAR pickles were made that way, so this exercises the same opcodes, including
    the numpy dtype state given as byte strings.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        n = len(raw)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1 (which made the real files) lives at numpy.core; numpy 2 pickles name numpy._core.
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz", dirs: tuple[str, ...] = ()) -> Path:
    with tarfile.open(path, mode) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def layout_image() -> np.ndarray:
    """One CIFAR row (3072 bytes): red = 8 * row, green = 8 * column, blue = 7."""
    y, x = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    return np.concatenate([(8 * y).ravel(), (8 * x).ravel(), np.full(1024, 7)]).astype(np.uint8)


def cifar10_content(n=3, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    batches = {}
    for i in range(1, 6):
        batches[f"data_batch_{i}"] = (rng.integers(0, 256, (n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, n)])
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test[0] = layout_image()
    batches["test_batch"] = (test, [int(v) for v in rng.integers(0, 10, n_test)])
    return batches


def write_cifar10(path: Path, content=None) -> Path:
    content = content or cifar10_content()
    files = {}
    for member, (x, y) in content.items():
        d = {"batch_label": f"batch {member}", "labels": y, "data": x, "filenames": [f"img{i}.png" for i in range(len(y))]}
        files[f"cifar-10-batches-py/{member}"] = py2_pickle(d)
    files["cifar-10-batches-py/batches.meta"] = py2_pickle(
        {"num_cases_per_batch": 3, "label_names": list(CIFAR10_CLASSES), "num_vis": 3072}
    )
    files["cifar-10-batches-py/readme.html"] = b"<html></html>"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_tar(path, files, dirs=("cifar-10-batches-py",))


def write_cifar100(path: Path):
    # Python 3 pickles with bytes keys, as the brief's b"data"/b"fine_labels" layout.
    rng = np.random.default_rng(1)
    content = {}
    files = {}
    for member, n in (("train", 6), ("test", 3)):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        coarse = [f // 5 for f in fine]
        content[member] = (x, fine, coarse)
        d = {b"filenames": [b"a.png"] * n, b"batch_label": b"x", b"fine_labels": fine, b"coarse_labels": coarse, b"data": x}
        files[f"cifar-100-python/{member}"] = pickle.dumps(d, protocol=3)
    names = [f"class{i:02d}".encode() for i in range(100)]
    files["cifar-100-python/meta"] = pickle.dumps({b"fine_label_names": names, b"coarse_label_names": names[:20]}, protocol=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tar(path, files)
    return content


# --------------------------------------------------------------------------- fake image folders

COLORS = {"airplane": (200, 30, 40), "cat": (20, 180, 60), "truck": (40, 60, 220)}


def jpeg(color, size=(32, 32), seed=0) -> bytes:
    # A solid colour plus a little texture: JPEG keeps solid colours almost exactly, so the channel
    # order can be checked, and the texture makes images differ.
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(color)[None, None, :] + rng.integers(-3, 4, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="JPEG")
    return buf.getvalue()


def folder_files(extra_train=0) -> dict[str, bytes]:
    files = {}
    seed = 0
    for cls, color in COLORS.items():
        for i in range(2 + extra_train):
            files[f"train/{cls}/{i:04d}.jpg"] = jpeg(color, seed=(seed := seed + 1))
        files[f"test/{cls}/0000.jpg"] = jpeg(color, seed=(seed := seed + 1))
    return files


@pytest.fixture
def folder_colors():
    """The colour of each class's images in :func:`folder_files`."""
    return COLORS


# The helpers above, as fixtures.
one_line_fixture = _provide(one_line)
tiny_tensors_fixture = _provide(tiny_tensors)
tiny_spec_fixture = _provide(tiny_spec)
write_tiny_fixture = _provide(write_tiny)
py2_pickle_fixture = _provide(py2_pickle)
write_tar_fixture = _provide(write_tar)
cifar10_content_fixture = _provide(cifar10_content)
write_cifar10_fixture = _provide(write_cifar10)
write_cifar100_fixture = _provide(write_cifar100)
jpeg_fixture = _provide(jpeg)
folder_files_fixture = _provide(folder_files)


@pytest.fixture
def fresh_caches():
    """Start and end a test with empty in-memory caches (decoded files, checksums)."""
    from sparsehalo.data import clear_cache

    clear_cache()
    yield
    clear_cache()
