"""A minimal progress bar on stderr (shown only on a terminal)."""

from __future__ import annotations

import sys
import time


class Progress:
    """One status line, rewritten in place: ``label [#####.....] i/n  key value ...``."""

    def __init__(self, total: int, label: str = "", enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = max(total, 1)
        self.label = label
        self.start = time.perf_counter()
        self.every = max(1, self.total // 40)

    def due(self, i: int) -> bool:
        """Whether step ``i`` (0-based) should refresh the line; lets callers skip host syncs."""
        return self.enabled and ((i + 1) % self.every == 0 or i + 1 == self.total)

    def update(self, i: int, **info: float) -> None:
        if not self.enabled:
            return
        done = (i + 1) / self.total
        width = 24
        bar = "#" * int(done * width) + "." * (width - int(done * width))
        rate = (i + 1) / max(time.perf_counter() - self.start, 1e-9)
        extra = "  ".join(f"{k} {v:.4g}" for k, v in info.items())
        self.stream.write(f"\r{self.label} [{bar}] {i + 1}/{self.total} {rate:.0f} it/s  {extra}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
