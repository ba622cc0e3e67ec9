"""The config's sections and the :class:`Config` with its canonical hash.

Every section but ``run`` (how to run, not what to run) and the experiment ``name`` enters the hash,
which names the run directory ``<out>/<name>-<hash>``; settings left at their default are left out
of it, so adding a field (with a default that keeps the old behaviour) renames no run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .checks import between, finite_values, items, one_of, run_name
from .penalty import PenaltyConfig
from .values import help_field as _field

_COUNT = between(0, 10**9)  # a count of examples (0: none / all)


@dataclass
class ModelConfig:
    name: str = _field("lenet300", "the network: a name of the model registry (sparsehalo.models.MODELS), or your own "
                       "factory as 'package.module:function' or 'file.py:function' (imported from the current directory)")
    kwargs: dict = _field(help="keyword arguments of the model (num_classes defaults to the dataset's where the "
                          "constructor takes it)", factory=dict,
                          check=finite_values)


@dataclass
class DataConfig:
    name: str = _field("mnist", "the dataset: a name of the dataset registry (sparsehalo.data), or your own factory "
                       "'package.module:function' returning map-style datasets (see sparsehalo.data.user)")
    kwargs: dict = _field(help="keyword arguments of your dataset factory (data_dir is passed where it takes one)", factory=dict,
                          check=finite_values)
    in_memory: str = _field("auto", "your dataset: stack it in memory (yes), read it each epoch (no, for random "
                            "per-item transforms), or stack it where it takes at most 1/4 of memory (auto)",
                            check=one_of("auto", "yes", "no"))
    workers: int = _field(0, "your dataset read each epoch: DataLoader worker processes", check=between(0, 256))
    batch_size: int = _field(100, "training batch size", check=between(1, 10**7))
    eval_batch_size: int = _field(1000, "batch size of evaluation", check=between(1, 10**7))
    val_size: int = _field(0, "examples carved from the training set for validation (0: none)", check=_COUNT)
    augment: bool = _field(False, "the dataset's standard training augmentation (CIFAR: random crop pad 4 + flip)")
    train_size: int = _field(0, "train on a random subset of this many examples (0: all), for quick runs", check=_COUNT)


@dataclass
class MethodConfig:
    """How the sparse network is obtained (see :mod:`sparsehalo.methods`).

    ``oneshot`` trains once and prunes at every ``prune.levels`` with no fine-tuning; the others
    (``finetune``, ``gmp``, ``imp``, ``snip``, ``random``) reach ``sparsity`` themselves within the
    same ``train.epochs`` budget.  ``options`` are the method's own settings.
    """

    name: str = _field("oneshot", "how the sparse network is obtained: a name of the method registry (sparsehalo.methods.METHODS)")
    sparsity: float = _field(0.0, "the target of a fixed-sparsity method (ignored by oneshot)", check=between(0, 1, hi_open=True))
    options: dict = _field(help="the method's own settings, checked against its Options", factory=dict, check=finite_values)


@dataclass
class OptimConfig:
    """The network's optimizer (see :mod:`sparsehalo.training.optimizers` for what the penalty's scales get)."""

    name: str = _field("sgd", "the optimizer: a name of sparsehalo.training.optimizers.OPTIMIZERS (sgd | adam | adamw)")
    lr: float = _field(0.1, "initial learning rate of the network", check=between(0, None, lo_open=True))
    momentum: float = _field(0.9, "SGD momentum (sgd only)", check=between(0, 1, hi_open=True))
    weight_decay: float = _field(0.0, "weight decay of the network's parameters (the scales have penalty.scale_weight_decay); "
                                 "adamw: decoupled", check=between(0, None))
    nesterov: bool = _field(False, "Nesterov momentum (sgd only)")
    betas: list[float] = _field(help="adam / adamw: the moment decay rates", factory=lambda: [0.9, 0.999],
                                check=items(between(0, 1, hi_open=True), most=2))
    eps: float = _field(1e-8, "adam / adamw: the denominator's epsilon", check=between(0, None, lo_open=True))


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, applied once per optimizer step to every parameter group.

    ``milestones`` / ``step_size`` are counted in ``unit`` ("epoch" or "step").
    """

    name: str = _field("cosine", "learning-rate schedule: a name of the schedule registry (sparsehalo.schedules.SCHEDULES)")
    milestones: list[float] = _field(help="multistep: where the rate is multiplied by gamma, in units", factory=list,
                                     check=items(between(0, None)))
    step_size: float = _field(0.0, "step: the rate is multiplied by gamma every step_size units", check=between(0, None))
    gamma: float = _field(0.1, "the factor of step and multistep", check=between(0, None, lo_open=True))
    unit: str = _field("epoch", "what milestones and step_size count: epoch | step", check=one_of("epoch", "step"))


