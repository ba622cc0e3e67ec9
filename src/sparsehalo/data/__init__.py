"""Datasets: a name registry, IDX and CIFAR loading with checksums, downloads and in-memory batching.

>>> splits = load_dataset("mnist", val_size=5000, seed=0)   # doctest: +SKIP
>>> for x, y in splits.train.batches(128, shuffle=True, seed=0, epoch=3):   # doctest: +SKIP
...     ...
>>> cifar = load_dataset("cifar10", augment=True)   # doctest: +SKIP  (random crop + flip on train)
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from typing import Callable

from ..errors import DataError
from . import cifar as _cifar
from . import mnist as _mnist
from .arrays import Augment, ArrayDataset, Splits, split_validation
from .augment import random_crop_flip
from .cifar import ARCHIVE_DATASETS, CIFAR10, CIFAR10_JPEG, CIFAR100, load_cifar, load_image_folder
from .download import download_dataset
from .idx import read_idx, write_idx
from .mnist import FASHION_MNIST, MNIST, IDX_DATASETS, cache_root, data_root, load_idx_dataset
from .synthetic import load_synthetic, make_synthetic

__all__ = [
    "ARCHIVE_DATASETS",
    "ArrayDataset",
    "Augment",
    "DATASETS",
    "DatasetEntry",
    "IDX_DATASETS",
    "Splits",
    "cache_root",
    "clear_cache",
    "data_root",
    "download_dataset",
    "load_dataset",
    "make_synthetic",
    "random_crop_flip",
    "read_idx",
    "split_validation",
    "write_idx",
]


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset.

    Attributes:
        loader: ``loader(data_dir, download) -> Splits`` without a validation split.
        num_classes: number of label values.
        description: one line for ``--help`` and listings.
        downloadable: whether ``sparsehalo download NAME`` applies.
        augment: the dataset's standard training augmentation, applied by
            ``load_dataset(..., augment=True)``; None when it has none.
    """

    loader: Callable[[str | os.PathLike | None, bool], Splits]
    num_classes: int
    description: str
    downloadable: bool = False
    augment: Augment | None = None


DATASETS: dict[str, DatasetEntry] = {
    "mnist": DatasetEntry(
        functools.partial(load_idx_dataset, MNIST), 10, "MNIST handwritten digits, 60k/10k, 1x28x28", True
    ),
    "fashion-mnist": DatasetEntry(
        functools.partial(load_idx_dataset, FASHION_MNIST), 10, "Fashion-MNIST clothing, 60k/10k, 1x28x28", True
    ),
    "synthetic": DatasetEntry(load_synthetic, 10, "tiny generated 10-class 1x28x28 data for tests, 512/256"),
    "cifar10": DatasetEntry(
        functools.partial(load_cifar, CIFAR10, fallback=CIFAR10_JPEG),
        10,
        "CIFAR-10 (official python archive, else the cifar10-jpeg copy), 50k/10k, 3x32x32",
        True,
        random_crop_flip,
    ),
    "cifar10-jpeg": DatasetEntry(
        functools.partial(load_image_folder, CIFAR10_JPEG),
        10,
        "CIFAR-10 as JPEG re-encodings (offline copy, lossy), 50k/10k, 3x32x32",
        False,
        random_crop_flip,
    ),
    "cifar100": DatasetEntry(
        functools.partial(load_cifar, CIFAR100), 100, "CIFAR-100 fine labels, 50k/10k, 3x32x32", True, random_crop_flip
    ),
}


def clear_cache() -> None:
    """Forget every decoded file held in memory (the next load reads from disk; disk caches stay)."""
    _mnist.clear_cache()
    _cifar.clear_cache()


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    val_size: int = 0,
    seed: int = 0,
    augment: bool = False,
) -> Splits:
    """Load a registered dataset, optionally carving a validation split out of its training set.

    Args:
        name: a key of :data:`DATASETS` (case and ``_``/``-`` insensitive).
        data_dir: directory holding the files or a ``<name>`` sub-directory; None searches
            ``$SPARSEHALO_DATA_DIR``, the download cache, then (MNIST only) the copy in the package.
        download: fetch missing files instead of failing.
        val_size: validation samples taken from train (0: no validation split).
        seed: chooses the validation samples.
        augment: set the dataset's standard augmentation (CIFAR: random crop after 4-pixel zero
            padding, random horizontal flip) on the training split; validation and test are never
            augmented.

    Raises:
        DataError: unknown name, missing or corrupt files, a bad ``val_size``, or ``augment`` for a
            dataset without a standard augmentation.
    """
    key = name.strip().lower().replace("_", "-")
    entry = DATASETS.get(key)
    if entry is None:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    if augment and entry.augment is None:
        have = ", ".join(k for k, e in DATASETS.items() if e.augment is not None)
        raise DataError(f"dataset '{key}' has no standard augmentation; augment=True applies to: {have}")
    splits = entry.loader(data_dir, download)
    if val_size:
        train, val = split_validation(splits.train, val_size, seed)
        splits = replace(splits, train=train, val=val)
    if augment:
        # Only the training split: validation and test must measure the unaltered images.
        splits = replace(splits, train=splits.train.with_augment(entry.augment))
    return splits
