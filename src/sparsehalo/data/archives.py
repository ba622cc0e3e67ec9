"""What the two CIFAR archive readers share: tar member names, read errors, the arrays they return.

Archives are read straight from the ``.tar[.gz|.xz]`` file, member by member; nothing is extracted
to disk.
"""

from __future__ import annotations

import lzma
import tarfile
import zlib
from collections.abc import Iterator

import numpy as np

from ..errors import DataError

SplitArrays = dict[str, tuple[np.ndarray, np.ndarray]]
"""``{"train": (images, labels), "test": (images, labels)}``: uint8 ``[N, 3, H, W]`` and int64 ``[N]``."""

READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)
"""What reading a damaged or truncated archive can raise (each becomes a one-line DataError)."""


def member_name(name: str) -> str:
    """A tar entry's path without the ``./`` prefix some tools write, so it can be compared."""
    while name.startswith("./"):
        name = name[2:]
    return name


#: The most a CIFAR-sized archive may hold once uncompressed (its members' sizes added up, skipped
#: ones included: skipping a member of a compressed tar still inflates it).  CIFAR-10's python
#: archive holds 178 MiB; the JPEG folder archive less.  A crafted archive is refused at this size.
MAX_ARCHIVE_BYTES = 2 << 30


def read_error(path, exc: BaseException) -> DataError:
    """A one-line DataError for what ``tarfile`` (or the decompressor under it) raised."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ""
    if isinstance(exc, tarfile.ReadError) and (not text or text.endswith(":") or "could not be opened" in text):
        text = "not a tar archive, plain or compressed with gzip, bzip2 or xz"  # tarfile lists each method tried
    detail = f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
    return DataError(f"{path}: cannot read archive ({detail}); delete it and download again")


def bounded_members(path, tar: tarfile.TarFile, max_bytes: int = MAX_ARCHIVE_BYTES) -> Iterator[tarfile.TarInfo]:
    """``tar``'s members, refusing the archive once their declared sizes exceed ``max_bytes``.

    Each size is read from a member's header before its data is touched, so the work done on a
    crafted archive (a gzip bomb inside a tar) stays below ``max_bytes`` of inflated data.
    """
    total = 0
    for member in tar:
        total += max(member.size, 0)
        if total > max_bytes:
            raise DataError(f"{path}: archive holds more than {max_bytes:,} bytes once uncompressed; it is not a CIFAR archive")
        yield member
