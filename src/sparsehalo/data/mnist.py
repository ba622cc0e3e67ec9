"""MNIST-style IDX datasets: where the files are looked for, checksums, and loading.

Both MNIST and Fashion-MNIST ship as the same four IDX files.  A directory counts as holding a dataset
when all four are there, each either gzipped (``NAME.gz``) or raw (``NAME``).  Every file's
uncompressed bytes are checked against a pinned sha256, so a truncated download or a mix of the two
datasets in one folder fails loudly instead of training on the wrong data.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch

from ..errors import DataError
from .arrays import ArrayDataset, Splits
from .idx import parse_idx, read_idx_bytes

DATA_DIR_ENV = "SPARSEHALO_DATA_DIR"

# Order matters: train images, train labels, test images, test labels.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

VENDORED_DIR = Path(__file__).resolve().parent / "mnist"

# sha256 of the gzipped files shipped inside the package (the bytes as stored, not uncompressed).
VENDORED_GZ_SHA256 = {
    "t10k-images-idx3-ubyte.gz": "cfeddb84311ecf044fc6a5b0f6ee8a24d265d4e83e388400186eb114082f4209",
    "t10k-labels-idx1-ubyte.gz": "e41c74e484045d39b462a7790a4af51301bd9b0b24f0154798d713ec68c45920",
    "train-images-idx3-ubyte.gz": "db8f937d487057fb14a9f0fbe97f0bc8d311ab41b750d41e1ff37c43b9e55e19",
    "train-labels-idx1-ubyte.gz": "51fc562b6747b666fbf6e84ce29d43c3cb5f9c388c664d43b33f02095313405a",
}


@dataclass(frozen=True)
class IdxDatasetSpec:
    """Everything needed to find, download and verify one four-file IDX dataset.

    Attributes:
        name: registry name, also the sub-directory name under a data root.
        sha256: file stem (no ``.gz``) -> sha256 of the uncompressed IDX bytes.
        default_mirror: base URL serving ``<stem>.gz``.
        mirror_env: environment variable that overrides the mirror.
        num_classes: labels must lie in ``[0, num_classes)``.
        vendored_dir: copy shipped with the package, searched last (None if there is none).
        files: the four file stems in train-images, train-labels, test-images, test-labels order.
    """

    name: str
    sha256: Mapping[str, str]
    default_mirror: str
    mirror_env: str
    num_classes: int = 10
    vendored_dir: Path | None = None
    files: tuple[str, ...] = field(default=IDX_FILES)


MNIST = IdxDatasetSpec(
    name="mnist",
    sha256={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    default_mirror="https://ossci-datasets.s3.amazonaws.com/mnist/",
    mirror_env="SPARSEHALO_MNIST_MIRROR",
    vendored_dir=VENDORED_DIR,
)

FASHION_MNIST = IdxDatasetSpec(
    name="fashion-mnist",
    sha256={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    default_mirror="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    mirror_env="SPARSEHALO_FASHION_MNIST_MIRROR",
)

IDX_DATASETS: dict[str, IdxDatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def data_root() -> Path | None:
    """Return ``$SPARSEHALO_DATA_DIR`` as a path, or None when it is unset or empty."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """Return the download cache root: ``$XDG_CACHE_HOME/sparsehalo`` or ``~/.cache/sparsehalo``."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "sparsehalo"


