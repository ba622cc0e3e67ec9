"""What every export format shares: the no-overwrite write and the size report."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import SparsehaloError
from ..io import atomic_write_bytes


def dense_fp32_bytes(state: Mapping[str, torch.Tensor]) -> int:
    """4 bytes per entry of every tensor of ``state``: a plain fp32 state dict's payload."""
    return 4 * sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))


def report(fmt: str, path: Path, dense_bytes: int, **extra) -> dict:
    """``{"format", "path", "dense_fp32_bytes", "file_bytes", "ratio", **extra}`` of a written file."""
    size = path.stat().st_size
    return {"format": fmt, "path": str(path), "dense_fp32_bytes": dense_bytes, "file_bytes": size, "ratio": size / dense_bytes if dense_bytes else None, **extra}


def write_unless_other(path: Path, data: bytes, overwrite: bool, checksum: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; with ``overwrite=False`` an existing ``path`` holding
    other bytes is refused (the same bytes are written again: exporting twice is idempotent)."""
    if path.exists() and not overwrite:
        try:
            same = path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
        except OSError:
            same = False
        if not same:
            raise SparsehaloError(f"{str(path)!r} exists and differs from this export; pass --force to replace it, or choose another --out")
    atomic_write_bytes(path, lambda f: f.write(data), checksum=checksum)
