"""Load MNIST-style IDX datasets (MNIST, Fashion-MNIST) from disk, checking every file's checksum.

Both ship as the same four IDX files.  A directory counts as holding a dataset when all four are
there, each either gzipped (``NAME.gz``) or raw (``NAME``); see :mod:`sparsehalo.data.paths` for the
search order.  Every file's uncompressed bytes are checked against the spec's pinned sha256, so a
truncated download or a mix of the two datasets in one folder fails loudly instead of training on
the wrong data.  Downloading is not this module's job (:mod:`sparsehalo.data.download`).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import torch

from ..errors import DataError
from . import paths
from .arrays import ArrayDataset, Splits
from .checksums import corrupt_message
from .idx import parse_idx, read_idx_bytes
from .specs import FASHION_MNIST, MNIST, IdxDatasetSpec

#: the IDX datasets whose pins are known: a file that fails one pin but matches another's is named as that file.
KNOWN = (MNIST, FASHION_MNIST)


def mismatch_message(path: str, actual: str, expected: str, dataset: str) -> str:
    """One line for a failed pin: another dataset's file by name (never "delete it"), else corrupt."""
    other = next(((spec.name, stem) for spec in KNOWN for stem, digest in spec.sha256.items() if digest == actual), None)
    if other is not None and other[0] != dataset:
        return (f"{path} is {other[0]}'s {other[1]}, not {dataset}'s: point the data directory at the folder "
                f"holding {dataset} (or at its parent, with a '{dataset}' sub-folder)")
    return corrupt_message(path, actual, expected, dataset)


def expected_files(spec: IdxDatasetSpec) -> str:
    """The four files as named in messages: ``train-images-idx3-ubyte[.gz], ...``."""
    return ", ".join(f"{stem}[.gz]" for stem in spec.files)


def locate(spec: IdxDatasetSpec, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Return the four files of ``spec`` from the first directory that holds all of them.

    Raises:
        DataError: no searched directory holds all four files.
    """
    dirs = paths.dataset_dirs(spec, data_dir)
    found = paths.locate(spec.file_choices, dirs)
    if found is None:
        raise DataError(paths.not_found_message(spec.name, expected_files(spec), dirs, spec.name))
    return found


@functools.lru_cache(maxsize=16)
def _read_checked(path: str, mtime_ns: int, size: int, expected: str, dataset: str, max_bytes: int | None) -> torch.Tensor:
    # mtime and size are part of the key so a file replaced on disk is read again.
    buf = read_idx_bytes(path, max_bytes)
    actual = hashlib.sha256(buf).hexdigest()
    if actual != expected:
        raise DataError(mismatch_message(path, actual, expected, dataset))
    return parse_idx(buf, path)


def read_checked(path: Path, expected: str, dataset: str, max_bytes: int | None = None) -> torch.Tensor:
    """Read an IDX file after checking its uncompressed sha256; cached per resolved path.

    ``max_bytes`` (the pinned size) bounds decompression: a larger content is refused before the
    checksum, having inflated at most that much.

    The returned tensor is shared between callers: treat it as read-only.

    Raises:
        DataError: the file cannot be read, fails its checksum, or is not valid IDX data.
    """
    resolved = path.resolve()
    try:
        st = resolved.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return _read_checked(str(resolved), st.st_mtime_ns, st.st_size, expected, dataset, max_bytes)


def clear_cache() -> None:
    """Forget every decoded file (frees memory; the next load reads from disk)."""
    _read_checked.cache_clear()


def _pair(spec: IdxDatasetSpec, files: list[Path], first: int) -> ArrayDataset:
    # files[i] holds spec.files[i]; images at `first`, their labels right after.
    images_path, labels_path = files[first], files[first + 1]
    images = read_checked(images_path, spec.sha256[spec.files[first]], spec.name, spec.sizes.get(spec.files[first]))
    labels = read_checked(labels_path, spec.sha256[spec.files[first + 1]], spec.name, spec.sizes.get(spec.files[first + 1]))
    if images.dtype != torch.uint8 or images.dim() != 3:
        raise DataError(f"{images_path}: expected uint8 images [N, H, W], got {images.dtype} {list(images.shape)}")
    if labels.dim() != 1:
        raise DataError(f"{labels_path}: expected labels [N], got shape {list(labels.shape)}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_path} has {images.shape[0]} images but {labels_path} has {labels.shape[0]} labels")
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= spec.num_classes):
        raise DataError(
            f"{labels_path}: labels span [{int(labels.min())}, {int(labels.max())}], "
            f"expected [0, {spec.num_classes - 1}]"
        )
    return ArrayDataset(images.unsqueeze(1), labels)


def load_idx_dataset(spec: IdxDatasetSpec, data_dir: str | os.PathLike | None = None) -> Splits:
    """Find, verify and load ``spec`` as train/test splits (no validation split).

    Args:
        spec: which dataset.
        data_dir: directory holding the files (or a ``<name>`` sub-directory); None searches
            ``$SPARSEHALO_DATA_DIR``, the download cache, then the copy shipped with the package.

    Raises:
        DataError: files missing, corrupt, or inconsistent.
    """
    files = locate(spec, data_dir)
    train = _pair(spec, files, 0)
    test = _pair(spec, files, 2)
    return Splits(train=train, test=test, val=None, num_classes=spec.num_classes, name=spec.name)
