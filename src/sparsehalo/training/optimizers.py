"""The network's optimizer by name (``optim.name``), with the penalty's scales as their own group.

Every optimizer gets two kinds of group: the network's parameters (``optim.*``) and the penalty's
trainable scales (:meth:`sparsehalo.penalties.Penalty.param_groups`), which get

* the learning rate ``penalty.scale_lr`` (unset: the network's, and the same schedule);
* the weight decay ``penalty.scale_weight_decay`` (default 0, never ``optim.weight_decay``: decaying
  HALO's scales would push every weight's penalty up);
* ``sgd``: the momentum ``penalty.scale_momentum`` (unset: ``optim.momentum``) and ``optim.nesterov``;
* ``adam`` / ``adamw``: ``optim.betas`` and ``optim.eps``; there is no momentum to set, Adam's first
  moment (``betas[0]``) plays its part, so ``penalty.scale_momentum`` is an error there.  AdamW's
  decay is decoupled (``lr * weight_decay * p`` each step), Adam's is added to the gradient; for the
  scales both are 0 unless ``penalty.scale_weight_decay`` is set.

Note that Adam normalizes each entry's step by its own gradient scale, so a scale's step no longer
grows with the strength ``xi`` as it does under SGD: a strength tuned under SGD is not one under Adam.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..config import Config, OptimConfig
from ..errors import ConfigError
from ..registry import Registry

Builder = Callable[[list[dict], OptimConfig, float], torch.optim.Optimizer]
OPTIMIZERS: Registry[Builder] = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def _sgd(groups: list[dict], o: OptimConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)


def _betas(o: OptimConfig) -> tuple[float, float]:
    if len(o.betas) != 2 or not all(0.0 <= b < 1.0 for b in o.betas):
        raise ConfigError(f"optim.betas needs two values in [0, 1), got {o.betas}")
    return float(o.betas[0]), float(o.betas[1])


@OPTIMIZERS.register("adam")
def _adam(groups: list[dict], o: OptimConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=lr, betas=_betas(o), eps=o.eps, weight_decay=o.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(groups: list[dict], o: OptimConfig, lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr, betas=_betas(o), eps=o.eps, weight_decay=o.weight_decay)


def check(config: Config) -> None:
    """Reject settings the chosen optimizer does not have (rather than ignore them).

    Raises:
        ConfigError: an unknown ``optim.name``, or a setting of another optimizer changed from its default.
    """
    o, default = config.optim, OptimConfig()
    OPTIMIZERS.get(o.name)
    if o.name == "sgd":
        changed = [k for k in ("betas", "eps") if getattr(o, k) != getattr(default, k)]
    else:
        changed = [k for k in ("momentum", "nesterov") if getattr(o, k) != getattr(default, k)]
        if config.penalty.scale_momentum is not None:
            changed.append("penalty.scale_momentum")
    if changed:
        names = ", ".join(k if "." in k else f"optim.{k}" for k in changed)
        raise ConfigError(f"{names} does not apply to optim.name={o.name!r}; see sparsehalo.training.optimizers")


def build(config: Config, model_params: list, penalty, lr: float) -> torch.optim.Optimizer:
    """The optimizer of one phase: the network's parameters at ``lr``, then the penalty's scale group."""
    check(config)
    pc = config.penalty
    groups = [{"params": model_params, "name": "model"}]
    if config.optim.name == "sgd":
        groups += penalty.param_groups(lr=pc.scale_lr, momentum=pc.scale_momentum)
    else:
        groups += penalty.param_groups(lr=pc.scale_lr)
    return OPTIMIZERS.get(config.optim.name)(groups, config.optim, lr)
