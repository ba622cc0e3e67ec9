"""Tests for sparsehalo.data.image_folder: decoding JPEG folder archives and the .npz cache."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from support import shared_path

from sparsehalo.data import DatasetEntry, clear_cache, image_folder, load_dataset
from sparsehalo.data.checksums import file_sha256
from sparsehalo.data.cifar import load_image_folder
from sparsehalo.data.image_folder import image_cache_path
from sparsehalo.data.specs import CIFAR10_CLASSES, CIFAR10_JPEG, CIFAR_MEAN, CIFAR_STD
from sparsehalo.errors import DataError

UNPINNED_JPEG = dataclasses.replace(CIFAR10_JPEG, sha256=None)

pytestmark = pytest.mark.usefixtures("fresh_caches")


def decode_ref(payload: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(payload)).convert("RGB")).transpose(2, 0, 1)


def test_image_folder_decode_labels_and_order(tmp_path, folder_files, folder_colors, write_tar):
    files = folder_files()
    # Written in reverse order: the loader sorts by path, so the tar's order must not matter.
    path = write_tar(tmp_path / "imgs.tar.xz", dict(reversed(list(files.items()))), "w:xz", dirs=("train", "test/cat"))
    arrays = image_folder.decode_image_folder_archive(path, UNPINNED_JPEG)
    train_x, train_y = arrays["train"]
    names = sorted(n for n in files if n.startswith("train/"))
    assert train_x.shape == (6, 3, 32, 32) and train_x.dtype == np.uint8
    assert train_y.tolist() == [CIFAR10_CLASSES.index(n.split("/")[1]) for n in names] == [0, 0, 3, 3, 9, 9]
    for i, n in enumerate(names):
        assert np.array_equal(train_x[i], decode_ref(files[n]))
        # Channels in R, G, B order (JPEG error on near-solid colours is a few levels).
        mean = train_x[i].reshape(3, -1).mean(axis=1)
        assert np.allclose(mean, folder_colors[n.split("/")[1]], atol=4)
    assert arrays["test"][1].tolist() == [0, 3, 9]


def test_image_folder_cache_created_reused_and_rebuilt(tmp_path, monkeypatch, use_dataset, folder_files, write_tar):
    src = tmp_path / "data" / "cifar10-jpeg" / "cifar10-jpeg.tar.xz"
    src.parent.mkdir(parents=True)
    write_tar(src, folder_files(), "w:xz")
    use_dataset("cifar10-jpeg", DatasetEntry(functools.partial(load_image_folder, UNPINNED_JPEG), 10, "t"))

    calls = []
    real_decode = image_folder._decode_image

    def counting(*args):
        calls.append(args[1])
        return real_decode(*args)

    monkeypatch.setattr(image_folder, "_decode_image", counting)
    first = load_dataset("cifar10-jpeg", data_dir=tmp_path / "data")
    assert len(calls) == 9
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    cache = image_cache_path(UNPINNED_JPEG, sha)
    assert cache.is_file() and cache.parent == tmp_path / "xdg-cache" / "sparsehalo" / "cifar10-jpeg"
    assert cache.stat().st_mode & 0o777 == 0o644  # as readable as the archive it came from
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temporary file left
    assert first.name == "cifar10-jpeg" and first.train.mean == CIFAR_MEAN and first.test.std == CIFAR_STD

    # Second load in a fresh process state: from the .npz, no image decoded.
    clear_cache()

    def fail(*args):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(image_folder, "_decode_image", fail)
    second = load_dataset("cifar10-jpeg", data_dir=tmp_path / "data")
    assert torch.equal(second.train.images, first.train.images) and torch.equal(second.test.labels, first.test.labels)

    # A changed archive has another sha256: it is decoded again, into a new cache file.
    write_tar(src, folder_files(extra_train=1), "w:xz")
    clear_cache()
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset("cifar10-jpeg", data_dir=tmp_path / "data")
    monkeypatch.setattr(image_folder, "_decode_image", real_decode)
    third = load_dataset("cifar10-jpeg", data_dir=tmp_path / "data")
    assert len(third.train) == 9
    assert image_cache_path(UNPINNED_JPEG, hashlib.sha256(src.read_bytes()).hexdigest()).is_file()

    # A damaged cache file is ignored and rewritten, not fatal.
    cache.write_bytes(b"not an npz")
    write_tar(src, folder_files(), "w:xz")  # back to the first archive (its sha256 names `cache`)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == sha
    clear_cache()
    again = load_dataset("cifar10-jpeg", data_dir=tmp_path / "data")
    assert torch.equal(again.train.images, first.train.images)
    assert cache.stat().st_size > 1000


def test_unwritable_cache_is_not_fatal(tmp_path, monkeypatch, folder_files, write_tar, caplog):
    src = write_tar(tmp_path / "imgs.tar.xz", folder_files(), "w:xz")
    (tmp_path / "blocked").write_bytes(b"")  # a file where the cache directory should be
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "blocked"))
    arrays = image_folder.load_image_folder_arrays(src, UNPINNED_JPEG)
    assert arrays["train"][0].shape == (6, 3, 32, 32)
    assert "decoded again next time" in caplog.text


def test_image_folder_errors(tmp_path, folder_files, jpeg, write_tar, one_line):
    files = folder_files()
    files["train/kangaroo/0000.jpg"] = jpeg((1, 2, 3))
    path = write_tar(tmp_path / "a.tar.xz", files, "w:xz")
    with pytest.raises(DataError) as exc:
        image_folder.decode_image_folder_archive(path, UNPINNED_JPEG)
    assert "kangaroo" in one_line(exc) and "airplane" in str(exc.value)

    files = folder_files()
    files["test/cat/0001.jpg"] = jpeg((1, 2, 3), size=(32, 30))
    path = write_tar(tmp_path / "b.tar", files, "w")
    with pytest.raises(DataError, match="expected 32x32"):
        image_folder.decode_image_folder_archive(path, UNPINNED_JPEG)

    files = folder_files()
    files["train/cat/0009.jpg"] = b"not a jpeg"
    path = write_tar(tmp_path / "c.tar.gz", files, "w:gz")
    with pytest.raises(DataError, match="cannot decode image"):
        image_folder.decode_image_folder_archive(path, UNPINNED_JPEG)

    # The pinned checksum applies to a file with the pinned name.
    pinned = tmp_path / "d" / "cifar10-jpeg.tar.xz"
    pinned.parent.mkdir()
    write_tar(pinned, folder_files(), "w:xz")
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10-jpeg", data_dir=tmp_path / "d")
    assert "corrupt" in one_line(exc) and "sha256" in str(exc.value)


# ---------------------------------------------------------------------------- shared JPEG archive


def test_shared_jpeg_archive_checksum_and_listing():
    shared_jpeg = shared_path("datasets", "cifar10-jpeg", "cifar10-jpeg.tar.xz")
    assert file_sha256(shared_jpeg) == CIFAR10_JPEG.sha256
    counts = {"train": {}, "test": {}}
    with tarfile.open(shared_jpeg, "r:xz") as tar:
        for member in tar:  # headers only; no image is decoded
            if member.isfile():
                split, cls, name = member.name.split("/")
                assert name.endswith(".jpg")
                counts[split][cls] = counts[split].get(cls, 0) + 1
    assert sorted(counts["train"]) == sorted(counts["test"]) == sorted(CIFAR10_CLASSES)
    assert sum(counts["train"].values()) == 50_000 and sum(counts["test"].values()) == 10_000
    assert set(counts["train"].values()) == {5000} and set(counts["test"].values()) == {1000}
