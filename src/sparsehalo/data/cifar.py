"""Load CIFAR-10 / CIFAR-100 from the official python archives or an image-folder (JPEG) archive.

Reading the two kinds of archive is done by :mod:`sparsehalo.data.pickle_archive` (restricted
unpickling of the official batches) and :mod:`sparsehalo.data.image_folder` (decoding plus an
``.npz`` cache); this module finds the file, keeps decoded archives in memory for the process, and
returns :class:`~sparsehalo.data.arrays.Splits` with images uint8 ``[N, 3, 32, 32]``, labels int64
and the usual CIFAR normalization statistics attached.  Downloading is not this module's job
(:mod:`sparsehalo.data.download`).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import paths
from .archives import SplitArrays
from .arrays import ArrayDataset, Splits
from .image_folder import load_image_folder_arrays
from .pickle_archive import read_pickle_archive
from .specs import CIFAR_MEAN, CIFAR_STD, ImageFolderSpec, PickleArchiveSpec

logger = logging.getLogger(__name__)


def _tensors(arrays: SplitArrays) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {
        split: (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))
        for split, (x, y) in arrays.items()
    }


@functools.lru_cache(maxsize=2)
def _load_archive(kind: str, path: str, mtime_ns: int, size: int, spec: PickleArchiveSpec | ImageFolderSpec):
    # In-process cache keyed by file identity, like the IDX reader's: a process that loads the same
    # dataset for several runs reads it once.  Only two entries: a CIFAR split set is ~180 MB.
    if kind == "pickle":
        arrays, classes = read_pickle_archive(Path(path), spec)
    else:
        arrays, classes = load_image_folder_arrays(Path(path), spec), spec.classes
    return _tensors(arrays), classes


def clear_cache() -> None:
    """Forget decoded archives (the ``.npz`` files on disk stay)."""
    _load_archive.cache_clear()


def _splits(kind: str, path: Path, spec: PickleArchiveSpec | ImageFolderSpec, name: str, num_classes: int) -> Splits:
    resolved = path.resolve()
    try:
        st = resolved.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    tensors, classes = _load_archive(kind, str(resolved), st.st_mtime_ns, st.st_size, spec)
    # New ArrayDataset objects each time: callers may set attributes (augment) without touching the
    # cached tensors, which are shared and must be treated as read-only.
    train, test = (ArrayDataset(*tensors[s], mean=CIFAR_MEAN, std=CIFAR_STD) for s in ("train", "test"))
    return Splits(
        train=train, test=test, val=None, num_classes=num_classes, name=name, source=str(path), classes=classes
    )


def _find(spec: PickleArchiveSpec | ImageFolderSpec, dirs: list[Path]) -> Path | None:
    found = paths.locate(spec.file_choices, dirs)
    return None if found is None else found[0]


def load_cifar(
    spec: PickleArchiveSpec,
    data_dir: str | os.PathLike | None = None,
    *,
    fallback: ImageFolderSpec | None = None,
) -> Splits:
    """Load a CIFAR python archive as train/test splits (no validation split).

    Looks for ``spec.filename`` in the search directories (``data_dir`` and ``data_dir/<name>``, or
    ``$SPARSEHALO_DATA_DIR[/<name>]`` then the cache).  If it is absent, a ``fallback``
    image-folder archive is used instead when one is found, in the same directories or its own
    ``<fallback name>`` sub-directories; the returned ``Splits.name`` then is the fallback's name
    and ``Splits.source`` the file used.  (``load_dataset(..., download=True)`` fetches the
    official archive before calling this, so the fallback is only used without a download.)

    Args:
        spec: which archive.
        data_dir: directory holding the archive (or a ``<name>`` sub-directory).
        fallback: image-folder archive accepted when the official one is missing.

    Raises:
        DataError: no archive found, or a corrupt archive.
    """
    dirs = paths.dataset_dirs(spec, data_dir)
    path = _find(spec, dirs)
    if path is not None:
        return _splits("pickle", path, spec, spec.name, spec.num_classes)
    files = [spec.filename]
    if fallback is not None:
        # dict.fromkeys: the fallback's dirs repeat the data-dir roots; search each directory once.
        dirs = list(dict.fromkeys(dirs + paths.dataset_dirs(fallback, data_dir)))
        alt = _find(fallback, dirs)
        if alt is not None:
            logger.info("%s: %s not found, using %s", spec.name, spec.filename, alt)
            return _splits("folder", alt, fallback, fallback.name, len(fallback.classes))
        files.append(fallback.filename)
    raise DataError(paths.not_found_message(spec.name, " or ".join(files), dirs, spec.name))


def load_image_folder(
    spec: ImageFolderSpec,
    data_dir: str | os.PathLike | None = None,
    *,
    download_hint: str | None = "cifar10",
) -> Splits:
    """Load an image-folder archive as train/test splits (no validation split).

    The first load decodes every image (seconds for CIFAR-10) and caches the arrays in
    ``<cache root>/<name>/``; later loads of the same archive read the cache.

    Args:
        spec: which archive.
        data_dir: directory holding the archive (or a ``<name>`` sub-directory).
        download_hint: dataset whose official files ``sparsehalo download`` can fetch instead, named
            in the not-found message (image-folder archives themselves cannot be downloaded).

    Raises:
        DataError: archive missing or corrupt, or see :func:`~sparsehalo.data.image_folder.decode_image_folder_archive`.
    """
    dirs = paths.dataset_dirs(spec, data_dir)
    path = _find(spec, dirs)
    if path is None:
        msg = paths.not_found_message(spec.name, spec.filename, dirs)
        if download_hint:
            msg += f" (it cannot be downloaded; 'sparsehalo download {download_hint}' fetches the official files)"
        raise DataError(msg)
    return _splits("folder", path, spec, spec.name, len(spec.classes))