@dataclass
class TrainConfig:
    epochs: int = _field(30, "epochs in all (every phase of the method counted)", check=between(1, 10**6))
    seed: int = _field(0, "seed of the initialization, the data order and the validation split", check=between(0, 2**32 - 1))
    amp: str = _field("none", "mixed precision of forward and loss: none | bf16 | fp16 (fp16 uses a gradient scaler; "
                      "checked by sparsehalo.training)", check=one_of("none", "bf16", "fp16"))


@dataclass
class PruneConfig:
    """Which tensors are pruned, and the levels evaluated during and after training."""

    levels: list[float] = _field(help="sparsities evaluated after magnitude pruning", factory=lambda: [0.9, 0.95, 0.98, 0.99, 0.995],
                                 check=items(between(0, 1, hi_open=True), most=100))
    scope: str = _field("global", "one threshold for all tensors or one per tensor: a name of "
                        "sparsehalo.pruning.threshold.SCOPES (global | layer)")
    types: list[str] = _field(help="module types whose parameters are pruned", factory=lambda: ["Conv2d", "Linear"], check=items())
    biases: bool = _field(False, "prune biases as well as weights")
    eps: float = _field(1e-3, '"natural" sparsity threshold: |w| <= eps counts as zero', check=between(0, None))


@dataclass
class RunConfig:
    """How to run (not part of the hash)."""

    device: str = _field("auto", "auto | cpu | cuda | cuda:N")
    data_dir: str | None = _field(None, "where datasets are found and downloaded to (unset: the default cache)")
    progress: bool = _field(True, "show a progress bar")
    loggers: list[str] = _field(help="where numbers go besides metrics.csv: names of "
                                "sparsehalo.training.loggers.LOGGERS (tensorboard: RUN/tensorboard/)",
                                factory=list, check=items(most=8))
    log_every: int = _field(50, "optimizer steps between per-step log entries (loss, penalty, lr) of the loggers",
                            check=between(1, 10**9))
    threads: int = _field(0, "torch threads (0: leave PyTorch's default)", check=between(0, 4096))
    eval_pruned_every: int = _field(1, "log accuracy after pruning at prune.levels every k epochs (0: only at the end)",
                                    check=between(0, None))
    keep_checkpoints: int = _field(1, "checkpoints kept: 1 = checkpoint.pt only (the last epoch; resume and prune read it); "
                                   "k > 1 = also checkpoints/epoch-E.pt of the k newest epochs; 0 = checkpoint.pt is deleted "
                                   "once summary.json is written", check=between(0, 10000))
    channels_last: bool = _field(False, "NHWC memory format for conv nets on GPUs")
    keep_freed_memory: bool = _field(True, "glibc malloc keeps freed blocks (no page faults on per-step gradients)")


@dataclass
class Config:
    name: str = _field("experiment", "the experiment's name: the run directory is <out>/<name>-<hash> (not hashed)",
                       check=run_name)
    model: ModelConfig = _field(help="the network", factory=ModelConfig)
    data: DataConfig = _field(help="the dataset and batches", factory=DataConfig)
    penalty: PenaltyConfig = _field(help="the shrinkage penalty", factory=PenaltyConfig)
    method: MethodConfig = _field(help="how the sparse network is obtained", factory=MethodConfig)
    optim: OptimConfig = _field(help="the network's optimizer", factory=OptimConfig)
    schedule: ScheduleConfig = _field(help="the learning-rate schedule", factory=ScheduleConfig)
    train: TrainConfig = _field(help="the training budget", factory=TrainConfig)
    prune: PruneConfig = _field(help="pruning and its evaluation", factory=PruneConfig)
    run: RunConfig = _field(help="how to run (not hashed)", factory=RunConfig)

    UNHASHED = ("name", "run")

    def to_dict(self) -> dict:
        """Nested plain values, as ``config.json`` holds them."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if hasattr(value, "to_dict") else asdict(value) if dataclasses.is_dataclass(value) else value
        return out

    def hashed_dict(self) -> dict:
        """The settings that change the result and differ from their defaults, by section.

        Leaving defaults out keeps old run directories findable when a field is added later (with a
        default that reproduces the old behaviour); for the same reason a default must never change.
        """
        default = Config().to_dict()
        out = {}
        for section, values in self.to_dict().items():
            if section in self.UNHASHED:
                continue
            base = default[section]
            changed = {k: v for k, v in values.items() if k not in base or v != base[k]}
            if changed:
                out[section] = changed
        return out

    def hash(self) -> str:
        """Canonical hash of everything that changes the result (12 hex digits)."""
        text = json.dumps(self.hashed_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def run_dir(self, out: str | Path) -> Path:
        return Path(out) / f"{self.name}-{self.hash()}"
