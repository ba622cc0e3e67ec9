"""Typed experiment configuration: dataclasses, TOML files, ``--set`` overrides, canonical hash.

A config is the single source of truth of an experiment.  Every section but ``run`` (device, data
location, progress display: how to run, not what to run) and the experiment ``name`` enters the
canonical hash, which names the run directory: ``<out>/<name>-<hash>``.  Re-running the same config
finds the same directory and resumes or skips it.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError


@dataclass
class ModelConfig:
    name: str = "lenet300"
    kwargs: dict = field(default_factory=dict)


@dataclass
class DataConfig:
    name: str = "mnist"
    batch_size: int = 100
    eval_batch_size: int = 1000
    val_size: int = 0  # examples carved from the training set for validation (0: none)
    augment: bool = False  # the dataset's standard training augmentation (CIFAR: random crop pad 4 + flip)
    train_size: int = 0  # train on a random subset of this many examples (0: all), for quick runs


@dataclass
class PenaltyConfig:
    """Which penalty, its settings, and which parameters it acts on.

    Settings left at ``None`` take the penalty class's own default; setting one the class does not
    take (``psi`` for ``l1``) is an error, not silently ignored.
    """

    name: str = "none"
    xi: float | None = None
    psi: float | None = None
    lambda_init: float | None = None
    hyper: str | None = None
    budget: float | None = None
    eps: float | None = None
    scale_weight_decay: float | None = None
    scale_lr: float | None = None  # None: the network's learning rate
    scale_momentum: float | None = None  # None: the network's momentum
    types: list[str] = field(default_factory=lambda: ["Conv2d", "Linear"])
    biases: bool = False
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)

    def options(self) -> dict[str, Any]:
        """Keyword arguments for the penalty class (only the settings that were given)."""
        keys = ("xi", "psi", "lambda_init", "hyper", "budget", "eps", "scale_weight_decay")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def selection(self) -> dict[str, Any]:
        return {"types": tuple(self.types), "biases": self.biases, "include": tuple(self.include), "exclude": tuple(self.exclude)}


@dataclass
class MethodConfig:
    """How the sparse network is obtained (see :mod:`sparsehalo.methods`).

    ``oneshot`` trains once and prunes at every ``prune.levels`` with no fine-tuning; the others
    (``finetune``, ``gmp``, ``imp``, ``snip``, ``random``) reach ``sparsity`` themselves within the
    same ``train.epochs`` budget.  ``options`` are the method's own settings.
    """

    name: str = "oneshot"
    sparsity: float = 0.0
    options: dict = field(default_factory=dict)


@dataclass
class OptimConfig:
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, applied once per optimizer step to every parameter group.

    ``milestones`` / ``step_size`` are counted in ``unit`` ("epoch" or "step").
    """

    name: str = "cosine"  # constant | cosine | step | multistep
    milestones: list[float] = field(default_factory=list)
    step_size: float = 0.0
    gamma: float = 0.1
    unit: str = "epoch"


@dataclass
class TrainConfig:
    epochs: int = 30
    seed: int = 0
    amp: str = "none"  # mixed precision of forward and loss: none | bf16 | fp16 (fp16 uses a gradient scaler)


@dataclass
class PruneConfig:
    """Which tensors are pruned, and the levels evaluated during and after training."""

    levels: list[float] = field(default_factory=lambda: [0.9, 0.95, 0.98, 0.99, 0.995])
    scope: str = "global"
    types: list[str] = field(default_factory=lambda: ["Conv2d", "Linear"])
    biases: bool = False
    eps: float = 1e-3  # "natural" sparsity threshold: |w| <= eps


@dataclass
class RunConfig:
    """How to run (not part of the hash)."""

    device: str = "auto"
    data_dir: str | None = None
    progress: bool = True
    threads: int = 0  # torch threads (0: leave PyTorch's default)
    eval_pruned_every: int = 1  # log accuracy after pruning at prune.levels every k epochs (0: only at the end)
    channels_last: bool = False  # NHWC memory format for conv nets on GPUs
    keep_freed_memory: bool = True  # glibc malloc keeps freed blocks (no page faults on per-step gradients)


@dataclass
class Config:
    name: str = "experiment"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    penalty: PenaltyConfig = field(default_factory=PenaltyConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    run: RunConfig = field(default_factory=RunConfig)

    UNHASHED = ("name", "run")

    def to_dict(self) -> dict:
        return asdict(self)

    def hashed_dict(self) -> dict:
        """The settings that change the result and differ from their defaults, by section.

        Leaving defaults out keeps old run directories findable when a field is added later (with a
        default that reproduces the old behaviour); for the same reason a default must never change.
        """
        default = asdict(Config())
        out = {}
        for section, values in asdict(self).items():
            if section in self.UNHASHED:
                continue
            changed = {k: v for k, v in values.items() if v != default[section][k]}
            if changed:
                out[section] = changed
        return out

    def hash(self) -> str:
        """Canonical hash of everything that changes the result (12 hex digits)."""
        text = json.dumps(self.hashed_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def run_dir(self, out: str | Path) -> Path:
        return Path(out) / f"{self.name}-{self.hash()}"


# -- building configs from dicts ---------------------------------------------------------------
def _check_value(value: Any, tp: Any, key: str) -> Any:
    """Validate (and lightly coerce) ``value`` against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} needs a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_check_value(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} needs a table, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} needs true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r} needs an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r} needs a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r} needs a string, got {value!r}")
        return value
    raise ConfigError(f"config key {key!r}: unsupported type {tp}")


def _from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or 'root'!r} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else f"; known: {', '.join(known)}"
            raise ConfigError(f"unknown config key {prefix + key!r}{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _from_dict(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _check_value(value, tp, prefix + key)
    return cls(**kwargs)


def from_dict(data: dict) -> Config:
    """Build a :class:`Config` from nested dicts, rejecting unknown keys and wrong types."""
    return _from_dict(Config, data)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``key.sub=value``; the value is read as a TOML value, else taken as a string."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value (e.g. train.epochs=15)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``--set`` overrides to a nested dict (a deep copy is returned)."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[path[-1]] = value
    return data


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_toml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a TOML config; ``extends = "other.toml"`` (relative to the file) is read first and
    overridden key by key, so a method's config states only what differs from its base."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    if path.resolve() in _seen:
        raise ConfigError(f"config file {str(path)!r} extends itself")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{str(path)!r}: extends must be a file name")
        data = _deep_merge(read_toml(path.parent / parent, _seen + (path.resolve(),)), data)
    return data


def load(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a TOML config file (or defaults when ``path`` is None) and apply overrides."""
    data: dict = {}
    if path is not None:
        data = read_toml(path)
        data.setdefault("name", Path(path).stem)
    return from_dict(apply_overrides(data, list(overrides)))


def load_json(path: str | Path) -> Config:
    """Read the ``config.json`` a run directory holds."""
    try:
        return from_dict(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read config {str(path)!r}: {exc}") from None
