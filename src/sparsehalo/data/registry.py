"""The datasets by name: one registry, one name normalization, loading and downloading by name.

Every dataset is one :class:`DatasetEntry` in :data:`DATASETS`.  Names are matched after
:func:`normalize_name` (``"Fashion_MNIST"`` -> ``"fashion-mnist"``), the only place where names
are normalized.  :func:`load_dataset` is where the loaders and the downloader meet: the loaders
(``mnist``, ``cifar``, ``synthetic``) never import :mod:`sparsehalo.data.download`; when a download
is asked for and the files are nowhere on the search path, this module fetches them first, then
calls the loader.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import DataError
from ..imports import is_import_path
from ..registry import Registry
from .arrays import Augment, Splits, split_validation
from .augment import random_crop_flip
from .cifar import load_cifar, load_image_folder
from .download import DEFAULT_TIMEOUT_S, download_files
from .mnist import load_idx_dataset
from .paths import find_dataset
from .specs import CIFAR10, CIFAR10_JPEG, CIFAR100, FASHION_MNIST, MNIST, DownloadSpec
from .synthetic import load_synthetic
from .user import load_user_dataset

Loader = Callable[[str | os.PathLike | None], Splits]
"""``loader(data_dir) -> Splits`` without a validation split; raises DataError when files are missing."""


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset.

    Attributes:
        loader: ``loader(data_dir) -> Splits`` without a validation split (never downloads).
        num_classes: number of label values.
        description: one line for ``--help`` and listings.
        spec: the files ``sparsehalo download NAME`` fetches, or None when the dataset cannot be
            downloaded.
        augment: the dataset's standard training augmentation, applied by
            ``load_dataset(..., augment=True)``; None when it has none.
    """

    loader: Loader
    num_classes: int
    description: str
    spec: DownloadSpec | None = None
    augment: Augment | None = None

    @property
    def downloadable(self) -> bool:
        """Whether ``sparsehalo download NAME`` applies."""
        return self.spec is not None


DATASETS: Registry[DatasetEntry] = Registry("dataset")

DATASETS.add(
    "mnist",
    DatasetEntry(
        functools.partial(load_idx_dataset, MNIST), 10, "MNIST handwritten digits, 60k/10k, 1x28x28", MNIST
    ),
)
DATASETS.add(
    "fashion-mnist",
    DatasetEntry(
        functools.partial(load_idx_dataset, FASHION_MNIST),
        10,
        "Fashion-MNIST clothing, 60k/10k, 1x28x28",
        FASHION_MNIST,
    ),
)
DATASETS.add("synthetic", DatasetEntry(load_synthetic, 10, "tiny generated 10-class 1x28x28 data for tests, 512/256"))
DATASETS.add(
    "cifar10",
    DatasetEntry(
        functools.partial(load_cifar, CIFAR10, fallback=CIFAR10_JPEG),
        10,
        "CIFAR-10 (official python archive, else the cifar10-jpeg copy), 50k/10k, 3x32x32",
        CIFAR10,
        random_crop_flip,
    ),
)
DATASETS.add(
    "cifar10-jpeg",
    DatasetEntry(
        functools.partial(load_image_folder, CIFAR10_JPEG),
        10,
        "CIFAR-10 as JPEG re-encodings (offline copy, lossy), 50k/10k, 3x32x32",
        None,
        random_crop_flip,
    ),
)
DATASETS.add(
    "cifar100",
    DatasetEntry(
        functools.partial(load_cifar, CIFAR100),
        100,
        "CIFAR-100 fine labels, 50k/10k, 3x32x32",
        CIFAR100,
        random_crop_flip,
    ),
)


def normalize_name(name: str) -> str:
    """The registry key for a dataset name as a user may write it: case, spaces and ``_`` do not matter.

    >>> normalize_name(" Fashion_MNIST ")
    'fashion-mnist'
    """
    return name.strip().lower().replace("_", "-")


def downloadable() -> list[str]:
    """Names of the datasets ``sparsehalo download`` can fetch, in registry order (the CLI's choices)."""
    return [name for name, entry in DATASETS.items() if entry.downloadable]


