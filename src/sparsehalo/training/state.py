"""The state of one run, built from a config: data, model, penalty, method, optimizer and schedule.

:class:`RunState` is what the loop, the hooks and the methods act on.  Methods see it through the small
protocol :class:`sparsehalo.methods.base.RunStateLike` (so ``methods`` never imports ``training``); the
mask a method installs is set with :meth:`RunState.set_mask`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .. import methods, models, penalties, schedules
from ..allocator import keep_freed_memory
from ..config import Config
from ..data import Splits, load_dataset
from ..errors import ConfigError
from ..pruning import Mask, MaskHandle
from ..selection import prunable_parameters
from . import distributed, optimizers
from .distributed import SINGLE, World
from .validate import resolve_device, validate


@dataclass
class RunState:
    """Everything built from a config, ready to train or evaluate."""

    config: Config
    device: torch.device
    data: Splits
    model: nn.Module
    penalty: penalties.Penalty
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    method: methods.Method
    phases: list[int]
    mask: Mask | None = None
    mask_handle: MaskHandle | None = None
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    world: World = SINGLE
    forward: nn.Module | None = None  # what the training step calls: the model, or its DDP wrapper

    def __post_init__(self) -> None:
        if self.forward is None:
            self.forward = self.model

    def phase_of(self, epoch: int) -> tuple[int, int]:
        """(phase index, first epoch of that phase) for a 0-based epoch."""
        first = 0
        for i, n in enumerate(self.phases):
            if epoch < first + n:
                return i, first
            first += n
        return len(self.phases) - 1, first - self.phases[-1]

    def precision(self):
        """(autocast context factory, gradient scaler or None) for ``train.amp``."""
        amp = self.config.train.amp
        if amp == "none":
            return contextlib.nullcontext, None
        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
        if amp not in dtypes:
            raise ConfigError(f"train.amp must be none, bf16 or fp16, got {amp!r}")
        if self.scaler is None and amp == "fp16":
            self.scaler = torch.amp.GradScaler(self.device.type)
        ctx = lambda: torch.autocast(self.device.type, dtype=dtypes[amp])  # noqa: E731
        return ctx, self.scaler

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.data.train.example_shape

    def prunable(self) -> dict[str, torch.Tensor]:
        """The tensors pruning acts on (``prune.types`` / ``prune.biases``)."""
        p = self.config.prune
        return prunable_parameters(self.model, types=tuple(p.types), biases=p.biases)

    def set_mask(self, mask: Mask | None) -> None:
        """Make ``mask`` the run's mask: apply it and keep pruned weights at zero from now on."""
        if self.mask_handle is not None:
            self.mask_handle.remove()
            self.mask_handle = None
        self.mask = mask
        if mask is not None:
            self.mask_handle = mask.enforce(self.model, self.optimizer)

    @torch.no_grad()
    def model_state(self) -> dict[str, torch.Tensor]:
        """A detached copy of the model's state dict (rewind points)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def start_phase(self, phase: int) -> None:
        """A fresh optimizer (network and penalty groups) and schedule for ``phase``; re-binds the mask."""
        cfg = self.config
        lr = self.method.phase_lr(self, phase)
        self.optimizer = optimizers.build(cfg, list(self.model.parameters()), self.penalty, lr)
        steps = self.steps_per_epoch * self.phases[phase]
        self.scheduler = schedules.build(self.optimizer, cfg.schedule, steps, self.steps_per_epoch)
        if self.mask is not None:
            self.set_mask(self.mask)

    def shared_tensors(self) -> list[torch.Tensor]:
        """What every rank must hold alike: the network's and the penalty's state and the mask."""
        tensors = [*self.model.state_dict(keep_vars=True).values(), *self.penalty.state_dict(keep_vars=True).values()]
        tensors += list(self.mask.values()) if self.mask is not None else []
        return [t.data for t in tensors if isinstance(t, torch.Tensor)]

    def sync_from_main(self) -> None:
        """Give every rank rank 0's network, penalty and mask (after a method acted at a phase start)."""
        if self.world.distributed:
            distributed.broadcast_(self.shared_tensors(), self.world)

    def check_ranks(self, what: str) -> None:
        """Raise if the ranks hold different networks, penalties or masks (:func:`.distributed.check_same`)."""
        if self.world.distributed:
            distributed.check_same(self.shared_tensors(), self.world, what)

    def train_batches(self, epoch: int):
        """The training batches of ``epoch`` this process steps on (its shard of each global batch)."""
        shard = (self.world.rank, self.world.size) if self.world.distributed else None
        return self.data.train.batches(self.config.data.batch_size, shuffle=True, seed=self.config.train.seed,
                                       epoch=epoch, shard=shard)

    def batches(self, split: str = "test"):
        """Evaluation batches of ``split`` (``"val"`` or ``"test"``)."""
        return getattr(self.data, split).batches(self.config.data.eval_batch_size)

    def eval_splits(self) -> list[str]:
        """The evaluation splits this run has, validation first."""
        return [s for s in ("val", "test") if getattr(self.data, s) is not None]


