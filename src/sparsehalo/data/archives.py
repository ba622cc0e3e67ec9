"""What the two CIFAR archive readers share: tar member names, read errors, the arrays they return.

Archives are read straight from the ``.tar[.gz|.xz]`` file, member by member; nothing is extracted
to disk.
"""

from __future__ import annotations

import lzma
import tarfile
import zlib

import numpy as np

SplitArrays = dict[str, tuple[np.ndarray, np.ndarray]]
"""``{"train": (images, labels), "test": (images, labels)}``: uint8 ``[N, 3, H, W]`` and int64 ``[N]``."""

READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)
"""What reading a damaged or truncated archive can raise (each becomes a one-line DataError)."""


def member_name(name: str) -> str:
    """A tar entry's path without the ``./`` prefix some tools write, so it can be compared."""
    while name.startswith("./"):
        name = name[2:]
    return name