def download_dataset(
    name: str,
    dest_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Download a dataset by name, verifying each file before it is saved.

    Files already present with the right checksum are not fetched again.

    Args:
        name: ``"mnist"``, ``"fashion-mnist"`` (four IDX files each), ``"cifar10"`` or ``"cifar100"``
            (one official python archive each); see :func:`downloadable`.
        dest_dir: data root; files go to ``dest_dir/<name>``.  None means the cache,
            ``$XDG_CACHE_HOME/sparsehalo/<name>`` or ``~/.cache/sparsehalo/<name>``.
        base_url: mirror serving the files; see :func:`~sparsehalo.data.download.download_files`.
        timeout: seconds allowed for connecting and for each read.

    Returns:
        The directory holding the files.

    Raises:
        DataError: a name that cannot be downloaded, network or HTTP error (naming the URL), or a
            checksum mismatch.
    """
    key = normalize_name(name)
    spec = DATASETS[key].spec if key in DATASETS else None
    if spec is None:
        raise DataError(f"cannot download '{name}': downloadable datasets are {', '.join(sorted(downloadable()))}")
    return download_files(spec, dest_dir, base_url, timeout=timeout)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    val_size: int = 0,
    seed: int = 0,
    augment: bool = False,
    kwargs: Mapping[str, Any] | None = None,
    in_memory: str = "auto",
    workers: int = 0,
) -> Splits:
    """Load a registered dataset or a user's, optionally carving a validation split out of its training set.

    Args:
        name: a key of :data:`DATASETS` (see :func:`normalize_name`), or a user's factory
            ``"package.module:factory"`` (see :mod:`.user`; ``kwargs``, ``in_memory`` and ``workers``
            apply to it only; a validation split it returns is used as it is, ``val_size`` must be 0).
        data_dir: directory holding the files or a ``<name>`` sub-directory; None searches
            ``$SPARSEHALO_DATA_DIR``, the download cache, then (MNIST only) the copy in the package.
        download: when the dataset's files are found nowhere on that search path, fetch them into
            ``data_dir/<name>`` (or the cache) instead of failing; ignored for datasets that cannot
            be downloaded.
        val_size: validation samples taken from train (0: no validation split).
        seed: chooses the validation samples.
        augment: set the dataset's standard augmentation (CIFAR: random crop after 4-pixel zero
            padding, random horizontal flip) on the training split; validation and test are never
            augmented.

    Raises:
        DataError: unknown name, missing or corrupt files, a bad ``val_size``, or ``augment`` for a
            dataset without a standard augmentation.
    """
    if is_import_path(name):
        if augment:
            raise DataError("data.augment applies to the bundled datasets; a user's dataset applies its own transforms")
        splits, _ = load_user_dataset(name, kwargs or {}, data_dir, in_memory=in_memory, workers=workers)
        if val_size and splits.val is not None:
            raise DataError(f"data.name {name!r} returns its own validation split: leave data.val_size at 0")
        if val_size:
            train, val = split_validation(splits.train, val_size, seed)
            splits = replace(splits, train=train, val=val)
        return splits
    if kwargs:
        raise DataError(f"data.kwargs applies to a user's dataset factory, not to the bundled {name!r}")
    key = normalize_name(name)
    if key not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    entry = DATASETS[key]
    if augment and entry.augment is None:
        have = ", ".join(k for k, e in DATASETS.items() if e.augment is not None)
        raise DataError(f"dataset '{key}' has no standard augmentation; augment=True applies to: {have}")
    if download and entry.spec is not None and find_dataset(entry.spec, data_dir) is None:
        # Only when absent everywhere: a copy found on the search path is used as it is (a corrupt
        # one fails its checksum in the loader), and CIFAR-10's JPEG fallback is not used.
        data_dir = download_files(entry.spec, data_dir)
    splits = entry.loader(data_dir)
    if val_size:
        train, val = split_validation(splits.train, val_size, seed)
        splits = replace(splits, train=train, val=val)
    if augment:
        # Only the training split: validation and test must measure the unaltered images.
        splits = replace(splits, train=splits.train.with_augment(entry.augment))
    return splits