def search_dirs(spec: IdxDatasetSpec, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched for ``spec``'s files, in priority order.

    An explicit ``data_dir`` is the only place searched (itself, then ``data_dir/<name>``), so asking
    for a directory never silently loads a different copy.
    """
    return search_dirs_for(spec.name, data_dir, spec.vendored_dir)


def search_dirs_for(
    name: str, data_dir: str | os.PathLike | None = None, vendored_dir: Path | None = None
) -> list[Path]:
    """Directories searched for the files of dataset ``name``, in priority order.

    Args:
        name: dataset name, also the sub-directory looked for under each root.
        data_dir: explicit directory; when given it is the only root searched.
        vendored_dir: a copy shipped with the package, searched last (only without ``data_dir``).

    Returns:
        ``[data_dir, data_dir/name]`` when ``data_dir`` is given, else ``[$SPARSEHALO_DATA_DIR,
        $SPARSEHALO_DATA_DIR/name]`` (when set), the cache ``<cache_root>/name``, then ``vendored_dir``.
    """
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        return [root, root / name]
    dirs: list[Path] = []
    env = data_root()
    if env is not None:
        dirs += [env, env / name]
    dirs.append(cache_root() / name)
    if vendored_dir is not None:
        dirs.append(vendored_dir)
    return dirs


def files_in(directory: Path, spec: IdxDatasetSpec) -> list[Path] | None:
    """Return the four file paths in ``directory`` (raw preferred over ``.gz``), or None if any is missing."""
    found = []
    for stem in spec.files:
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            return None
    return found


def not_found_message(spec: IdxDatasetSpec, dirs: list[Path]) -> str:
    """One-line explanation of where ``spec`` was looked for and how to provide it."""
    names = ", ".join(f"{stem}[.gz]" for stem in spec.files)
    where = ", ".join(str(d) for d in dirs)
    return (
        f"dataset '{spec.name}' not found: expected {names} in one of: {where}; "
        f"fix: pass --data-dir DIR, set {DATA_DIR_ENV}=DIR, "
        f"or run 'sparsehalo download {spec.name}' (download=True)"
    )


def locate(spec: IdxDatasetSpec, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Return the four files of ``spec`` from the first directory that holds all of them.

    Raises:
        DataError: no searched directory holds all four files.
    """
    dirs = search_dirs(spec, data_dir)
    for directory in dirs:
        found = files_in(directory, spec)
        if found is not None:
            return found
    raise DataError(not_found_message(spec, dirs))


def sha256_uncompressed(path: str | os.PathLike) -> str:
    """Hex sha256 of the file's uncompressed IDX bytes."""
    return hashlib.sha256(read_idx_bytes(path)).hexdigest()


def corrupt_message(path: str | os.PathLike, actual: str, expected: str, dataset: str) -> str:
    """One-line checksum-mismatch message."""
    return (
        f"{path} is corrupt: sha256 of its uncompressed data is {actual[:12]}..., expected {expected[:12]}...; "
        f"delete it and run 'sparsehalo download {dataset}'"
    )


@functools.lru_cache(maxsize=16)
def _read_checked(path: str, mtime_ns: int, size: int, expected: str, dataset: str) -> torch.Tensor:
    # mtime and size are part of the key so a file replaced on disk is read again.
    buf = read_idx_bytes(path)
    actual = hashlib.sha256(buf).hexdigest()
    if actual != expected:
        raise DataError(corrupt_message(path, actual, expected, dataset))
    return parse_idx(buf, path)


def read_checked(path: Path, expected: str, dataset: str) -> torch.Tensor:
    """Read an IDX file after checking its uncompressed sha256; cached per resolved path.

    The returned tensor is shared between callers: treat it as read-only.
    """
    resolved = path.resolve()
    try:
        st = resolved.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return _read_checked(str(resolved), st.st_mtime_ns, st.st_size, expected, dataset)


def clear_cache() -> None:
    """Forget every decoded file (frees memory; the next load reads from disk)."""
    _read_checked.cache_clear()


def _pair(spec: IdxDatasetSpec, paths: list[Path], first: int) -> ArrayDataset:
    # paths[i] holds spec.files[i]; images at `first`, their labels right after.
    images_path, labels_path = paths[first], paths[first + 1]
    images = read_checked(images_path, spec.sha256[spec.files[first]], spec.name)
    labels = read_checked(labels_path, spec.sha256[spec.files[first + 1]], spec.name)
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


def load_idx_dataset(
    spec: IdxDatasetSpec,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> Splits:
    """Find, verify and load ``spec`` as train/test splits (no validation split).

    Args:
        spec: which dataset.
        data_dir: directory holding the files (or a ``<name>`` sub-directory); None searches
            ``$SPARSEHALO_DATA_DIR``, the download cache, then the copy shipped with the package.
        download: fetch missing files into ``data_dir/<name>`` (or the cache) instead of failing.

    Raises:
        DataError: files missing (and ``download`` is False), corrupt, or inconsistent.
    """
    try:
        paths = locate(spec, data_dir)
    except DataError:
        if not download:
            raise
        from .download import download_spec  # imported here: download.py imports this module

        target = download_spec(spec, data_dir)
        paths = files_in(target, spec)
        if paths is None:  # download_spec guarantees the files; this guards against a racing delete
            raise DataError(not_found_message(spec, [target])) from None
    train = _pair(spec, paths, 0)
    test = _pair(spec, paths, 2)
    return Splits(train=train, test=test, val=None, num_classes=spec.num_classes, name=spec.name)
