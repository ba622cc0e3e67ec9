"""Checkpoints that are written atomically and read without unpickling code.

Files are written with ``torch.save`` to a temporary file in the same directory, flushed to disk, then
renamed over the target, so a crash mid-write leaves the previous file intact.  They are read with
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers: a malicious file
cannot run code, and a corrupt one gives a :class:`CheckpointError` in one line.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError


def atomic_write_bytes(path: str | Path, write) -> None:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save(path: str | Path, obj: dict) -> None:
    """Atomically save a dict of tensors / plain values."""
    atomic_write_bytes(path, lambda f: torch.save(obj, f))


def load(path: str | Path, required: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint safely (``weights_only=True``) onto the CPU.

    Raises:
        CheckpointError: if the file is missing, corrupt, holds code objects, or lacks ``required`` keys.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, or a pickle that asks for code
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {str(path)!r} safely: {first[:200]}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} does not hold a dict")
    missing = [k for k in required if k not in obj]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a sparsehalo checkpoint (missing {', '.join(missing)})")
    return obj
