"""The progress bar (tqdm.auto): on a terminal or in a notebook, with a rate and an ETA; silent in logs."""

import io as stdio
import sys

from sparsehalo.progress import Progress


class Terminal(stdio.StringIO):
    def isatty(self):
        return True


def test_the_bar_shows_on_a_terminal_with_a_rate_and_an_eta():
    stream = Terminal()
    bar = Progress(40, "epoch 1/3", stream=stream, refresh_s=0)
    for i in range(40):
        if bar.due(i):
            bar.update(i, loss=0.5)
    bar.close()
    text = stream.getvalue()
    assert "epoch 1/3" in text and "40/40" in text and "it/s" in text and "<" in text and "loss=0.5" in text


def test_the_bar_is_silent_in_a_log_file_and_shows_in_a_notebook(monkeypatch):
    quiet = stdio.StringIO()
    bar = Progress(10, "x", stream=quiet)
    assert not bar.enabled and not any(bar.due(i) for i in range(10))
    bar.update(9)
    bar.close()
    assert quiet.getvalue() == ""
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    assert Progress(10, "x", stream=stdio.StringIO()).enabled
