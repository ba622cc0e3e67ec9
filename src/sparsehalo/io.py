"""Files written atomically and read safely: bytes, text, JSON, CSV, figures and torch files.

Every write goes to a temporary file in the target's directory, is flushed to disk, then renamed over
the target, so a crash mid-write leaves the previous file intact and a reader never sees half a file.
Torch files are read with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers: a malicious file cannot run code, and a corrupt one gives a
:class:`~sparsehalo.errors.CheckpointError` in one line.
"""

from __future__ import annotations

import csv
import io as _stdio
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

from .errors import CheckpointError, SparsehaloError


def atomic_write_bytes(path: str | Path, write: Callable[[Any], Any]) -> None:
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
    """Indented JSON with a final newline, written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parse a JSON file.

    Raises:
        SparsehaloError: naming ``what`` and the path, if it is missing or not JSON.
    """
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SparsehaloError(f"cannot read {what} {str(path)!r}: {exc}") from None


def csv_text(rows: Iterable[Mapping[str, Any]], columns: list[str] | None = None, floats: str | None = None) -> str:
    """CSV of dict rows; ``columns`` default to every key in order of first appearance.

    Args:
        floats: a format spec applied to float cells (``".6g"``); None writes ``str(value)``.
    """
    rows = list(rows)
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    buf = _stdio.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns)
    w.writeheader()
    for row in rows:
        w.writerow({k: (format(v, floats) if floats and isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: list[str] | None = None, floats: str | None = None) -> None:
    """:func:`csv_text`, written atomically."""
    atomic_write_text(path, csv_text(rows, columns, floats))


def new_figure(figsize: tuple[float, float] = (6.5, 4.5)):
    """A bare matplotlib ``Figure`` on the Agg canvas: no pyplot, no global backend switch, no leaks."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path, dpi: int = 120) -> None:
    """Render ``fig`` (format from the suffix, PNG by default) and write it atomically."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    buf = _stdio.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))


def save_torch(path: str | Path, obj: dict) -> None:
    """Atomically ``torch.save`` a dict of tensors and plain values."""
    atomic_write_bytes(path, lambda f: torch.save(obj, f))


def load_torch(path: str | Path, required: tuple[str, ...] = ()) -> dict:
    """Load a torch file safely (``weights_only=True``) onto the CPU.

    Raises:
        CheckpointError: if the file is missing, corrupt, holds code objects, is not a dict, or lacks
            ``required`` keys.
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
