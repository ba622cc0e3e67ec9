"""Every setting of a config checked before any data is read or anything is written.

:func:`validate` runs the fields' range checks (:mod:`sparsehalo.config.checks`), resolves every name
against its registry (dataset, method and its options, optimizer, schedule, pruning scope), checks
that the device exists here, and builds the model and the penalty on the ``meta`` device (no memory,
no data), so a bad ``model.kwargs`` or penalty setting fails in a second, not after an epoch.  A model
given as an import path (your own factory) is not built here: its code may do anything.
"""

from __future__ import annotations

import torch

from .. import methods, models, penalties, schedules
from ..config import Config
from ..config.checks import check_fields
from ..data.registry import DATASETS, normalize_name
from ..errors import ConfigError, SparsehaloError
from ..imports import is_import_path
from ..pruning import SCOPES
from . import loggers, optimizers


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else must name a device this machine has.

    Raises:
        ConfigError: an unknown device name, or a device (CUDA, its index, MPS, ...) that is not here.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but CUDA is not available here (use run.device=auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    try:
        torch.empty(0, device=device)
    except Exception:  # no backend, not built with it, no such device
        raise ConfigError(f"device {name!r} asked for, but it is not available here (use run.device=auto)") from None
    return device


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _check_dataset(config: Config) -> None:
    d = config.data
    if is_import_path(d.name):
        return
    key = normalize_name(d.name)
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {d.name!r} (data.name); choose one of: {', '.join(DATASETS)}")
    if d.kwargs:
        raise ConfigError(f"data.kwargs applies to a user's dataset factory, not to the bundled {d.name!r}")
    if d.augment and DATASETS[key].augment is None:
        have = ", ".join(k for k, e in DATASETS.items() if e.augment is not None)
        raise ConfigError(f"dataset {key!r} has no standard augmentation (data.augment); it applies to: {have}")


def _check_model_and_penalty(config: Config) -> None:
    """Build the model and the penalty on ``meta`` (registered models only)."""
    if is_import_path(config.model.name):
        return
    pc = config.penalty
    options = pc.options()
    if (options.get("target_sparsity") is not None or options.get("target_macs") is not None) and options.get("total_steps") is None:
        options["total_steps"] = 1  # the engine fills in the run's steps; any valid count checks the rest
    try:
        with torch.device("meta"):
            model = models.build(config.model.name, {"num_classes": 10}, **config.model.kwargs)
            penalty = penalties.build(pc.name, model, **pc.selection(), **options)
        penalty.check_partition(model)
    except SparsehaloError:
        raise
    except Exception as exc:  # a constructor's own check (a negative layer size, ...)
        raise ConfigError(f"model {config.model.name!r} with model.kwargs {config.model.kwargs} and penalty "
                          f"{pc.name!r}: {_first_line(exc)}") from None


def validate(config: Config) -> None:
    """Check everything in ``config`` that can be checked without data (see the module docstring).

    Raises:
        ConfigError: naming the first setting that is wrong.
    """
    check_fields(config)
    resolve_device(config.run.device)
    optimizers.check(config)
    schedules.SCHEDULES.get(config.schedule.name)
    SCOPES.get(config.prune.scope)
    _check_dataset(config)
    loggers.check(config.run.loggers)
    methods.build(config.method.name, config.method.sparsity, config.method.options).phases(config.train.epochs)
    _check_model_and_penalty(config)
