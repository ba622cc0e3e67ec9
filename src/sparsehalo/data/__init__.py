"""Datasets: a name registry, IDX and CIFAR loading with checksums, downloads and in-memory batching.

>>> splits = load_dataset("mnist", val_size=5000, seed=0)   # doctest: +SKIP
>>> for x, y in splits.train.batches(128, shuffle=True, seed=0, epoch=3):   # doctest: +SKIP
...     ...
>>> cifar = load_dataset("cifar10", augment=True)   # doctest: +SKIP  (random crop + flip on train)

Modules, leaves first (each imports only those above it; none imports :mod:`.download` except
:mod:`.registry`):

* ``specs`` (what each dataset's files are), ``paths`` (where they are looked for), ``checksums``;
* ``idx`` (the IDX format), ``arrays`` (in-memory datasets, batching, validation split),
  ``augment``, ``synthetic``;
* loaders: ``mnist`` (IDX datasets), ``cifar`` (on ``pickle_archive`` and ``image_folder``, which
  share ``archives``);
* ``user`` (a user's own datasets by import path, stacked in memory or streamed);
* ``download`` (verified fetching of a spec's files; leaves only);
* ``registry`` (:data:`DATASETS`, :func:`normalize_name`, :func:`load_dataset`,
  :func:`download_dataset`, :func:`downloadable`).
"""

from __future__ import annotations

from . import checksums as _checksums
from . import cifar as _cifar
from . import mnist as _mnist
from .arrays import ArrayDataset, Augment, Splits, split_validation
from .augment import random_crop_flip
from .cifar import load_cifar, load_image_folder
from .idx import read_idx, write_idx
from .mnist import load_idx_dataset
from .paths import cache_root, data_root
from .registry import (
    DATASETS,
    DatasetEntry,
    download_dataset,
    downloadable,
    load_dataset,
    normalize_name,
)
from .specs import CIFAR10, CIFAR10_JPEG, CIFAR100, FASHION_MNIST, MNIST
from .synthetic import load_synthetic, make_synthetic

__all__ = [
    "ArrayDataset",
    "Augment",
    "CIFAR10",
    "CIFAR100",
    "CIFAR10_JPEG",
    "DATASETS",
    "DatasetEntry",
    "FASHION_MNIST",
    "MNIST",
    "Splits",
    "cache_root",
    "clear_cache",
    "data_root",
    "download_dataset",
    "downloadable",
    "load_cifar",
    "load_dataset",
    "load_idx_dataset",
    "load_image_folder",
    "load_synthetic",
    "make_synthetic",
    "normalize_name",
    "random_crop_flip",
    "read_idx",
    "split_validation",
    "write_idx",
]


def clear_cache() -> None:
    """Forget every decoded file and remembered checksum held in memory (disk caches stay)."""
    _mnist.clear_cache()
    _cifar.clear_cache()
    _checksums.clear_cache()
