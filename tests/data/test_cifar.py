"""Tests for sparsehalo.data.cifar: finding and loading CIFAR archives, the JPEG fallback, augmentation.

Everything runs on small archives the tests build in tmp_path.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from sparsehalo.data import DatasetEntry, load_dataset, split_validation
from sparsehalo.data.augment import random_crop_flip
from sparsehalo.data.cifar import load_cifar
from sparsehalo.data.specs import (
    CIFAR10,
    CIFAR10_CLASSES,
    CIFAR10_JPEG,
    CIFAR_MEAN,
    CIFAR_STD,
)
from sparsehalo.errors import DataError

UNPINNED_JPEG = dataclasses.replace(CIFAR10_JPEG, sha256=None)

pytestmark = pytest.mark.usefixtures("fresh_caches")


def test_cifar10_round_trip_and_layout(tmp_path, cifar10_content, write_cifar10):
    content = cifar10_content()
    write_cifar10(tmp_path / "d" / "cifar-10-python.tar.gz", content)
    splits = load_dataset("cifar10", data_dir=tmp_path / "d")

    assert splits.name == "cifar10" and splits.num_classes == 10 and splits.classes == CIFAR10_CLASSES
    assert splits.source == str(tmp_path / "d" / "cifar-10-python.tar.gz")
    train_x = np.concatenate([content[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_y = sum((content[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert splits.train.images.shape == (15, 3, 32, 32) and splits.train.images.dtype == torch.uint8
    assert splits.train.labels.dtype == torch.int64
    assert splits.train.labels.tolist() == train_y
    assert splits.test.labels.tolist() == content["test_batch"][1]
    # Every pixel, from the 3072-byte rows: R plane, G plane, B plane, each row-major.
    for n in (0, 7, 14):
        for c, y, x in ((0, 0, 0), (1, 5, 31), (2, 31, 3), (0, 17, 9)):
            assert int(splits.train.images[n, c, y, x]) == int(train_x[n, c * 1024 + y * 32 + x])
    # Semantic layout check on a known image: red varies along rows, green along columns.
    img = splits.test.images[0]
    assert torch.equal(img[0, :, 0], torch.arange(32, dtype=torch.uint8) * 8)
    assert torch.equal(img[0, 3], torch.full((32,), 24, dtype=torch.uint8))
    assert torch.equal(img[1, 0], torch.arange(32, dtype=torch.uint8) * 8)
    assert bool((img[2] == 7).all())
    assert splits.train.mean == CIFAR_MEAN and splits.train.std == CIFAR_STD
    assert splits.test.mean == CIFAR_MEAN and splits.test.std == CIFAR_STD


def test_cifar100_uses_fine_labels(tmp_path, write_cifar100):
    content = write_cifar100(tmp_path / "cifar100" / "cifar-100-python.tar.gz")
    splits = load_dataset("cifar100", data_dir=tmp_path)  # found in the <name> sub-directory
    assert splits.num_classes == 100 and len(splits.classes) == 100 and splits.classes[7] == "class07"
    x, fine, coarse = content["train"]
    assert splits.train.labels.tolist() == fine != coarse
    assert np.array_equal(splits.train.images.numpy().reshape(6, 3072), x)
    assert splits.test.labels.tolist() == content["test"][1]


def test_missing_files_message(tmp_path, monkeypatch, one_line):
    where = tmp_path / "nowhere"
    for name, files in (
        ("cifar10", ["cifar-10-python.tar.gz", "cifar10-jpeg.tar.xz", "sparsehalo download cifar10"]),
        ("cifar100", ["cifar-100-python.tar.gz", "sparsehalo download cifar100"]),
        ("cifar10-jpeg", ["cifar10-jpeg.tar.xz"]),
    ):
        with pytest.raises(DataError) as exc:
            load_dataset(name, data_dir=where)
        msg = one_line(exc)
        for part in (*files, str(where), "--data-dir", "SPARSEHALO_DATA_DIR"):
            assert part in msg, (name, part)
    monkeypatch.setenv("SPARSEHALO_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError) as exc:
        load_dataset("cifar100")
    msg = one_line(exc)
    assert str(tmp_path / "env" / "cifar100") in msg and str(tmp_path / "xdg-cache" / "sparsehalo" / "cifar100") in msg


def test_missing_files_message_text(tmp_path):
    # The exact wording, pinned: the fallback's own sub-directory is searched too, once per directory.
    d = tmp_path / "x"
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", data_dir=d)
    assert str(exc.value) == (
        f"dataset 'cifar10' not found: expected cifar-10-python.tar.gz or cifar10-jpeg.tar.xz in one of: "
        f"{d}, {d / 'cifar10'}, {d / 'cifar10-jpeg'}; fix: pass --data-dir DIR, set SPARSEHALO_DATA_DIR=DIR, "
        f"or run 'sparsehalo download cifar10' (download=True)"
    )
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10-jpeg", data_dir=d)
    assert str(exc.value) == (
        f"dataset 'cifar10-jpeg' not found: expected cifar10-jpeg.tar.xz in one of: {d}, {d / 'cifar10-jpeg'}; "
        "fix: pass --data-dir DIR, set SPARSEHALO_DATA_DIR=DIR "
        "(it cannot be downloaded; 'sparsehalo download cifar10' fetches the official files)"
    )


def test_cifar10_falls_back_to_jpeg_and_prefers_python(
    tmp_path, monkeypatch, use_dataset, write_tar, folder_files, write_cifar10
):
    use_dataset("cifar10", DatasetEntry(functools.partial(load_cifar, CIFAR10, fallback=UNPINNED_JPEG), 10, "t"))
    root = tmp_path / "root"
    (root / "cifar10-jpeg").mkdir(parents=True)
    jpeg_path = write_tar(root / "cifar10-jpeg" / "cifar10-jpeg.tar.xz", folder_files(), "w:xz")
    monkeypatch.setenv("SPARSEHALO_DATA_DIR", str(root))
    splits = load_dataset("cifar10")
    assert splits.name == "cifar10-jpeg" and splits.source == str(jpeg_path) and len(splits.train) == 6

    write_cifar10(root / "cifar10" / "cifar-10-python.tar.gz")
    splits = load_dataset("cifar10")
    assert splits.name == "cifar10" and len(splits.train) == 15


def test_load_dataset_augment_only_on_train(tmp_path, write_cifar10):
    write_cifar10(tmp_path / "cifar-10-python.tar.gz")
    splits = load_dataset("cifar10", data_dir=tmp_path, augment=True, val_size=5, seed=0)
    assert splits.train.augment is random_crop_flip
    assert splits.val.augment is None and splits.test.augment is None
    # Validation batches are the stored images, normalized, unaltered.
    (xv, yv), = splits.val.batches(5)
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    assert torch.allclose(xv, (splits.val.images.float() / 255 - mean) / std)
    assert load_dataset("cifar10", data_dir=tmp_path).train.augment is None
    assert load_dataset("synthetic").train.augment is None
    with pytest.raises(DataError, match="no standard augmentation"):
        load_dataset("synthetic", augment=True)
    _, val = split_validation(splits.train, 3, 0)
    assert val.augment is None


def test_in_process_cache_shares_tensors_not_datasets(tmp_path, write_cifar10):
    write_cifar10(tmp_path / "cifar-10-python.tar.gz")
    a = load_dataset("cifar10", data_dir=tmp_path, augment=True)
    b = load_dataset("cifar10", data_dir=tmp_path)
    assert a.train.images.data_ptr() == b.train.images.data_ptr()  # read once per process
    assert a.train is not b.train and b.train.augment is None  # setting augment on one left the other
