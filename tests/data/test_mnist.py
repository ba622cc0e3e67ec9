"""Tests for sparsehalo.data.mnist: the real MNIST / Fashion-MNIST files, their checksums and loading."""

from __future__ import annotations

import gzip
import hashlib

import pytest
import torch
from support import ROOT, shared_path

from sparsehalo.data import Splits, load_dataset
from sparsehalo.data.mnist import load_idx_dataset
from sparsehalo.data.specs import IDX_FILES, MNIST, VENDORED_DIR, VENDORED_GZ_SHA256
from sparsehalo.errors import DataError, SparsehaloError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_vendored_gz_checksums():
    assert set(VENDORED_GZ_SHA256) == {f"{stem}.gz" for stem in IDX_FILES}
    assert sorted(p.name for p in VENDORED_DIR.glob("*.gz")) == sorted(VENDORED_GZ_SHA256)
    for name, expected in VENDORED_GZ_SHA256.items():
        assert hashlib.sha256((VENDORED_DIR / name).read_bytes()).hexdigest() == expected, name


@pytest.fixture(scope="module")
def mnist() -> Splits:
    return load_dataset("mnist", data_dir=VENDORED_DIR)


def test_mnist_shapes_counts_and_mean(mnist):
    assert mnist.name == "mnist" and mnist.num_classes == 10 and mnist.val is None
    assert mnist.train.images.shape == (60000, 1, 28, 28) and mnist.train.images.dtype == torch.uint8
    assert mnist.train.labels.shape == (60000,) and mnist.train.labels.dtype == torch.int64
    assert mnist.test.images.shape == (10000, 1, 28, 28) and mnist.test.labels.shape == (10000,)
    assert torch.bincount(mnist.train.labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    mean = mnist.train.images.sum(dtype=torch.int64).item() / mnist.train.images.numel() / 255
    assert mean == pytest.approx(0.1307, abs=1e-3)


def test_mnist_vendored_fallback_and_in_process_cache(mnist):
    # Nothing in $SPARSEHALO_DATA_DIR or the cache (fixture), so the package copy is used.
    again = load_dataset("mnist")
    assert again.train.images.data_ptr() == mnist.train.images.data_ptr()  # decoded once per process
    assert torch.equal(again.test.labels, mnist.test.labels)


def test_fashion_mnist_via_data_dir_and_env(monkeypatch):
    fashion_dir = shared_path("datasets", "fashion-mnist")
    # data_dir as the parent (looked up in <data_dir>/fashion-mnist) and as the folder itself; the
    # parent is spelled with "..", as a user may type it.
    parent = ROOT / ".." / fashion_dir.relative_to(ROOT.parent).parent
    for data_dir in (parent, fashion_dir):
        fm = load_dataset("fashion-mnist", data_dir=data_dir)
        assert fm.train.images.shape == (60000, 1, 28, 28) and fm.test.images.shape == (10000, 1, 28, 28)
        assert torch.bincount(fm.train.labels).tolist() == [6000] * 10
        assert torch.bincount(fm.test.labels).tolist() == [1000] * 10
    monkeypatch.setenv("SPARSEHALO_DATA_DIR", str(fashion_dir.parent))
    fm_env = load_dataset("Fashion_MNIST")
    assert torch.equal(fm_env.train.labels, fm.train.labels)


def test_missing_dataset_message(tmp_path, monkeypatch, one_line):
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir=tmp_path / "nowhere")
    msg = one_line(exc)
    for stem in IDX_FILES:
        assert stem in msg
    for part in (str(tmp_path / "nowhere"), "--data-dir", "SPARSEHALO_DATA_DIR", "sparsehalo download mnist"):
        assert part in msg

    # Without data_dir: env dirs and the cache are listed; Fashion-MNIST has no vendored copy.
    monkeypatch.setenv("SPARSEHALO_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(SparsehaloError) as exc:
        load_dataset("fashion-mnist")
    msg = one_line(exc)
    assert str(tmp_path / "env" / "fashion-mnist") in msg
    assert str(tmp_path / "xdg-cache" / "sparsehalo" / "fashion-mnist") in msg


def test_partial_directory_is_not_used(tmp_path):
    (tmp_path / "t10k-labels-idx1-ubyte.gz").symlink_to(VENDORED_DIR / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="not found"):
        load_dataset("mnist", data_dir=tmp_path)


def test_corrupt_copy_fails_checksum(tmp_path, one_line):
    for stem in IDX_FILES[:3]:
        (tmp_path / f"{stem}.gz").symlink_to(VENDORED_DIR / f"{stem}.gz")
    raw = bytearray(gzip.decompress((VENDORED_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # still a valid label, so only the checksum can notice
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir=tmp_path)
    msg = one_line(exc)
    assert str(bad) in msg and "corrupt" in msg
    assert MNIST.sha256["t10k-labels-idx1-ubyte"][:12] in msg
    assert hashlib.sha256(bytes(raw)).hexdigest()[:12] in msg


def test_corrupt_copy_fails_even_with_download(tmp_path, one_line):
    # download=True fetches only what is missing everywhere: a corrupt copy that is found is reported,
    # not silently replaced (and no network is touched: the default mirror is never contacted).
    for stem in IDX_FILES[:3]:
        (tmp_path / f"{stem}.gz").symlink_to(VENDORED_DIR / f"{stem}.gz")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00"))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", data_dir=tmp_path, download=True)
    assert "corrupt" in one_line(exc)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{stem}.gz" for stem in IDX_FILES)


def test_label_and_count_validation(tmp_path, tiny_tensors, tiny_spec, write_tiny):
    tensors = tiny_tensors()
    tensors["t10k-labels-idx1-ubyte"] = torch.arange(9, dtype=torch.uint8)  # 9 labels for 10 images
    write_tiny(tmp_path / "a", tensors)
    with pytest.raises(DataError, match="10 images but .* 9 labels"):
        load_idx_dataset(tiny_spec(tensors), tmp_path / "a")

    tensors = tiny_tensors()
    tensors["train-labels-idx1-ubyte"][3] = 10
    write_tiny(tmp_path / "b", tensors, compress=False)
    with pytest.raises(DataError, match=r"expected \[0, 9\]"):
        load_idx_dataset(tiny_spec(tensors), tmp_path / "b")


def test_other_datasets_file_is_named_not_called_corrupt(tmp_path, one_line):
    # MNIST's files where Fashion-MNIST is asked for (a data_dir pointing at the wrong folder): the message
    # names whose file it is and where to point, and never advises deleting a good file.
    before = sorted(p.name for p in VENDORED_DIR.iterdir())
    with pytest.raises(DataError) as exc:
        load_dataset("fashion-mnist", data_dir=VENDORED_DIR)
    msg = one_line(exc)
    assert "is mnist's train-images-idx3-ubyte, not fashion-mnist's" in msg
    assert "delete" not in msg and "corrupt" not in msg
    assert sorted(p.name for p in VENDORED_DIR.iterdir()) == before
