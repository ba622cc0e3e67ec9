"""CIFAR-10 / CIFAR-100: the official python archives and image-folder (JPEG) archives.

Both kinds are read straight from the ``.tar[.gz|.xz]`` file; nothing is extracted to disk.

* The official "python version" archives hold pickled dicts.  Unpickling runs whatever code a pickle
  names, so they are read with :class:`RestrictedUnpickler`, which rebuilds numpy arrays and nothing
  else: a tampered archive fails with :class:`~sparsehalo.errors.DataError` instead of running code.
* Image-folder archives (``train/CLASS/*.jpg``, ``test/CLASS/*.jpg``) are decoded once with Pillow and
  the arrays cached as an ``.npz`` under the cache root, keyed by the archive's sha256, so the slow
  decode happens once per archive version.

Images come out as uint8 ``[N, 3, 32, 32]``, labels as int64, with the usual CIFAR normalization
statistics attached.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import lzma
import os
import pickle
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Collection

import numpy as np
import torch

from ..errors import DataError
from .arrays import ArrayDataset, Splits
from .mnist import DATA_DIR_ENV, cache_root, search_dirs_for

logger = logging.getLogger(__name__)

# Normalization used by the paper (METHOD.md).  The std values are the ones common in CIFAR code
# bases, not the exact per-pixel std of the training set (about 0.247/0.243/0.262); they are kept
# as published so results stay comparable.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)

# Standard CIFAR-10 label order (as in batches.meta).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

CIFAR_MIRROR = "https://www.cs.toronto.edu/~kriz/"
CIFAR_MIRROR_ENV = "SPARSEHALO_CIFAR_MIRROR"

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

SplitArrays = dict[str, tuple[np.ndarray, np.ndarray]]
"""``{"train": (images, labels), "test": (images, labels)}``: uint8 ``[N, 3, H, W]`` and int64 ``[N]``."""

# Bump when the .npz layout changes, so old cache files are decoded again instead of misread.
_CACHE_VERSION = 1


@dataclass(frozen=True)
class PickleArchiveSpec:
    """An official CIFAR "python version" archive.

    Attributes:
        name: registry name, also the sub-directory name under a data root.
        filename: archive file name.
        folder: directory inside the archive holding the pickles.
        train_members: pickles holding the training set, in order.
        test_members: pickles holding the test set.
        meta_member: pickle with the class names.
        label_key: key of the labels in each data pickle.
        names_key: key of the class names in the meta pickle.
        num_classes: labels must lie in ``[0, num_classes)``.
        sha256: sha256 of the archive file, checked on download.
        md5: md5 of the archive file as published on the dataset page, checked on download (or None).
        default_mirror: base URL serving ``filename``.
        mirror_env: environment variable that overrides the mirror.
    """

    name: str
    filename: str
    folder: str
    train_members: tuple[str, ...]
    test_members: tuple[str, ...]
    meta_member: str
    label_key: str
    names_key: str
    num_classes: int
    sha256: str
    md5: str | None = None
    default_mirror: str = CIFAR_MIRROR
    mirror_env: str = CIFAR_MIRROR_ENV


@dataclass(frozen=True)
class ImageFolderSpec:
    """An archive of ``train/CLASS/IMAGE`` and ``test/CLASS/IMAGE`` files.

    Attributes:
        name: registry name, also the sub-directory name under a data root and the cache.
        filename: archive file name looked for.
        classes: class folder names; a folder's label is its position here.
        image_size: required ``(height, width)`` of every image.
        sha256: pinned sha256 of the archive, checked when a file named ``filename`` is loaded
            (None: not pinned).
    """

    name: str
    filename: str
    classes: tuple[str, ...]
    image_size: tuple[int, int] = (32, 32)
    sha256: str | None = None


CIFAR10 = PickleArchiveSpec(
    name="cifar10",
    filename="cifar-10-python.tar.gz",
    folder="cifar-10-batches-py",
    train_members=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_members=("test_batch",),
    meta_member="batches.meta",
    label_key="labels",
    names_key="label_names",
    num_classes=10,
    sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    md5="c58f30108f718f92721af3b95e74349a",
)

CIFAR100 = PickleArchiveSpec(
    name="cifar100",
    filename="cifar-100-python.tar.gz",
    folder="cifar-100-python",
    train_members=("train",),
    test_members=("test",),
    meta_member="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    num_classes=100,
    sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
)

CIFAR10_JPEG = ImageFolderSpec(
    name="cifar10-jpeg",
    filename="cifar10-jpeg.tar.xz",
    classes=CIFAR10_CLASSES,
    image_size=(32, 32),
    sha256="10981715978444902fb9408a65f9e1ea0f35e5bee3dfa3ddac1e70364f00d61d",
)

ARCHIVE_DATASETS: dict[str, PickleArchiveSpec] = {spec.name: spec for spec in (CIFAR10, CIFAR100)}
"""Downloadable archive datasets by name (looked up at call time, so tests can swap a spec)."""


# ---------------------------------------------------------------------------------------- hashing


def hash_file(path: str | os.PathLike, *algorithms: str) -> dict[str, str]:
    """Hex digests of a file's bytes, all computed in one pass.

    Args:
        path: the file.
        algorithms: hashlib names, e.g. ``"sha256", "md5"``.

    Raises:
        DataError: the file cannot be read.
    """
    # usedforsecurity=False: md5 here only compares against a published checksum, and FIPS builds
    # of OpenSSL refuse md5 without it.
    hashes = {a: hashlib.new(a, usedforsecurity=False) for a in algorithms}
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                for h in hashes.values():
                    h.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return {a: h.hexdigest() for a, h in hashes.items()}


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    # mtime and size in the key: a replaced file is hashed again.
    return hash_file(path, "sha256")["sha256"]


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (resolved path, mtime, size) for this process."""
    resolved = path.resolve()
    try:
        st = resolved.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return _sha256_of(str(resolved), st.st_mtime_ns, st.st_size)


