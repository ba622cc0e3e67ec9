"""The progress bar: ``tqdm.auto`` (a widget in Jupyter, a text bar on a terminal), with an ETA.

Shown only where someone watches: on a terminal or in a notebook kernel.  Piped to a file or a CI log it
stays silent, so logs hold the one line per epoch and not thousands of carriage returns.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def watched(stream) -> bool:
    """Whether ``stream`` is a terminal, or this process is a Jupyter kernel."""
    return bool(getattr(stream, "isatty", lambda: False)()) or "ipykernel" in sys.modules


class Progress:
    """One bar of ``total`` steps: ``label  37%|###   | 173/469 [00:02<00:03, 86.1it/s, loss=0.31, penalty=12]``.

    :meth:`due` says which steps refresh it, so a training loop reads values from the device (a host
    sync) only for those, about 40 times per bar.
    """

    def __init__(self, total: int, label: str = "", enabled: bool = True, stream=None, refresh_s: float = 0.2):
        stream = stream or sys.stderr
        self.total = max(total, 1)
        self.enabled = enabled and watched(stream)
        self.every = max(1, self.total // 40)
        self._bar = tqdm(total=self.total, desc=label, file=stream, leave=False, dynamic_ncols=True, mininterval=refresh_s,
                         disable=not self.enabled)
        self._done = 0

    def due(self, i: int) -> bool:
        """Whether step ``i`` (0-based) should refresh the bar; lets callers skip host syncs."""
        return self.enabled and ((i + 1) % self.every == 0 or i + 1 == self.total)

    def update(self, i: int, **info: float) -> None:
        """Steps ``0..i`` are done; ``info`` is shown after the bar."""
        if not self.enabled:
            return
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in info.items()}, refresh=False)
        self._bar.update(i + 1 - self._done)
        self._done = i + 1

    def close(self) -> None:
        self._bar.close()
