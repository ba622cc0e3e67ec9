"""Read and write IDX files (the MNIST container format), gzipped or raw.

An IDX file is two zero bytes, a type code, the number of dimensions, one big-endian ``uint32`` size
per dimension, then the row-major payload in big-endian byte order.  Compression is detected from the
gzip magic bytes, never from the file name, so a ``.gz`` name on a raw file (or the reverse) still
reads correctly.
"""

from __future__ import annotations

import gzip as _gzip
import math
import os
import struct

import numpy as np
import torch

from ..errors import DataError
from .checksums import uncompressed_chunks

# type code -> (big-endian numpy dtype, torch dtype)
_CODES: dict[int, tuple[np.dtype, torch.dtype]] = {
    0x08: (np.dtype("u1"), torch.uint8),
    0x09: (np.dtype("i1"), torch.int8),
    0x0B: (np.dtype(">i2"), torch.int16),
    0x0C: (np.dtype(">i4"), torch.int32),
    0x0D: (np.dtype(">f4"), torch.float32),
    0x0E: (np.dtype(">f8"), torch.float64),
}
_TORCH_TO_CODE = {tdt: code for code, (_, tdt) in _CODES.items()}


def read_idx_bytes(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """Return the uncompressed bytes of an IDX file (gunzipped if it is gzip data).

    Args:
        path: the file.
        max_bytes: refuse a file whose content exceeds this (the pinned size of a known file;
            default :data:`~sparsehalo.data.checksums.MAX_UNCOMPRESSED`).  Decompression is streamed
            and stops there, so a gzip bomb costs at most ``max_bytes`` of memory.

    Raises:
        DataError: the file is missing, unreadable, not valid gzip data, or too large.
    """
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    return b"".join(uncompressed_chunks(path, max_bytes))


def parse_idx(buf: bytes, source: str | os.PathLike = "<bytes>") -> torch.Tensor:
    """Decode uncompressed IDX bytes into a tensor.

    Args:
        buf: the whole uncompressed file.
        source: file name used in error messages.

    Returns:
        A writable tensor of the file's dtype and shape, in native byte order.

    Raises:
        DataError: bad magic, unsupported type code, or a payload whose length does not match the dims.
    """
    if len(buf) < 4:
        raise DataError(f"{source}: not an IDX file ({len(buf)} bytes, the header alone needs 4)")
    if buf[0] != 0 or buf[1] != 0:
        raise DataError(f"{source}: not an IDX file (magic starts with {buf[:2].hex()}, expected 0000)")
    code, ndim = buf[2], buf[3]
    if code not in _CODES:
        raise DataError(f"{source}: unsupported IDX type code 0x{code:02x}")
    if ndim == 0:
        raise DataError(f"{source}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{source}: truncated IDX header ({len(buf)} bytes, {ndim} dims need {header})")
    dims = struct.unpack(f">{ndim}I", buf[4:header])
    np_dtype, _ = _CODES[code]
    count = math.prod(dims)
    expected = count * np_dtype.itemsize
    actual = len(buf) - header
    if actual != expected:
        raise DataError(
            f"{source}: IDX payload is {actual} bytes but shape {list(dims)} needs {expected} "
            "(file truncated or corrupt)"
        )
    arr = np.frombuffer(buf, dtype=np_dtype, count=count, offset=header)
    # One copy: to native byte order and off the read-only bytes object.
    arr = arr.astype(np_dtype.newbyteorder("="), copy=True)
    return torch.from_numpy(arr.reshape(dims))


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX file, gzipped or raw.

    Raises:
        DataError: the file is missing, not IDX, or truncated; the message names the file.
    """
    return parse_idx(read_idx_bytes(path), path)


def encode_idx(tensor: torch.Tensor) -> bytes:
    """Return the uncompressed IDX bytes for ``tensor``.

    Raises:
        ValueError: the dtype has no IDX type code, or the tensor is 0-d.
    """
    code = _TORCH_TO_CODE.get(tensor.dtype)
    if code is None:
        raise ValueError(f"IDX cannot store dtype {tensor.dtype}")
    if tensor.dim() == 0 or tensor.dim() > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {tensor.dim()}")
    np_dtype, _ = _CODES[code]
    arr = tensor.detach().cpu().contiguous().numpy().astype(np_dtype, copy=False)
    header = struct.pack(f">BBBB{tensor.dim()}I", 0, 0, code, tensor.dim(), *tensor.shape)
    return header + arr.tobytes()


def write_idx(path: str | os.PathLike, tensor: torch.Tensor, gzip: bool = False) -> None:
    """Write ``tensor`` as an IDX file.

    Args:
        path: destination; its name is not changed (add ``.gz`` yourself if you want it).
        tensor: uint8, int8, int16, int32, float32 or float64 tensor.
        gzip: gzip-compress the file.
    """
    data = encode_idx(tensor)
    if gzip:
        # mtime=0 so the same tensor always gives the same bytes (stable checksums).
        data = _gzip.compress(data, compresslevel=6, mtime=0)
    with open(path, "wb") as f:
        f.write(data)