# ------------------------------------------------------------------------------ restricted pickle


def _safe_dtype(*args: Any) -> np.dtype:
    # Object dtypes would let array data be built from arbitrary pickled objects; CIFAR has none.
    dt = np.dtype(*args)
    if dt.hasobject:
        raise DataError(f"pickle asks for a numpy object dtype ({dt}); refusing to load it")
    return dt


def _numpy_reconstruct() -> Any:
    # numpy 2 moved the function to numpy._core; the files name numpy.core (numpy 1).  Looking it up
    # directly avoids numpy 2's deprecation shim for numpy.core.
    try:
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as fn
    return fn


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain Python containers, and nothing else.

    Any other global (``os.system``, ``builtins.eval``, ...) is refused before it is looked up, so
    loading a tampered file never runs its code.  Decodes Python 2 strings as ``bytes``.
    """

    def __init__(self, file: BinaryIO, where: str = "pickle") -> None:
        super().__init__(file, encoding="bytes")
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed object for ``module.name``; raise DataError for anything else."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._where}: pickle refers to '{module}.{name}', which a CIFAR file never needs; "
                "refusing to load it (the file may be tampered with)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids (CIFAR pickles have none)."""
        raise DataError(f"{self._where}: pickle uses persistent ids; refusing to load it")


