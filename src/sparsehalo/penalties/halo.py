"""HALO: the hierarchical adaptive lasso (Seto, Wells & Zhang, SDM 2021), and its relatives.

With one trainable scale ``lambda_j`` per penalized scalar ``w_j``::

    P(w, lambda) = xi * sum_j |w_j| / (lambda_j**2 + eps**2)  +  psi * R(lambda)

    R = sum_j |lambda_j|                    hyper="l1"         (default)
      = | sum_j |lambda_j| - budget |       hyper="budget"
      = ( sum_j |lambda_j| - budget )**2    hyper="budget_sq"

For fixed ``lambda`` this is an adaptive lasso (weight ``j`` is soft-thresholded at
``xi / lambda_j**2``); minimizing over ``lambda_j`` (hyper="l1", eps=0) gives
``lambda_j* = (2 xi |w_j| / psi)**(1/3)`` and a bridge penalty of exponent 1/3 on ``w``.

Numerical safety: ``lambda`` enters squared and the paper's ``lambda -> 0`` limit divides by zero.
We add ``eps**2`` (default ``eps = 1e-3``) to ``lambda**2``: a soft floor that bounds the per-weight
coefficient by ``xi / eps**2``, keeps the value and both gradients finite for every ``lambda``
(including exactly 0, where the gradient on ``lambda`` is ``psi * sign(0) = 0`` plus a finite data
term), and is differentiable, so a scale that shrank can still grow back when its weight is needed.
For ``lambda >> eps`` it changes nothing measurable.  ``eps = 0`` recovers the paper's form exactly.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

from ..errors import ConfigError
from .base import Penalty, scale_key
from .fused import halo_kernel_for, l1_kernel, sws_kernel

# R(S) as a function of S = sum_j |lambda_j| and the budget p: a registry, not an if/elif chain.
HYPER: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "l1": lambda s, p: s,
    "budget": lambda s, p: (s - p).abs(),
    "budget_sq": lambda s, p: (s - p).square(),
}


def set_hyper(penalty: Penalty, *, psi: float, lambda_init: float, hyper: str, budget: float | None, eps: float) -> None:
    """Check and store the hyper-penalty settings shared by HALO and group HALO."""
    who = type(penalty).__name__
    if hyper not in HYPER:
        raise ConfigError(f"{who}: unknown hyper={hyper!r}; choose one of {', '.join(HYPER)}")
    if hyper != "l1" and budget is None:
        raise ConfigError(f"{who}: hyper={hyper!r} needs a budget (the target sum of |lambda|)")
    if psi < 0 or eps < 0:
        raise ConfigError(f"{who}: psi and eps must be >= 0")
    penalty.psi = float(psi)
    penalty.lambda_init = float(lambda_init)
    penalty.hyper = hyper
    penalty.budget = None if budget is None else float(budget)
    penalty.eps = float(eps)


def _weighted_l1(targets, scales, eps2: float) -> torch.Tensor:
    """sum over tensors of sum |w| / (lambda**2 + eps**2)."""
    total = None
    for w, lam in zip(targets, scales):
        term = (w.abs() / (lam.square() + eps2)).sum()
        total = term if total is None else total + term
    return total


class HALO(Penalty):
    """Hierarchical adaptive lasso: one trainable scale per penalized scalar.

    Args:
        params: ``{name: parameter}`` to penalize (see :meth:`Penalty.for_model`).
        xi: weight-penalty strength.
        psi: hyper-penalty strength on the scales.
        lambda_init: initial value of every scale.
        hyper: ``"l1"`` | ``"budget"`` | ``"budget_sq"`` (see the module docstring).
        budget: the target ``p`` of the budget forms (required for them).
        eps: soft floor added as ``eps**2`` to ``lambda**2`` (0 recovers the paper's form).
        scale_weight_decay: weight decay on the scales in :meth:`param_groups` (default 0).
    """

    name = "halo"

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        *,
        xi: float = 1e-4,
        psi: float = 1e-4,
        lambda_init: float = 1.0,
        hyper: str = "l1",
        budget: float | None = None,
        eps: float = 1e-3,
        scale_weight_decay: float = 0.0,
    ):
        super().__init__(params, xi=xi, scale_weight_decay=scale_weight_decay)
        set_hyper(self, psi=psi, lambda_init=lambda_init, hyper=hyper, budget=budget, eps=eps)
        self.scales = nn.ParameterDict(
            {
                scale_key(n): nn.Parameter(torch.full_like(p, lambda_init, memory_format=torch.contiguous_format))
                for n, p in zip(self.names, self._targets)
            }
        )

    def scale_tensors(self) -> tuple[torch.Tensor, ...]:
        """The scales in the order of :attr:`names`."""
        return tuple(self.scales[scale_key(n)] for n in self.names)

    def kernel_call(self):
        scales = self.scale_tensors()
        consts = (len(scales), self.xi, self.psi, self.eps**2, self.hyper, self.budget or 0.0)
        tensors = [*self._targets, *scales]
        return halo_kernel_for(tensors), tensors, consts

    def reference(self) -> torch.Tensor:
        scales = self.scale_tensors()
        weight_term = _weighted_l1(self._targets, scales, self.eps**2)
        s = sum(lam.abs().sum() for lam in scales)
        return self.xi * weight_term + self.psi * HYPER[self.hyper](s, self.budget or 0.0)

    def optimal_scales(self) -> dict[str, torch.Tensor]:
        """Closed-form minimizer over the scales for the current weights (hyper="l1", eps=0):
        ``lambda* = (2 xi |w| / psi)**(1/3)``."""
        return {n: (2 * self.xi * w.detach().abs() / self.psi).pow(1 / 3) for n, w in self.penalized().items()}

    @torch.no_grad()
    def stats(self) -> dict[str, float]:
        flat = torch.cat([lam.detach().abs().flatten() for lam in self.scale_tensors()])
        return {
            "scale_min": flat.min().item(),
            "scale_median": flat.median().item(),
            "scale_mean": flat.mean().item(),
            "scale_max": flat.max().item(),
        }

    def extra_repr(self) -> str:
        extra = f", budget={self.budget:g}" if self.budget is not None else ""
        return f"{super().extra_repr()}, psi={self.psi:g}, hyper={self.hyper}{extra}, eps={self.eps:g}"


class L1(Penalty):
    """Lasso: HALO with every scale frozen at ``lambda_init``::

        P(w) = xi / lambda_init**2 * sum_j |w_j|
    """

    name = "l1"

    def __init__(self, params: Mapping[str, torch.Tensor], *, xi: float = 1e-4, lambda_init: float = 1.0, **kwargs):
        super().__init__(params, xi=xi, **kwargs)
        if lambda_init == 0:
            raise ConfigError("L1: lambda_init must be non-zero")
        self.lambda_init = float(lambda_init)

    def kernel_call(self):
        return l1_kernel, list(self._targets), (self.xi / self.lambda_init**2,)

    def reference(self) -> torch.Tensor:
        coef = self.xi / self.lambda_init**2
        return coef * sum(w.abs().sum() for w in self._targets)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lambda_init={self.lambda_init:g}"


class SWS(Penalty):
    """Shared-scale hierarchical lasso: one trainable scalar ``lambda`` for all weights::

        P(w, lambda) = xi * sum_j |w_j| / (lambda**2 + eps**2) + psi * lambda**2
    """

    name = "sws"

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        *,
        xi: float = 1e-4,
        psi: float = 1e-4,
        lambda_init: float = 1.0,
        eps: float = 1e-3,
        scale_weight_decay: float = 0.0,
    ):
        super().__init__(params, xi=xi, scale_weight_decay=scale_weight_decay)
        if psi < 0 or eps < 0:
            raise ConfigError("SWS: psi and eps must be >= 0")
        self.psi = float(psi)
        self.eps = float(eps)
        self.lambda_init = float(lambda_init)
        device = self._targets[0].device
        self.scale = nn.Parameter(torch.tensor(float(lambda_init), device=device, dtype=self._targets[0].dtype))

    def kernel_call(self):
        return sws_kernel, [*self._targets, self.scale], (self.xi, self.psi, self.eps**2)

    def reference(self) -> torch.Tensor:
        l1 = sum(w.abs().sum() for w in self._targets)
        lam2 = self.scale.square()
        return self.xi * l1 / (lam2 + self.eps**2) + self.psi * lam2

    @torch.no_grad()
    def stats(self) -> dict[str, float]:
        v = self.scale.abs().item()
        return {"scale_min": v, "scale_median": v, "scale_mean": v, "scale_max": v}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, psi={self.psi:g}, eps={self.eps:g}"
