"""Read image-folder archives (``train/CLASS/*.jpg``, ``test/CLASS/*.jpg``), decoded once and cached.

Decoding 60k JPEGs takes seconds, so the arrays are cached as an uncompressed ``.npz`` under
``<cache root>/<name>/``, keyed by the archive's sha256: the slow decode happens once per archive
version, and an archive that changes is decoded again.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write_bytes
from .archives import READ_ERRORS, SplitArrays, bounded_members, member_name, read_error
from .checksums import file_sha256
from .paths import cache_root
from .specs import ImageFolderSpec

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Bump when the .npz layout changes, so old cache files are decoded again instead of misread.
_CACHE_VERSION = 1


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
            for member in bounded_members(path, tar):
                name = member_name(member.name)
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
    except READ_ERRORS as exc:
        raise read_error(path, exc) from None

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
    # Atomic (temporary file, then rename), so a crash or a concurrent reader never sees half a file.
    # A cache that cannot be written only costs a decode next time: warn, never fail.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning("cannot cache decoded images in %s (%s); they will be decoded again next time", path.parent, exc)
        return

    def write(f) -> None:
        os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600; a cache is as readable as the archive it came from
        # Uncompressed: loading is then a plain read, much faster than decoding or inflating.
        np.savez(
            f,
            version=np.array(_CACHE_VERSION),
            sha256=np.array(sha256),
            classes=np.array(spec.classes),
            **{f"{split}_images": x for split, (x, _) in arrays.items()},
            **{f"{split}_labels": y for split, (_, y) in arrays.items()},
        )

    try:
        atomic_write_bytes(path, write)
    except OSError as exc:
        logger.warning("cannot write cache %s (%s)", path, exc)


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