def restricted_load(file: BinaryIO, where: str = "pickle") -> Any:
    """Unpickle ``file`` with :class:`RestrictedUnpickler`.

    Raises:
        DataError: a forbidden global, or data that is not a valid pickle.
    """
    try:
        return RestrictedUnpickler(file, where).load()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure on untrusted bytes means "corrupt"
        raise DataError(f"{where}: not a valid pickle ({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------------------- python archives


def _member_name(name: str) -> str:
    # tar entries may be written as "./dir/file"; compare without that prefix.
    while name.startswith("./"):
        name = name[2:]
    return name


def _text(value: Any) -> Any:
    return value.decode("latin1") if isinstance(value, bytes) else value


def _as_dict(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    # encoding="bytes" turns the Python 2 str keys into bytes; normalize them to str.
    return {_text(k): v for k, v in obj.items()}


def _read_pickles(path: Path, wanted: Collection[str]) -> dict[str, Any]:
    """Unpickle the archive members named in ``wanted`` in one pass over the tar (no seeking back)."""
    found: dict[str, Any] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = _member_name(member.name)
                if name not in wanted:
                    continue
                if name in found:
                    raise DataError(f"{path}: archive holds {name} twice")
                if not member.isfile():
                    raise DataError(f"{path}: {name} is not a regular file in the archive")
                stream = tar.extractfile(member)
                assert stream is not None  # regular files always have a stream
                # Read the whole member first so a damaged archive reports as such, not as a bad pickle.
                raw = stream.read()
                found[name] = restricted_load(io.BytesIO(raw), f"{path}:{name}")
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        raise DataError(
            f"{path}: cannot read archive ({type(exc).__name__}: {exc}); delete it and download again"
        ) from None
    missing = [n for n in wanted if n not in found]
    if missing:
        raise DataError(f"{path}: archive lacks {', '.join(missing)}; is it the right file?")
    return found


def _images_labels(obj: Any, where: str, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _as_dict(obj, where)
    data, labels = d.get("data"), d.get(label_key)
    if data is None or labels is None:
        raise DataError(f"{where}: expected keys 'data' and '{label_key}', found {sorted(map(str, d))}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        desc = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{where}: 'data' must be a uint8 array [N, 3072], got {desc}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(
            f"{where}: '{label_key}' must be {data.shape[0]} integers, got {labels.dtype} {list(labels.shape)}"
        )
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: labels span [{labels.min()}, {labels.max()}], expected [0, {num_classes - 1}]")
    # Each row is the red plane, then green, then blue, each 32x32 row-major: a plain reshape.
    return data.reshape(-1, 3, 32, 32), labels


def read_pickle_archive(path: Path, spec: PickleArchiveSpec) -> tuple[SplitArrays, tuple[str, ...]]:
    """Read an official CIFAR python archive without extracting it.

    Args:
        path: the ``.tar.gz`` file.
        spec: which archive it is.

    Returns:
        ``({"train": (images, labels), "test": (images, labels)}, class_names)`` with images uint8
        ``[N, 3, 32, 32]`` and labels int64 ``[N]``.

    Raises:
        DataError: unreadable archive, missing members, forbidden pickle content or malformed data.
    """
    full = {f"{spec.folder}/{m}": m for m in (*spec.train_members, *spec.test_members, spec.meta_member)}
    pickles = _read_pickles(path, full)
    by_member = {m: pickles[n] for n, m in full.items()}

    meta_where = f"{path}:{spec.folder}/{spec.meta_member}"
    meta = _as_dict(by_member[spec.meta_member], meta_where)
    names = meta.get(spec.names_key)
    if not isinstance(names, (list, tuple)) or len(names) != spec.num_classes:
        count = len(names) if isinstance(names, (list, tuple)) else "no"
        raise DataError(f"{meta_where}: expected {spec.num_classes} names under '{spec.names_key}', found {count}")
    classes = tuple(str(_text(n)) for n in names)

    out = {}
    for split, members in (("train", spec.train_members), ("test", spec.test_members)):
        parts = [
            _images_labels(by_member[m], f"{path}:{spec.folder}/{m}", spec.label_key, spec.num_classes) for m in members
        ]
        out[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return out, classes


# -------------------------------------------------------------------------- image-folder archives


def _decode_image(data: bytes, where: str, size: tuple[int, int]) -> np.ndarray:
    """Decode one image file's bytes to a uint8 RGB array ``[H, W, 3]`` of the required ``size``."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        raise DataError("decoding image archives needs Pillow: pip install pillow") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            # The header gives the size before any pixel is decoded: reject wrong sizes cheaply.
            if im.size != (size[1], size[0]):
                raise DataError(f"{where}: image is {im.size[0]}x{im.size[1]}, expected {size[1]}x{size[0]}")
            # convert() always copies; skip it for the common case of an RGB file.
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{where}: cannot decode image ({type(exc).__name__}: {exc})") from None


def decode_image_folder_archive(path: Path, spec: ImageFolderSpec) -> SplitArrays:
    """Decode every image of an image-folder archive.

    Members are visited sorted by path, so the sample order does not depend on how the tar was
    written.  Entries outside ``train/`` and ``test/`` and hidden files are ignored.

    Args:
        path: the ``.tar``, ``.tar.gz`` or ``.tar.xz`` file.
        spec: class list and image size.

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}``, images uint8 ``[N, 3, H, W]``.

    Raises:
        DataError: unreadable archive, unknown class folder, unexpected layout, undecodable or
            wrong-size image, or an empty split.
    """
    index = {c: i for i, c in enumerate(spec.classes)}
    members: dict[str, list[tuple[str, int, bytes]]] = {"train": [], "test": []}
    seen: set[str] = set()
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = _member_name(member.name)
                parts = name.split("/")
                if parts[0] not in members or member.isdir():
                    continue
                if any(p.startswith(".") for p in parts):  # e.g. macOS "._x.jpg" resource forks
                    continue
                if len(parts) != 3 or not parts[2]:
                    raise DataError(f"{path}: unexpected entry '{name}'; expected {parts[0]}/CLASS/IMAGE")
                split, cls, fname = parts
                if cls not in index:
                    raise DataError(
                        f"{path}: folder '{split}/{cls}' is not a class of {spec.name} "
                        f"(expected one of: {', '.join(spec.classes)})"
                    )
                if not member.isfile():
                    raise DataError(f"{path}: '{name}' is not a regular file (links are not supported)")
                if not fname.lower().endswith(IMAGE_SUFFIXES):
                    raise DataError(f"{path}: '{name}' is not an image file ({', '.join(IMAGE_SUFFIXES)})")
                if name in seen:
                    raise DataError(f"{path}: archive holds '{name}' twice")
                seen.add(name)
                stream = tar.extractfile(member)
                assert stream is not None  # regular files always have a stream
                members[split].append((name, index[cls], stream.read()))
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        raise DataError(f"{path}: cannot read archive ({type(exc).__name__}: {exc})") from None

    h, w = spec.image_size
    out = {}
    for split, items in members.items():
        if not items:
            raise DataError(f"{path}: no images under {split}/; expected {split}/CLASS/IMAGE entries")
        items.sort(key=lambda item: item[0])
        images = np.empty((len(items), h, w, 3), dtype=np.uint8)
        for i, (name, _, data) in enumerate(items):
            images[i] = _decode_image(data, f"{path}:{name}", spec.image_size)
        labels = np.fromiter((label for _, label, _ in items), dtype=np.int64, count=len(items))
        out[split] = (np.ascontiguousarray(images.transpose(0, 3, 1, 2)), labels)
    return out


def image_cache_path(spec: ImageFolderSpec, sha256: str) -> Path:
    """Where the decoded arrays of the archive with this sha256 are cached."""
    return cache_root() / spec.name / f"{spec.name}-{sha256[:16]}.npz"


def _read_image_cache(path: Path, spec: ImageFolderSpec, sha256: str) -> SplitArrays | None:
    """Arrays from a cache file, or None when it is absent, unreadable or for another archive."""
    if not path.is_file():
        return None
    h, w = spec.image_size
    try:
        # allow_pickle=False: a cache file is data only, never code.
        with np.load(path, allow_pickle=False) as z:
            if (
                int(z["version"]) != _CACHE_VERSION
                or str(z["sha256"]) != sha256
                or tuple(str(c) for c in z["classes"]) != spec.classes
            ):
                return None
            out = {}
            for split in ("train", "test"):
                images, labels = z[f"{split}_images"], z[f"{split}_labels"]
                if images.dtype != np.uint8 or images.shape[1:] != (3, h, w) or labels.shape != (len(images),):
                    return None
                out[split] = (images, labels.astype(np.int64, copy=False))
            return out
    except Exception as exc:  # noqa: BLE001 - a broken cache is rebuilt, never fatal
        logger.warning("ignoring unreadable cache %s (%s)", path, exc)
        return None


def _write_image_cache(path: Path, spec: ImageFolderSpec, sha256: str, arrays: SplitArrays) -> None:
    # Written to a temporary name and renamed, so a crash or a concurrent reader never sees half a file.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".part")
    except OSError as exc:
        logger.warning("cannot cache decoded images in %s (%s); they will be decoded again next time", path.parent, exc)
        return
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            # Uncompressed: loading is then a plain read, much faster than decoding or inflating.
            np.savez(
                f,
                version=np.array(_CACHE_VERSION),
                sha256=np.array(sha256),
                classes=np.array(spec.classes),
                **{f"{split}_images": x for split, (x, _) in arrays.items()},
                **{f"{split}_labels": y for split, (_, y) in arrays.items()},
            )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is as readable as the archive it came from
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("cannot write cache %s (%s)", path, exc)
    finally:
        tmp.unlink(missing_ok=True)


def load_image_folder_arrays(path: Path, spec: ImageFolderSpec) -> SplitArrays:
    """Decoded arrays of an image-folder archive, from the ``.npz`` cache when it matches.

    The archive's sha256 keys the cache, so an archive that changes is decoded again.  When the
    file is named like ``spec.filename`` and the spec pins a sha256, the archive must match it.

    Raises:
        DataError: checksum mismatch, or see :func:`decode_image_folder_archive`.
    """
    sha = file_sha256(path)
    if spec.sha256 is not None and path.name == spec.filename and sha != spec.sha256:
        raise DataError(
            f"{path} is corrupt: sha256 is {sha[:12]}..., expected {spec.sha256[:12]}...; replace it with a good copy"
        )
    cache = image_cache_path(spec, sha)
    arrays = _read_image_cache(cache, spec, sha)
    if arrays is None:
        logger.info("%s: decoding %s (once; cached in %s)", spec.name, path, cache)
        arrays = decode_image_folder_archive(path, spec)
        _write_image_cache(cache, spec, sha, arrays)
    return arrays


# ------------------------------------------------------------------------------------- datasets


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
    """Forget decoded archives and remembered checksums (the ``.npz`` files on disk stay)."""
    _load_archive.cache_clear()
    _sha256_of.cache_clear()


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


def _find(filename: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        candidate = d / filename
        if candidate.is_file():
            return candidate
    return None


def _unique(paths: list[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))


def _not_found(name: str, files: list[str], dirs: list[Path], download: str | None) -> str:
    where = ", ".join(str(d) for d in dirs)
    fetch = f", or run 'sparsehalo download {download}' (download=True)" if download else ""
    return (
        f"dataset '{name}' not found: expected {' or '.join(files)} in one of: {where}; "
        f"fix: pass --data-dir DIR, set {DATA_DIR_ENV}=DIR{fetch}"
    )


def load_cifar(
    spec: PickleArchiveSpec,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    *,
    fallback: ImageFolderSpec | None = None,
) -> Splits:
    """Load a CIFAR python archive as train/test splits (no validation split).

    Looks for ``spec.filename`` in the search directories (``data_dir`` and ``data_dir/<name>``, or
    ``$SPARSEHALO_DATA_DIR[/<name>]`` then the cache).  If it is absent and ``download`` is False,
    a ``fallback`` image-folder archive is used instead when one is found, in the same directories
    or its own ``<fallback name>`` sub-directories; the returned ``Splits.name`` then is the
    fallback's name and ``Splits.source`` the file used.

    Args:
        spec: which archive.
        data_dir: directory holding the archive (or a ``<name>`` sub-directory).
        download: fetch the official archive into ``data_dir/<name>`` (or the cache) when it is
            missing, instead of using the fallback or failing.
        fallback: image-folder archive accepted when the official one is missing.

    Raises:
        DataError: no archive found (and no download), or a corrupt archive.
    """
    dirs = search_dirs_for(spec.name, data_dir)
    path = _find(spec.filename, dirs)
    if path is None and download:
        from .download import download_archive  # imported here: download.py imports this module

        path = download_archive(spec, data_dir) / spec.filename
    if path is not None:
        return _splits("pickle", path, spec, spec.name, spec.num_classes)
    files = [spec.filename]
    if fallback is not None:
        dirs = _unique(dirs + search_dirs_for(fallback.name, data_dir))
        alt = _find(fallback.filename, dirs)
        if alt is not None:
            logger.info("%s: %s not found, using %s", spec.name, spec.filename, alt)
            return _splits("folder", alt, fallback, fallback.name, len(fallback.classes))
        files.append(fallback.filename)
    raise DataError(_not_found(spec.name, files, dirs, spec.name))


def load_image_folder(
    spec: ImageFolderSpec,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    *,
    download_hint: str | None = "cifar10",
) -> Splits:
    """Load an image-folder archive as train/test splits (no validation split).

    The first load decodes every image (seconds for CIFAR-10) and caches the arrays in
    ``<cache root>/<name>/``; later loads of the same archive read the cache.

    Args:
        spec: which archive.
        data_dir: directory holding the archive (or a ``<name>`` sub-directory).
        download: image-folder archives cannot be downloaded; a missing file is an error either way.
        download_hint: dataset whose official files ``sparsehalo download`` can fetch instead, named
            in the not-found message.

    Raises:
        DataError: archive missing or corrupt, or see :func:`decode_image_folder_archive`.
    """
    dirs = search_dirs_for(spec.name, data_dir)
    path = _find(spec.filename, dirs)
    if path is None:
        msg = _not_found(spec.name, [spec.filename], dirs, None)
        if download_hint:
            msg += f" (it cannot be downloaded; 'sparsehalo download {download_hint}' fetches the official files)"
        raise DataError(msg)
    return _splits("folder", path, spec, spec.name, len(spec.classes))
