"""Learning-rate schedules as step -> factor functions, and their registry.

The one :class:`torch.optim.lr_scheduler.LambdaLR` built by :func:`build` multiplies the initial
learning rate of *every* parameter group (the network's and the penalty's) by ``factor(step)``, and
the training loop calls ``scheduler.step()`` exactly once after each optimizer step.  There is one
scheduler and one optimizer, so the decay can never be applied twice or to the wrong optimizer.
"""

from __future__ import annotations

import bisect
import math
from typing import Callable

import torch

from .config import ScheduleConfig
from .errors import ConfigError
from .registry import Registry

Factor = Callable[[int], float]

#: ``name -> fn(cfg, total_steps, steps_per_epoch) -> factor``; ``schedule.name`` picks one.
SCHEDULES: Registry[Callable[[ScheduleConfig, int, int], Factor]] = Registry("schedule")


def _to_steps(value: float, unit: str, steps_per_epoch: int) -> int:
    return int(round(value * steps_per_epoch)) if unit == "epoch" else int(round(value))


@SCHEDULES.register("constant")
def constant(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int) -> Factor:
    """``1``: the initial learning rate throughout."""
    return lambda step: 1.0


@SCHEDULES.register("cosine")
def cosine(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int) -> Factor:
    """``0.5 * (1 + cos(pi * step / total_steps))``: from 1 down to 0 at the last step."""
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


@SCHEDULES.register("step")
def step(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int) -> Factor:
    """``gamma ** floor(step / step_size)``."""
    size = _to_steps(cfg.step_size, cfg.unit, steps_per_epoch)
    if size <= 0:
        raise ConfigError("schedule 'step' needs schedule.step_size > 0")
    return lambda s: cfg.gamma ** (s // size)


@SCHEDULES.register("multistep")
def multistep(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int) -> Factor:
    """``gamma ** (number of milestones <= step)``."""
    marks = sorted(_to_steps(m, cfg.unit, steps_per_epoch) for m in cfg.milestones)
    if not marks:
        raise ConfigError("schedule 'multistep' needs schedule.milestones")
    return lambda s: cfg.gamma ** bisect.bisect_right(marks, s)


def factor_fn(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int) -> Factor:
    """The factor ``step -> lr / initial lr`` of schedule ``cfg.name``.

    Raises:
        ConfigError: for an unknown schedule or unit, or settings the schedule needs and lacks.
    """
    fn = SCHEDULES.get(cfg.name)
    if cfg.unit not in ("epoch", "step"):
        raise ConfigError(f"schedule.unit must be 'epoch' or 'step', got {cfg.unit!r}")
    return fn(cfg, max(total_steps, 1), steps_per_epoch)


def build(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    """One LambdaLR over all of ``optimizer``'s groups.

    Args:
        optimizer: the run's one optimizer (network and penalty groups).
        cfg: the ``schedule`` section.
        total_steps: optimizer steps of the phase (the cosine reaches 0 at the last one).
        steps_per_epoch: for settings counted in epochs.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor_fn(cfg, total_steps, steps_per_epoch))