def build_model(config: Config, num_classes: int | None = None) -> nn.Module:
    """The config's model, untrained (``num_classes`` fills ``model.kwargs`` when unset)."""
    optional = {} if num_classes is None else {"num_classes": num_classes}
    return models.build(config.model.name, optional, **config.model.kwargs)


def load_data(config: Config, device: torch.device | str = "cpu", validation: bool = True) -> Splits:
    """The config's dataset on ``device`` (its validation split and training subset with ``validation``)."""
    d = config.data
    data = load_dataset(d.name, config.run.data_dir, val_size=d.val_size if validation else 0, seed=config.train.seed,
                        augment=d.augment, kwargs=d.kwargs, in_memory=d.in_memory, workers=d.workers)
    if validation and d.train_size:
        data = _train_subset(data, d.train_size, config.train.seed)
    return data.to(device)


def build(config: Config, device: torch.device | None = None, world: World = SINGLE) -> RunState:
    """Build data, model, penalty, method, and the optimizer and schedule of the first phase.

    The model is initialized from ``train.seed``.  With a distributed ``world`` the process joins the
    process group and the training step calls the model through DDP (:mod:`.distributed`).
    """
    validate(config)  # every setting, before the data is read
    device = distributed.device_for(world, device or resolve_device(config.run.device))
    if config.run.threads > 0:
        torch.set_num_threads(config.run.threads)
    if config.run.keep_freed_memory:
        keep_freed_memory()
    data = load_data(config, device)
    torch.manual_seed(config.train.seed)
    model = build_model(config, data.num_classes).to(device)
    if config.run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    pc = config.penalty
    steps = data.train.num_batches(config.data.batch_size)
    if steps == 0:
        raise ConfigError(f"the training set ({len(data.train)} examples) gives no batch of size {config.data.batch_size}")
    distributed.check_batches(len(data.train), config.data.batch_size, world)
    options = pc.options()
    targeted = options.get("target_sparsity") is not None or options.get("target_macs") is not None
    if targeted and options.get("total_steps") is None:
        options["total_steps"] = steps * config.train.epochs  # target mode: the schedule's time axis
    if options.get("target_macs") is not None and options.get("input_shape") is None:
        options["input_shape"] = list(data.train.example_shape)  # the MACs are counted per example of this shape
    penalty = penalties.build(pc.name, model, **pc.selection(), **options).to(device)
    penalty.check_partition(model)
    method = methods.build(config.method.name, config.method.sparsity, config.method.options)
    distributed.init(world, device)
    forward = distributed.wrap(model, world, device)
    state = RunState(config, device, data, model, penalty, None, None, steps, method, method.phases(config.train.epochs),
                     world=world, forward=forward)
    state.start_phase(0)
    return state


def _train_subset(data: Splits, size: int, seed: int) -> Splits:
    """Keep a random ``size``-example subset of the training split (chosen by seed)."""
    if not 0 < size <= len(data.train):
        raise ConfigError(f"data.train_size must be in 1..{len(data.train)}, got {size}")
    index = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed + 104729))[:size]
    return dataclasses.replace(data, train=data.train.subset(index.sort().values))
