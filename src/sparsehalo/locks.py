"""One writer per run directory: an exclusive ``flock`` on ``<run>/run.lock``.

The lock file holds the holder's pid and host (JSON), for people and for the error a second process
gets.  The lock itself is the kernel's ``flock``, not the file: it goes with the process that held it,
however that process ended, so a lock file left by a dead process is free and the next process takes
it over (:func:`acquire` returns what the old file said, so the takeover can be reported).  There is
no window in which two processes both take over: the loser of the race finds the file locked.

``flock`` is local to one machine; on a network file system (NFS) shared by several hosts its
semantics depend on the server, so the host recorded in the file is part of the message.

A process may acquire the same run more than once (a campaign worker claims a run, then trains it):
the lock is released when the outermost holder releases it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

from . import paths
from .errors import SparsehaloError

_HELD: dict[Path, list[int]] = {}  # lock file -> [open locked descriptor, depth]


class RunInUse(SparsehaloError):
    """Another live process holds the run directory's lock."""


def _fcntl():
    try:
        import fcntl
    except ImportError:  # Windows
        raise SparsehaloError("locking a run directory needs POSIX file locks (fcntl), which this platform lacks") from None
    return fcntl


def holder(run_dir: str | Path) -> dict | None:
    """What the lock file of ``run_dir`` says (``{"pid", "host", "since"}``), or None if it has none
    or it cannot be read. It says who holds the lock only while :func:`is_held` is true."""
    try:
        obj = json.loads(paths.lock(Path(run_dir)).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def describe(info: dict | None) -> str:
    if not info:
        return "another process"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}"


def acquire(run_dir: str | Path) -> tuple[bool, dict | None]:
    """Try to take the lock of ``run_dir`` (made if missing) for this process.

    Returns:
        ``(True, previous)`` if this process now holds it, where ``previous`` is what the lock file
        said before if it was left by a process that no longer holds it (a stale lock taken over),
        else None; ``(False, holder)`` if another process (or another descriptor of this one) holds it.
    """
    fcntl = _fcntl()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = paths.lock(run_dir)
    key = path.absolute()
    if key in _HELD:
        _HELD[key][1] += 1
        return True, None
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False, holder(run_dir)
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if not current:  # released (unlinked) between our open and our lock: lock the new file instead
            os.close(fd)
            continue
        previous = holder(run_dir) if os.fstat(fd).st_size else None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode(), 0)
        _HELD[key] = [fd, 1]
        return True, previous


def release(run_dir: str | Path) -> None:
    """Give up one hold of this process on ``run_dir`` (nothing happens if it holds none)."""
    path = paths.lock(Path(run_dir))
    entry = _HELD.get(path.absolute())
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] > 0:
        return
    del _HELD[path.absolute()]
    path.unlink(missing_ok=True)  # while still locked, so no one locks the file being removed
    os.close(entry[0])


def held_here(run_dir: str | Path) -> bool:
    """Whether this process holds the lock of ``run_dir``."""
    return paths.lock(Path(run_dir)).absolute() in _HELD


def is_held(run_dir: str | Path) -> bool:
    """Whether some process (this one included) holds the lock of ``run_dir`` now."""
    path = paths.lock(Path(run_dir))
    if path.absolute() in _HELD:
        return True
    if not path.exists():
        return False
    fcntl = _fcntl()
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we may just have taken
    return False


@contextlib.contextmanager
def locked(run_dir: str | Path, echo: Callable[[str], None] = lambda s: None) -> Iterator[None]:
    """Hold the lock of ``run_dir`` for the block.

    Raises:
        RunInUse: another process holds it (one line naming its pid and host).
    """
    ok, info = acquire(run_dir)
    if not ok:
        raise RunInUse(f"{str(run_dir)!r} is in use by {describe(info)} (a second process on one run is refused; "
                       f"if that process is gone, its lock is taken over on the next start)")
    if info:
        echo(f"{run_dir}: took over the lock left by {describe(info)}, which no longer holds it")
    try:
        yield
    finally:
        release(run_dir)
