"""Datasets: a name registry, IDX loading with checksums, downloads and in-memory batching.

>>> splits = load_dataset("mnist", val_size=5000, seed=0)   # doctest: +SKIP
>>> for x, y in splits.train.batches(128, shuffle=True, seed=0, epoch=3):   # doctest: +SKIP
...     ...
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from typing import Callable

from ..errors import DataError
from .arrays import ArrayDataset, Splits, split_validation
from .download import download_dataset
from .idx import read_idx, write_idx
from .mnist import FASHION_MNIST, MNIST, IDX_DATASETS, cache_root, clear_cache, data_root, load_idx_dataset
from .synthetic import load_synthetic, make_synthetic

__all__ = [
    "ArrayDataset",
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
    """

    loader: Callable[[str | os.PathLike | None, bool], Splits]
    num_classes: int
    description: str
    downloadable: bool = False


DATASETS: dict[str, DatasetEntry] = {
    "mnist": DatasetEntry(
        functools.partial(load_idx_dataset, MNIST), 10, "MNIST handwritten digits, 60k/10k, 1x28x28", True
    ),
    "fashion-mnist": DatasetEntry(
        functools.partial(load_idx_dataset, FASHION_MNIST), 10, "Fashion-MNIST clothing, 60k/10k, 1x28x28", True
    ),
    "synthetic": DatasetEntry(load_synthetic, 10, "tiny generated 10-class 1x28x28 data for tests, 512/256"),
}


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    val_size: int = 0,
    seed: int = 0,
) -> Splits:
    """Load a registered dataset, optionally carving a validation split out of its training set.

    Args:
        name: a key of :data:`DATASETS` (case and ``_``/``-`` insensitive).
        data_dir: directory holding the files or a ``<name>`` sub-directory; None searches
            ``$SPARSEHALO_DATA_DIR``, the download cache, then (MNIST only) the copy in the package.
        download: fetch missing files instead of failing.
        val_size: validation samples taken from train (0: no validation split).
        seed: chooses the validation samples.

    Raises:
        DataError: unknown name, missing or corrupt files, or a bad ``val_size``.
    """
    key = name.strip().lower().replace("_", "-")
    entry = DATASETS.get(key)
    if entry is None:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    splits = entry.loader(data_dir, download)
    if val_size:
        train, val = split_validation(splits.train, val_size, seed)
        splits = replace(splits, train=train, val=val)
    return splits
