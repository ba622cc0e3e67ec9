"""Files written atomically and read safely: bytes, text, JSON, CSV, figures and torch files.

Every write goes to a temporary file in the target's directory, is flushed to disk, then renamed over
the target, so a crash mid-write leaves the previous file intact and a reader never sees half a file.
Torch files are read with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers: a malicious file cannot run code, and a corrupt one gives a
:class:`~sparsehalo.errors.CheckpointError` in one line.

Integrity: a file written with ``checksum=True`` (every torch file, and the JSON a run reads back)
gets a sidecar ``<name>.sha256`` in ``sha256sum`` format (``sha256sum -c`` checks it), and every
read of a file that has one recomputes the SHA-256 of the whole file: one changed byte anywhere gives
an :class:`~sparsehalo.errors.IntegrityError` naming the file.  A crash cannot leave a good file with
a stale sidecar: the sidecar lists the new and the old hash while the file is replaced, then only the
new one.  A file without a sidecar (written before checksums existed, or by someone else) is read
unchecked.
"""

from __future__ import annotations

import csv
import hashlib
import io as _stdio
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

from .errors import CheckpointError, IntegrityError, SparsehaloError


#: ``"<stage>:<file name>:<n>"``: SIGKILL this process at the n-th (1-based) time it reaches that stage
#: of writing that file (stages: ``written``, ``sidecar``, ``replaced``). For the kill tests only.
KILL_ENV = "SPARSEHALO_TEST_KILL"
_reached: dict[tuple[str, str], int] = {}


def _stage(stage: str, path: Path) -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    key = (stage, path.name)
    _reached[key] = _reached.get(key, 0) + 1
    want_stage, _, rest = spec.partition(":")
    name, _, n = rest.rpartition(":")
    if (want_stage, name) == key and str(_reached[key]) == n:
        os.kill(os.getpid(), signal.SIGKILL)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar(path: str | Path) -> Path:
    """``<path>.sha256``: the SHA-256 of ``path`` in ``sha256sum`` format."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def _listed(path: Path) -> list[str]:
    """The hashes ``path``'s sidecar lists for it (empty if there is none or it is unreadable)."""
    try:
        lines = sidecar(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [h for h, _, name in (line.partition("  ") for line in lines) if name == path.name and len(h) == 64]


def verify(path: str | Path) -> None:
    """Check ``path`` against its sidecar, if it has one.

    Raises:
        IntegrityError: the file's SHA-256 is not the one its sidecar lists (or the sidecar is damaged).
    """
    path = Path(path)
    side = sidecar(path)
    if not side.exists():
        return
    listed = _listed(path)
    if not listed:
        raise IntegrityError(f"{str(side)!r} is damaged (no SHA-256 for {path.name}); restore both files or delete both")
    actual = sha256_file(path)
    if actual not in listed:
        raise IntegrityError(f"{str(path)!r} is corrupt: its SHA-256 {actual[:16]}... is not the {listed[0][:16]}... "
                             f"recorded in {side.name} (restore the file, or delete it and {side.name})")


def _write_sidecar(path: Path, hashes: list[str]) -> None:
    atomic_write_bytes(sidecar(path), lambda f: f.write("".join(f"{h}  {path.name}\n" for h in hashes).encode()))


def atomic_write_bytes(path: str | Path, write: Callable[[Any], Any], checksum: bool = False) -> None:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then rename it into place.

    With ``checksum``, also keep ``<path>.sha256`` (see the module docstring).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _stage("written", path)
        if checksum:
            new = sha256_file(tmp)
            old = _listed(path) if path.exists() else []
            _write_sidecar(path, [new, *(h for h in old if h != new)])  # both, while either file may be the one on disk
            _stage("sidecar", path)
        os.replace(tmp, path)
        _stage("replaced", path)
        if checksum:
            _write_sidecar(path, [new])
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files an interrupted :func:`atomic_write_bytes` left in ``directory``.

    Only safe while no other process writes there (the run's lock is held)."""
    removed = []
    for p in Path(directory).glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def link_copy(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` a copy of ``src`` that shares its storage (a hard link; a real copy where the file
    system has none), with its own sidecar.  Safe because every write here replaces a file by rename
    and never changes one in place, so a later write of ``src`` leaves ``dst`` as it was."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    digest = (_listed(src) or [sha256_file(src)])[0]
    remove(dst)
    try:
        os.link(src, dst)
    except OSError:
        atomic_write_bytes(dst, lambda f: f.write(src.read_bytes()))
    _write_sidecar(dst, [digest])


def remove(path: str | Path) -> None:
    """Delete ``path`` and its sidecar, if they exist."""
    Path(path).unlink(missing_ok=True)
    sidecar(path).unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, obj: Any, checksum: bool = False) -> None:
    """Indented JSON with a final newline, written atomically (with a sidecar SHA-256 if ``checksum``)."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(path, lambda f: f.write(text.encode()), checksum=checksum)


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parse a JSON file.

    Raises:
        SparsehaloError: naming ``what`` and the path, if it is missing or not JSON.
        IntegrityError: if it has a sidecar SHA-256 that does not match.
    """
    try:
        verify(path)
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
    """Atomically ``torch.save`` a dict of tensors and plain values, with its sidecar SHA-256."""
    atomic_write_bytes(path, lambda f: torch.save(obj, f), checksum=True)


def load_torch(path: str | Path, required: tuple[str, ...] = ()) -> dict:
    """Load a torch file safely (``weights_only=True``) onto the CPU.

    Raises:
        CheckpointError: if the file is missing, corrupt, holds code objects, is not a dict, or lacks
            ``required`` keys.
        IntegrityError: if its sidecar SHA-256 does not match.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found")
    verify(path)
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
