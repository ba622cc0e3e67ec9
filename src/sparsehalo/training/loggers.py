"""Where a run's numbers go: one logger interface, two implementations (``run.loggers``).

- ``csv`` (always on): ``metrics.csv``, one row per finished epoch (the row :func:`.summary.epoch_row` makes).
- ``tensorboard`` (``pip install 'sparsehalo[tensorboard]'``): ``RUN/tensorboard/``, with per step (every
  ``run.log_every`` optimizer steps) the loss, the penalty and the learning rate, and per epoch every
  number of the epoch's row (accuracies, natural sparsity, the penalty's statistics, pruned accuracies)
  and histograms of the penalty's scales and of the prunable weights' magnitudes.  On resume the writer
  purges what an interrupted session logged after the checkpoint, so each step appears once.

The training loop calls :meth:`Logger.log_step` and :meth:`Logger.log_epoch` on rank 0 only.
"""

from __future__ import annotations

import math
from pathlib import Path

from .. import paths
from ..errors import ConfigError
from ..io import write_csv
from ..registry import Registry


class Logger:
    """Receives a run's numbers; every method is optional."""

    def log_step(self, step: int, values: dict[str, float]) -> None:
        """``values`` after optimizer step ``step`` (1-based, counted over the whole run)."""

    def log_epoch(self, state, log) -> None:
        """A finished epoch: ``log`` is the :class:`~.loop.EpochLog` (its ``row`` and ``history``)."""

    def close(self) -> None:
        """Flush and release files (called at the end of the run, and when it fails)."""


LOGGERS: Registry[type[Logger]] = Registry("logger")


@LOGGERS.register("csv")
class CSVLogger(Logger):
    """``metrics.csv``: the whole history, rewritten atomically after every epoch."""

    def __init__(self, run_dir: Path | None = None, resume_step: int = 0):
        pass

    def log_epoch(self, state, log) -> None:
        write_csv(paths.metrics(log.run_dir), log.history, floats=".6g")


def summary_writer():
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line error naming the extra to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("run.loggers names tensorboard, which is not installed: pip install 'sparsehalo[tensorboard]'") from None
    return SummaryWriter


@LOGGERS.register("tensorboard")
class TensorBoardLogger(Logger):
    """Event files under ``RUN/tensorboard/`` (``tensorboard --logdir runs``)."""

    def __init__(self, run_dir: Path, resume_step: int = 0):
        writer = summary_writer()
        # purge_step: events at or after the resumed step, from a session that was cut off, are dropped.
        self.writer = writer(log_dir=str(paths.tensorboard(run_dir)), purge_step=resume_step or None)

    def log_step(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"step/{key}", value, step)

    def log_epoch(self, state, log) -> None:
        step = int(log.row.get("step", log.epoch + 1))
        for key, value in log.row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and key not in ("epoch", "step"):
                self.writer.add_scalar(f"epoch/{key}", value, step)
        for name, scale in state.penalty.named_parameters():
            self.writer.add_histogram(f"scales/{name}", scale.detach().float().cpu(), step)
        for name, weight in state.prunable().items():
            self.writer.add_histogram(f"abs_weight/{name}", weight.detach().abs().float().cpu(), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def check(names: list[str]) -> None:
    """Every name is a logger; an optional one is importable (before any data is read).

    Raises:
        ConfigError: an unknown name, or a logger whose package is missing.
    """
    for name in names:
        LOGGERS.get(name)
    if "tensorboard" in names:
        summary_writer()


def build(names: list[str], run_dir: Path, resume_step: int = 0) -> list[Logger]:
    """The loggers of ``run.loggers`` (``csv`` first and always)."""
    return [LOGGERS.get(name)(run_dir, resume_step) for name in dict.fromkeys(["csv", *names])]
