"""``sparsehalo train --nproc N``: N local training processes, as ``torchrun --standalone`` would start.

Why not call torchrun: its agent turns any failure into a multi-line ``ChildFailedError`` report and
exit code 1, while sparsehalo promises one line and its own exit codes (2 bad input, 3 diverged).
This launcher sets the same environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` / ``MASTER_PORT`` on 127.0.0.1), shows rank 0's output, keeps the
other ranks' stderr in a file and prints it only if they fail where rank 0 did not, stops every rank
when one fails, and exits with rank 0's code.  For several machines use torchrun itself
(``--nnodes``, ``--rdzv-backend c10d``): the training code is the same.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _threads(nproc: int) -> str:
    """OMP threads per process: the cores shared out (torchrun uses 1)."""
    return str(max(1, (os.cpu_count() or 1) // nproc))


def launch(argv: list[str], nproc: int, grace_s: float = 10.0) -> int:
    """Run ``python -m sparsehalo ARGV`` in ``nproc`` processes; return the exit code (rank 0's first)."""
    port = free_port()
    base = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(nproc),
                LOCAL_WORLD_SIZE=str(nproc), TORCHELASTIC_RUN_ID="sparsehalo")
    base.setdefault("OMP_NUM_THREADS", _threads(nproc))
    logs, procs = [], []
    try:
        for rank in range(nproc):
            env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank))
            log = None if rank == 0 else tempfile.TemporaryFile()
            logs.append(log)
            procs.append(subprocess.Popen([sys.executable, "-m", "sparsehalo", *argv], env=env,
                                          stdout=None if rank == 0 else subprocess.DEVNULL,
                                          stderr=None if rank == 0 else log))
        codes = _wait(procs, grace_s)
    except KeyboardInterrupt:
        _stop(procs, grace_s)
        return 130
    finally:
        _stop(procs, grace_s)
    for rank, (code, log) in enumerate(zip(codes, logs)):
        if rank and code and not codes[0] and log is not None:
            log.seek(0)
            sys.stderr.write(f"[rank {rank}] " + log.read().decode(errors="replace"))
    return codes[0] or next((c for c in codes if c), 0)


def _wait(procs: list[subprocess.Popen], grace_s: float) -> list[int]:
    """Wait for all.  When one fails, the others get ``grace_s`` to end by themselves (they usually
    fail on the same input, with the same line), then are stopped; a rank stopped so reports 0."""
    deadline = None
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return codes
        if deadline is None and any(c for c in codes if c is not None):
            deadline = time.monotonic() + grace_s
        if deadline is not None and time.monotonic() > deadline:
            running = {i for i, c in enumerate(codes) if c is None}
            _stop(procs, grace_s)
            return [0 if i in running else p.returncode for i, p in enumerate(procs)]
        time.sleep(0.05)


def _stop(procs: list[subprocess.Popen], grace_s: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
