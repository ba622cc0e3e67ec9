"""The schedule registry and its errors (the factors of each schedule are tested with the training loop)."""

import pytest
import torch

from sparsehalo import schedules
from sparsehalo.config import ScheduleConfig
from sparsehalo.errors import ConfigError
from sparsehalo.registry import Registry


def test_schedules_are_a_registry():
    assert isinstance(schedules.SCHEDULES, Registry)
    assert schedules.SCHEDULES.names() == ["constant", "cosine", "step", "multistep"]
    assert schedules.SCHEDULES.get("cosine") is schedules.cosine


def test_unknown_schedule_and_unit():
    with pytest.raises(ConfigError, match="unknown schedule 'linear'; known: constant, cosine, step, multistep"):
        schedules.factor_fn(ScheduleConfig(name="linear"), 10, 5)
    with pytest.raises(ConfigError, match="schedule.unit must be 'epoch' or 'step'"):
        schedules.factor_fn(ScheduleConfig(unit="iteration"), 10, 5)
    with pytest.raises(ConfigError, match="needs schedule.step_size > 0"):
        schedules.factor_fn(ScheduleConfig(name="step"), 10, 5)
    with pytest.raises(ConfigError, match="needs schedule.milestones"):
        schedules.factor_fn(ScheduleConfig(name="multistep"), 10, 5)


def test_build_scales_every_group_by_the_factor():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.2}, {"params": [b], "lr": 0.02}], lr=0.1)
    sched = schedules.build(opt, ScheduleConfig(name="step", step_size=1, unit="epoch", gamma=0.5), 8, 2)
    for _ in range(4):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.2 * 0.25, 0.02 * 0.25], rel=1e-12)
