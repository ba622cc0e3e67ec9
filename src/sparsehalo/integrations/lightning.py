"""A Lightning callback that trains a LightningModule with a sparsehalo penalty, then prunes it.

::

    from sparsehalo.integrations.lightning import SparsehaloCallback

    cb = SparsehaloCallback("halo", xi=1e-4, psi=1e-4, target_sparsity=0.98, prune_sparsity=0.98)
    trainer = lightning.Trainer(max_epochs=20, callbacks=[cb])
    trainer.fit(module, loader)          # afterwards: cb.penalty, cb.mask, cb.table

How it works:

- **loss**: at ``setup`` the callback wraps the module's ``training_step`` (an instance attribute, removed
  at ``teardown``) so that the loss it returns (a tensor, or a dict's ``"loss"``) is ``loss + penalty()``.
  The penalty is thus computed inside the step (inside DDP's forward, under the precision plugin's
  autocast), and Lightning's own division by ``accumulate_grad_batches`` applies to it too.
- **optimizer**: at ``on_fit_start`` (after ``configure_optimizers``, before Lightning restores an
  optimizer state on resume) the scales' group is added to the module's optimizer.  An LR scheduler made
  in ``configure_optimizers`` was made without that group (torch 2.13's ``LambdaLR`` then fails on
  its next step: its per-group lists no longer match the groups), so the group *follows* a reference
  group (the first, by default): it copies that group's settings (momentum, betas, a scheduler's keys
  such as ``initial_lr``) with its rates times ``lr / ref_initial_lr``, except its weight decay, which is
  the penalty's ``scale_weight_decay`` (default 0); the torch schedulers of that optimizer get the
  reference group's entry in their per-group lists, rates scaled alike; and before every optimizer step
  the group's rate is set to ``lr * ref_lr / ref_initial_lr``, so it follows any scheduler, a custom one
  too.
- **target mode**: ``total_steps`` is ``trainer.estimated_stepping_batches`` (times
  ``accumulate_grad_batches``: the controller counts training batches, i.e. penalty calls).
- **logging**: ``penalty/value`` every step and the penalty's ``stats()`` as ``penalty/<name>`` every
  epoch, through ``pl_module.log`` (the epoch values with ``sync_dist``: one small all-reduce per epoch).
- **end of training**: ``on_train_end`` prunes the penalized tensors to ``prune_sparsity`` (one global
  magnitude threshold, no fine-tuning), keeps ``self.mask`` / ``self.table``, prints the table on rank 0
  and sends ``sparsity`` / ``sparsity/<tensor>`` to the trainer's loggers (``pl_module.log`` is not allowed
  in that hook).
- **checkpoints**: ``on_save_checkpoint`` stores the penalty's state (scales and controller) under
  ``checkpoint["sparsehalo"][state_key]``; ``on_load_checkpoint`` restores it, so a resumed fit continues
  as if uninterrupted (the optimizer state of the scales comes back with the optimizer's).
- **DDP**: the penalty depends on weights and scales only, never on the data, so with the weights
  identical on every rank (DDP averages their gradients) each rank computes the same scale gradients
  and controller updates: scales stay identical with no communication of their own.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch

from ..penalties import Penalty
from .common import PenaltySpec, require

pl = require("lightning.pytorch", "lightning", "sparsehalo.integrations.lightning")
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

CHECKPOINT_KEY = "sparsehalo"
#: a param group's learning rates (its own and a scheduler's bookkeeping keys, e.g. OneCycleLR's)
LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")
#: torch schedulers' per-group lists (torch 2.13 zips them with the groups, strict): rates, then the rest
SCHEDULER_LR_LISTS = ("base_lrs", "_last_lr", "min_lrs", "max_lrs")
SCHEDULER_LISTS = ("lr_lambdas", "base_momentums", "max_momentums")


def _extend(scheduler: Any, ref: int, ratio: float) -> None:
    """Give ``scheduler`` an entry for the group just added: the reference group's, rates times ``ratio``
    (so the scheduler itself runs the new group at ``ratio`` times the reference's rate)."""
    for child in getattr(scheduler, "_schedulers", None) or ():  # SequentialLR, ChainedScheduler
        _extend(child, ref, ratio)
    groups = len(scheduler.optimizer.param_groups)
    for name in SCHEDULER_LR_LISTS + SCHEDULER_LISTS:
        values = getattr(scheduler, name, None)
        if isinstance(values, list) and len(values) == groups - 1:
            value = values[ref]
            values.append(ratio * value if name in SCHEDULER_LR_LISTS else value)


class SparsehaloCallback(pl.Callback):
    """Add a sparsehalo penalty to a LightningModule's training loss, prune at the end.

    Args:
        penalty: a penalty name (``"halo"``, ``"l1"``, ``"sws"``, ``"mcp"``, ``"scad"``, ``"group_lasso"``,
            ``"group_halo"``, ``"none"``), built at ``on_fit_start`` with ``**options``; or a built
            :class:`~sparsehalo.Penalty` of the module (then give no options).
        prune_sparsity: prune the penalized tensors to exactly this sparsity when training ends (None: no prune).
        prune_scope: ``"global"`` (default) or ``"layer"``.
        submodule: penalize and prune only ``pl_module.get_submodule(submodule)`` (default the whole module).
        lr: the scales' learning rate (default the reference group's initial rate).
        follow_group: index of the group whose settings and schedule the scales' group follows.
        optimizer_index: which of the module's optimizers gets the scales' group.
        add_to_loss: wrap ``training_step`` (False: add ``callback.penalty()`` to your loss yourself,
            e.g. with manual optimization).
        verbose: print what is penalized and the final table on rank 0.
        **options: the penalty's settings (``xi``, ``psi``, ``target_sparsity``, ...) and selection
            keywords (``types``, ``biases``, ``include``, ``exclude``, ``embeddings``).
    """

    def __init__(self, penalty: str | Penalty = "halo", *, prune_sparsity: float | None = None,
                 prune_scope: str = "global", submodule: str | None = None, lr: float | None = None,
                 follow_group: int = 0, optimizer_index: int = 0, add_to_loss: bool = True,
                 verbose: bool = True, **options: Any):
        super().__init__()
        self.spec = PenaltySpec(penalty, options, prune_sparsity, prune_scope)
        self.submodule, self.lr, self.follow_group = submodule, lr, follow_group
        self.optimizer_index, self.add_to_loss, self.verbose = optimizer_index, add_to_loss, verbose
        self.mask = self.table = None
        self._pending: Mapping[str, Any] | None = None  # a checkpoint entry read before the penalty exists
        self._follow: tuple[torch.optim.Optimizer, dict, dict, float, float] | None = None

    @property
    def penalty(self) -> Penalty | None:
        """The penalty (built at ``on_fit_start`` when given by name)."""
        return self.spec.penalty

    @property
    def state_key(self) -> str:
        return self._generate_state_key(penalty=self.spec.name, submodule=self.submodule)

    def _module(self, pl_module: pl.LightningModule) -> torch.nn.Module:
        return pl_module.get_submodule(self.submodule) if self.submodule else pl_module

    # -- the loss ----------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not self.add_to_loss or self._wrapper(pl_module) is not None:
            return
        if not pl_module.automatic_optimization:
            raise RuntimeError("SparsehaloCallback adds the penalty to the loss of automatic optimization; with "
                               "manual optimization pass add_to_loss=False and add callback.penalty() to your loss")
        step = pl_module.training_step  # the class's, or another SparsehaloCallback's wrapper

        @functools.wraps(step)
        def training_step(*args: Any, **kwargs: Any):
            return self._with_penalty(pl_module, step(*args, **kwargs))

        training_step.sparsehalo_callback = self
        pl_module.training_step = training_step

    def _wrapper(self, pl_module: pl.LightningModule):
        """This callback's wrapper in the chain of instance-level ``training_step`` wrappers, or None."""
        fn = vars(pl_module).get("training_step")
        while fn is not None and getattr(fn, "sparsehalo_callback", None) is not None:
            if fn.sparsehalo_callback is self:
                return fn
            fn = fn.__wrapped__
        return None

    @staticmethod
    def _unwrap(pl_module: pl.LightningModule) -> None:
        """Remove every SparsehaloCallback's ``training_step`` wrapper (all end their fit together)."""
        fn = vars(pl_module).get("training_step")
        if getattr(fn, "sparsehalo_callback", None) is None:
            return
        while getattr(fn, "sparsehalo_callback", None) is not None:
            fn = fn.__wrapped__
        if getattr(fn, "__self__", None) is pl_module and fn.__func__ is getattr(type(pl_module), "training_step", None):
            del pl_module.training_step
        else:
            pl_module.training_step = fn

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._unwrap(pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._unwrap(pl_module)

    def _with_penalty(self, pl_module: pl.LightningModule, out: Any) -> Any:
        if out is None or self.penalty is None:  # a skipped batch
            return out
        value = self.penalty()
        pl_module.log("penalty/value", value.detach(), on_step=True, on_epoch=False)  # the same on every rank
        if isinstance(out, torch.Tensor):
            return out + value
        if isinstance(out, Mapping) and "loss" in out:
            return {**out, "loss": out["loss"] + value}
        raise TypeError(f"training_step returned {type(out).__name__}; SparsehaloCallback needs a loss tensor "
                        "or a dict with 'loss'")

    # -- building, the optimizer group -------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        module = self._module(pl_module)
        penalty = self.spec.build(module, lambda: trainer.estimated_stepping_batches * trainer.accumulate_grad_batches)
        penalty.to(pl_module.device)
        if self._pending is not None:
            self._load(self._pending)
            self._pending = None
        if self.verbose:
            rank_zero_info(f"sparsehalo {penalty.name}: {penalty.summary(module)}")
        groups = penalty.param_groups()
        if not groups:
            return  # no scales (L1, MCP, ...)
        if not trainer.optimizers:
            raise RuntimeError("SparsehaloCallback: the module has no optimizer for the penalty's scales")
        optimizer = trainer.optimizers[self.optimizer_index]
        if self.spec.in_optimizer(optimizer):
            return  # the user put them in the optimizer themselves
        ref = optimizer.param_groups[self.follow_group]
        ref_initial = float(ref.get("initial_lr", ref["lr"]))
        base = float(self.lr if self.lr is not None else ref_initial)
        ratio = base / ref_initial if ref_initial else 1.0
        group = {k: v for k, v in ref.items() if k not in ("params", "name")}
        group.update({k: ratio * float(ref[k]) for k in LR_KEYS if k in ref})
        group.update(groups[0])  # params, weight_decay (the penalty's), name
        optimizer.add_param_group(group)
        for config in trainer.lr_scheduler_configs:
            if getattr(config.scheduler, "optimizer", None) is optimizer:
                _extend(config.scheduler, self.follow_group, ratio)
        self._follow = (optimizer, ref, optimizer.param_groups[-1], ref_initial, base)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self._follow is None:
            return
        target, ref, group, ref_initial, base = self._follow
        if getattr(optimizer, "_optimizer", optimizer) is target and ref_initial:
            group["lr"] = base * float(ref["lr"]) / ref_initial

    # -- logging, pruning --------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.penalty is not None:
            stats = self.spec.metrics()
            if stats:
                pl_module.log_dict(stats, on_step=False, on_epoch=True, sync_dist=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._follow = None
        if self.spec.prune_sparsity is None:
            return
        self.mask, self.table, metrics = self.spec.prune(self._module(pl_module))
        if self.verbose:
            rank_zero_info(f"pruned to {self.spec.prune_sparsity:g} (no fine-tuning):\n{self.table}")
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    # -- checkpoints -------------------------------------------------------------------------
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if self.penalty is not None:
            checkpoint.setdefault(CHECKPOINT_KEY, {})[self.state_key] = self.spec.state()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        entry = checkpoint.get(CHECKPOINT_KEY, {}).get(self.state_key)
        if entry is None:
            rank_zero_warn(f"the checkpoint has no sparsehalo penalty state for {self.state_key}: "
                           "the penalty's scales start afresh")
        elif self.penalty is None:
            self._pending = entry  # restored at on_fit_start, once the penalty is built
        else:
            self._load(entry)

    def _load(self, entry: Mapping[str, Any]) -> None:
        for message in self.spec.load(entry):
            rank_zero_warn(message)
