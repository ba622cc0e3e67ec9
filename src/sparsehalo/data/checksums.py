"""Checksums of dataset files: of their bytes as stored, or of their uncompressed content.

IDX files are pinned by the sha256 of their *uncompressed* bytes, so one pin holds whether a copy
is gzipped or raw; archives are pinned by the digests of the file itself (sha256, plus the md5 that
CIFAR's page publishes).  Compression is recognized by the gzip magic bytes, never by the file
name.  This module imports nothing from the package.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import Iterator

from ..errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

_CHUNK = 1 << 20


def _cannot_read(path: str | os.PathLike, exc: OSError) -> DataError:
    return DataError(f"{path}: cannot read file ({exc.strerror or exc})")


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
            while chunk := f.read(_CHUNK):
                for h in hashes.values():
                    h.update(chunk)
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    return {a: h.hexdigest() for a, h in hashes.items()}


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    # mtime and size in the key: a replaced file is hashed again.
    return hash_file(path, "sha256")["sha256"]


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (resolved path, mtime, size) for this process.

    Raises:
        DataError: the file cannot be read.
    """
    resolved = path.resolve()
    try:
        st = resolved.stat()
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    return _sha256_of(str(resolved), st.st_mtime_ns, st.st_size)


def is_gzip(path: str | os.PathLike) -> bool:
    """Whether the file starts with the gzip magic bytes.

    Raises:
        DataError: the file cannot be read.
    """
    try:
        with open(path, "rb") as f:
            return f.read(2) == GZIP_MAGIC
    except OSError as exc:
        raise _cannot_read(path, exc) from None


#: The cap on one file's uncompressed bytes where no size is pinned (the largest MNIST-like IDX file
#: is 47 MB): a few bytes of gzip can inflate to gigabytes, and nothing is inflated past this.
MAX_UNCOMPRESSED = 1 << 31


def uncompressed_chunks(path: str | os.PathLike, max_bytes: int | None = None) -> Iterator[bytes]:
    """The uncompressed bytes of a file (gunzipped when it is gzip data) in chunks of at most 1 MiB.

    Streamed: memory and time stay bounded by ``max_bytes`` (default :data:`MAX_UNCOMPRESSED`)
    whatever the file claims, so a gzip bomb is refused after inflating ``max_bytes`` at most.

    Raises:
        DataError: the file cannot be read, is corrupt or truncated gzip data, or inflates past
            ``max_bytes``.
    """
    limit = MAX_UNCOMPRESSED if max_bytes is None else max_bytes
    total = 0
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
            while chunk := stream.read(min(_CHUNK, limit - total + 1)):
                total += len(chunk)
                if total > limit:
                    what = "inflates to" if gzipped else "holds"
                    raise DataError(f"{path}: {what} more than {limit:,} bytes, the most this file may hold; it is not the expected file")
                yield chunk
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    except OSError as exc:
        raise _cannot_read(path, exc) from None


def sha256_uncompressed(path: str | os.PathLike, max_bytes: int | None = None) -> str:
    """Hex sha256 of a file's uncompressed bytes (gunzipped when it is gzip data), streamed and
    bounded as :func:`uncompressed_chunks`.

    Raises:
        DataError: the file cannot be read, is corrupt or truncated gzip data, or is too large.
    """
    h = hashlib.sha256()
    for chunk in uncompressed_chunks(path, max_bytes):
        h.update(chunk)
    return h.hexdigest()


def corrupt_message(path: str | os.PathLike, actual: str, expected: str, dataset: str) -> str:
    """One-line message for a file whose uncompressed sha256 is ``actual`` instead of ``expected``."""
    return (
        f"{path} is corrupt: sha256 of its uncompressed data is {actual[:12]}..., expected {expected[:12]}...; "
        f"delete it and run 'sparsehalo download {dataset}'"
    )


def clear_cache() -> None:
    """Forget remembered file checksums (the next :func:`file_sha256` reads the file again)."""
    _sha256_of.cache_clear()
