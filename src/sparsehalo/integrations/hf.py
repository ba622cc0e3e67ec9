"""A sparsehalo penalty in ``transformers.Trainer``: a ``TrainerCallback`` plus a small Trainer mixin.

::

    from sparsehalo.integrations.hf import SparsehaloCallback, SparsehaloTrainer

    cb = SparsehaloCallback("halo", xi=1e-4, psi=1e-4, prune_sparsity=0.9)
    trainer = SparsehaloTrainer(model=model, args=args, train_dataset=train, callbacks=[cb])
    trainer.train()                      # afterwards: cb.penalty, cb.mask, cb.table
    model.save_pretrained("out")         # a plain checkpoint of the pruned model

Why a mixin and not only a callback: a ``TrainerCallback`` sees neither the loss nor the optimizer's
construction.  ``Trainer(compute_loss_func=...)`` is called *instead of* the model's own loss (the Trainer
pops the labels), so it would have to recompute every task's loss, and it also runs in evaluation;
``Trainer(optimizers=(opt, None))`` fixes the optimizer before the Trainer knows its step count (target
mode needs it) and bypasses its decay / no-decay groups.  :class:`SparsehaloTrainerMixin` overrides the
two documented extension points instead, each calling the Trainer's own method first:

- ``compute_loss``: the model's loss plus ``penalty()``, in training only (``model.training`` and grad
  enabled: evaluation losses stay the model's).  Where the Trainer will not divide the loss by the
  gradient-accumulation steps (``loss_is_scaled_for_ga``: a loss normalized by ``num_items_in_batch``), the
  penalty is divided by them itself, so each optimizer step sees the penalty once;
- ``create_optimizer``: the Trainer's optimizer plus the scales' group (``param_groups``: weight decay
  ``scale_weight_decay``, default 0).  The Trainer makes its LR scheduler after this, so the group
  follows the schedule like the others; a scheduler passed in ``optimizers`` made without the group
  is refused.  The penalty is built here, when ``state.max_steps`` is known (target mode:
  ``total_steps = max_steps * gradient_accumulation_steps``, the penalty calls);
- ``log``: training logs get ``penalty/value`` (the mean since the last log) and ``penalty/<stat>``;
- ``train``: remembers ``resume_from_checkpoint`` so that the penalty's state is read back.

The callback holds the settings and the penalty, zeroes the scales' gradients after each optimizer
step (the Trainer's ``model.zero_grad()`` does not reach them), saves the penalty's state (scales and controller) as
``sparsehalo_penalty.pt`` in each ``checkpoint-N`` folder (``on_save``), and at ``on_train_end`` prunes the
penalized tensors to ``prune_sparsity`` (no fine-tuning), logs ``sparsity`` / ``sparsity/<tensor>`` and
prints the table.  Pruning zeros the weights in place, so ``save_pretrained`` writes the model's own keys.
Under DDP every rank computes the same penalty from the same weights, so the scales stay identical.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from ..penalties import Penalty
from .common import PenaltySpec, require

transformers = require("transformers", "hf", "sparsehalo.integrations.hf")
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

PENALTY_FILE = "sparsehalo_penalty.pt"


class SparsehaloCallback(transformers.TrainerCallback):
    """The penalty of a :class:`SparsehaloTrainer` run: checkpoints, the prune at the end.

    Args:
        penalty: a penalty name, built when the Trainer makes its optimizer with ``**options``; or a built
            :class:`~sparsehalo.Penalty` of the model (then give no options).
        prune_sparsity: prune the penalized tensors to exactly this sparsity when training ends (None: no prune).
        prune_scope: ``"global"`` (default) or ``"layer"``.
        lr: the scales' learning rate (default the Trainer's ``learning_rate``).
        verbose: print what is penalized and the final table on the main process.
        **options: the penalty's settings and selection keywords (embeddings are left out by default).
    """

    def __init__(self, penalty: str | Penalty = "halo", *, prune_sparsity: float | None = None,
                 prune_scope: str = "global", lr: float | None = None, verbose: bool = True, **options: Any):
        self.spec = PenaltySpec(penalty, options, prune_sparsity, prune_scope)
        self.lr, self.verbose = lr, verbose
        self.mask = self.table = None
        self.trainer: SparsehaloTrainerMixin | None = None  # set by the trainer

    @property
    def penalty(self) -> Penalty | None:
        """The penalty (built with the optimizer when given by name)."""
        return self.spec.penalty

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer is None:
            raise RuntimeError("SparsehaloCallback needs a SparsehaloTrainer (or a Trainer with "
                               "SparsehaloTrainerMixin): a plain Trainer would train without the penalty")
        self.on_optimizer_step(args, state, control)

    def on_optimizer_step(self, args, state, control, **kwargs):
        # The Trainer zeroes gradients with model.zero_grad(), which does not reach the scales.
        if self.penalty is not None:
            self.penalty.zero_grad(set_to_none=True)

    def on_save(self, args, state, control, **kwargs):
        if self.penalty is None or not args.should_save:
            return
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if os.path.isdir(folder):
            torch.save(self.spec.state(), os.path.join(folder, PENALTY_FILE))
        else:
            warnings.warn(f"no checkpoint folder {folder}: the penalty's state was not saved", stacklevel=2)

    def load(self, checkpoint: str) -> None:
        """Restore the penalty's state saved in the Trainer checkpoint folder ``checkpoint``."""
        path = os.path.join(checkpoint, PENALTY_FILE)
        if not os.path.isfile(path):
            warnings.warn(f"{checkpoint} has no {PENALTY_FILE}: the penalty's scales start afresh", stacklevel=2)
            return
        device = next(iter(self.penalty.state_dict().values()), torch.zeros(())).device
        for message in self.spec.load(torch.load(path, map_location=device, weights_only=True)):
            warnings.warn(message, stacklevel=2)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.spec.prune_sparsity is None or model is None:
            return
        self.mask, self.table, metrics = self.spec.prune(model)
        if self.verbose and state.is_world_process_zero:
            print(f"pruned to {self.spec.prune_sparsity:g} (no fine-tuning):\n{self.table}")
        if self.trainer is not None:
            self.trainer.log(metrics)


class SparsehaloTrainerMixin:
    """Adds the :class:`SparsehaloCallback`'s penalty to a Trainer's loss and optimizer (see the module
    docstring); put it before the Trainer class: ``class MyTrainer(SparsehaloTrainerMixin, Seq2SeqTrainer)``."""

    def _sparsehalo(self) -> SparsehaloCallback:
        cb = self.__dict__.get("_sparsehalo_cb")
        if cb is None:
            found = [c for c in self.callback_handler.callbacks if isinstance(c, SparsehaloCallback)]
            if len(found) != 1:
                raise ValueError(f"{type(self).__name__} needs exactly one SparsehaloCallback in its callbacks, "
                                 f"found {len(found)}")
            cb = self._sparsehalo_cb = found[0]
            cb.trainer = self
        return cb

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        path = resume_from_checkpoint
        if path is True:
            path = get_last_checkpoint(self.args.output_dir)
        self._sparsehalo_resume = path or None
        self._sparsehalo_sum, self._sparsehalo_count = None, 0
        self._sparsehalo()
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        cb = self._sparsehalo()
        new = cb.penalty is None
        penalty = cb.spec.build(self.model, lambda: self.state.max_steps * self.args.gradient_accumulation_steps)
        targets = list(penalty.penalized().values())
        if targets:
            penalty.to(targets[0].device)
        if new and cb.verbose and self.is_world_process_zero():
            print(f"sparsehalo {penalty.name}: {penalty.summary(self.model)}")
        if getattr(self, "_sparsehalo_resume", None):
            cb.load(self._sparsehalo_resume)
        groups = penalty.param_groups(lr=cb.lr)
        if groups and not cb.spec.in_optimizer(optimizer):
            if self.lr_scheduler is not None:
                raise ValueError("the LR scheduler passed to the Trainer was made without the penalty's scales: "
                                 "pass an optimizer with penalty.param_groups() in it, or let the Trainer make both")
            optimizer.add_param_group(groups[0])
        return optimizer

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        penalty = self._sparsehalo().penalty
        if penalty is None or not (model.training and torch.is_grad_enabled()):
            return out
        value = penalty()
        scaled = getattr(self, "loss_is_scaled_for_ga", None)
        if scaled is None:  # the Trainer's own rule (training_step)
            scaled = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or \
                self.compute_loss_func is not None
        steps = getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        added = value / steps if scaled else value
        total = getattr(self, "_sparsehalo_sum", None)
        self._sparsehalo_sum = value.detach() if total is None else total + value.detach()
        self._sparsehalo_count = getattr(self, "_sparsehalo_count", 0) + 1
        if return_outputs:
            loss, outputs = out
            return loss + added, outputs
        return out + added

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        cb = self._sparsehalo()
        if "loss" in logs and cb.penalty is not None and getattr(self, "_sparsehalo_count", 0):
            logs["penalty/value"] = float(self._sparsehalo_sum) / self._sparsehalo_count
            self._sparsehalo_sum, self._sparsehalo_count = None, 0
            logs.update(cb.spec.metrics())
        super().log(logs, *args, **kwargs)


class SparsehaloTrainer(SparsehaloTrainerMixin, transformers.Trainer):
    """``transformers.Trainer`` with :class:`SparsehaloTrainerMixin`: give it one :class:`SparsehaloCallback`."""
