"""HALO: the hierarchical adaptive lasso (Seto, Wells & Zhang, SDM 2021), and its relatives.

With one trainable scale ``lambda_j`` per penalized scalar ``w_j``::

    P(w, lambda) = xi * sum_j |w_j| / (lambda_j**2 + eps**2)  +  psi * R(S),   S = sum_j |lambda_j|

with ``R`` one of the hyper-penalty forms of :mod:`.hyper` (``S``, ``|S - budget|`` or
``(S - budget)**2``).  For fixed ``lambda`` this is an adaptive lasso (weight ``j`` is
soft-thresholded at ``xi / lambda_j**2``); minimizing over ``lambda_j`` (hyper="l1", eps=0) gives
``lambda_j* = (2 xi |w_j| / psi)**(1/3)`` and a bridge penalty of exponent 1/3 on ``w``.

Numerical safety: ``lambda`` enters squared and the paper's ``lambda -> 0`` limit divides by zero.
We add ``eps**2`` (default ``eps = 1e-3``) to ``lambda**2``: a soft floor that bounds the per-weight
coefficient by ``xi / eps**2``, keeps the value and both gradients finite for every ``lambda``
(including exactly 0, where the gradient on ``lambda`` is ``psi * sign(0) = 0`` plus a finite data
term), and is differentiable, so a scale that shrank can still grow back when its weight is needed.
For ``lambda >> eps`` it changes nothing measurable.  ``eps = 0`` recovers the paper's form exactly.

:class:`HierarchicalPenalty` is what HALO and group HALO (:mod:`.group`) share: the settings, the
scales, the value ``xi * sum_k m_k / (lambda_k**2 + eps**2) + psi * R(S)`` for magnitudes ``m_k``
(``|w_j|`` for HALO, ``||w_g||`` for group HALO), and the scale statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from ..errors import ConfigError
from .base import Penalty, option, scale_key, scale_summary
from .hyper import HYPER, HyperForm, hyper_form
from .kernels.elementwise import l1_kernel, sws_kernel
from .kernels.native import halo_kernel_for
from .target import KthSmallest, SparsityController, eager_on_cpu


class HierarchicalPenalty(Penalty):
    """Base of HALO and group HALO: one trainable scale per magnitude, and a hyper-penalty on them.

    Subclasses give :meth:`initial_scales` (the scales, by state-dict key, in the order of
    :meth:`magnitudes`) and :meth:`magnitudes` (one tensor per scale tensor, of its shape).

    Args:
        params: ``{name: parameter}`` to penalize (see :meth:`Penalty.for_model`).
        xi: weight-penalty strength.
        psi: hyper-penalty strength on the scales.
        lambda_init: initial value of every scale.
        hyper: ``"l1"`` | ``"budget"`` | ``"budget_sq"`` (see :mod:`.hyper`).
        budget: the target ``p`` of the budget forms (required for them).
        eps: soft floor added as ``eps**2`` to ``lambda**2`` (0 recovers the unfloored form).
        scale_weight_decay: weight decay on the scales in :meth:`param_groups` (default 0).
        target_sparsity: target mode (:mod:`.target`): the whole penalty is scaled by a strength that
            a controller steers so that the share of penalized weights with ``|w| <= 1e-3`` follows a
            schedule to this sparsity over ``total_steps`` training steps; ``xi`` / ``psi`` are then
            only the starting strength.  ``target_*``: the controller's settings.

    Raises:
        ConfigError: for an unknown ``hyper``, a budget form without a budget, or a negative
            ``psi`` / ``eps``.
    """

    @dataclass
    class Options:
        xi: float = option(1e-4, "weight-penalty strength")
        psi: float = option(1e-4, "hyper-penalty strength on the scales")
        lambda_init: float = option(1.0, "initial value of every scale")
        hyper: str = option("l1", "hyper-penalty form R(S) of S = sum |lambda|: l1 | budget | budget_sq")
        budget: float | None = option(None, "the target sum of |lambda| of the budget forms, which require it")
        eps: float = option(1e-3, "soft floor added as eps**2 to lambda**2 (0: the unfloored form)")
        scale_weight_decay: float = option(0.0, "weight decay on the scales in their optimizer group")
        target_sparsity: float | None = option(None, "target mode: the sparsity the penalty steers its strength to "
                                               "(see sparsehalo.penalties.target)")
        total_steps: int | None = option(None, "target mode: the run's training steps (sparsehalo train fills it in)")
        target_ramp: float = option(0.7, "target mode: fraction of training at which the schedule reaches the target")
        target_schedule: str = option("exp", "target mode: cubic (GMP's ramp) | exp (the density falls "
                                      "geometrically) | constant (the target from step 1)")
        target_gain: float = option(15.0, "target mode: integral gain of the controller on log(strength)")
        target_gain_p: float = option(0.0, "target mode: proportional gain of the controller on log(strength)")
        target_factor: float = option(10.0, "target mode: the strength stays within [1/f, f] times xi / psi")
        target_average: float = option(0.99, "target mode: decay of the weights' running average the controller "
                                       "measures (0: the weights themselves)")
        target_error: str = option("log", "target mode: the controller's error: log (log of the density ratio, "
                                   "clipped to [-1, 1]) | absolute (scheduled - measured sparsity)")
        target_knob: str = option("both", "target mode: what the strength multiplies: pull (the weights' pull, "
                                  "scales untouched) | psi (the hyper-penalty on the scales) | prune (the pull on the weights the final "
                                  "prune removes) | both (psi below 1, prune above)")
        target_zero: str = option("jitter", "target mode: what the controller counts as zero: eps (|w_bar| <= 1e-3) | "
                                  "jitter (|w_bar| <= max(1e-3, |w - w_bar|): at zero within its own jitter)")
        target_start: float = option(1.0, "target mode: the strength at step 0, as a factor on xi / psi")

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
        target_sparsity: float | None = None,
        total_steps: int | None = None,
        target_ramp: float = 0.7,
        target_schedule: str = "exp",
        target_gain: float = 15.0,
        target_gain_p: float = 0.0,
        target_factor: float = 10.0,
        target_average: float = 0.99,
        target_error: str = "log",
        target_knob: str = "both",
        target_zero: str = "jitter",
        target_start: float = 1.0,
    ):
        super().__init__(params, xi=xi, scale_weight_decay=scale_weight_decay)
        who = type(self).__name__
        hyper_form(hyper, budget, who)
        if psi < 0 or eps < 0:
            raise ConfigError(f"{who}: psi and eps must be >= 0")
        self.psi = float(psi)
        self.lambda_init = float(lambda_init)
        self.hyper = hyper
        self.budget = None if budget is None else float(budget)
        self.eps = float(eps)
        initial = self.initial_scales()
        # ParameterDict sorts the keys of a plain dict: the order of the magnitudes is kept here.
        self._scale_keys: tuple[str, ...] = tuple(initial)
        self.scales = nn.ParameterDict({k: nn.Parameter(t) for k, t in initial.items()})
        if target_knob not in ("pull", "psi", "prune", "both"):
            raise ConfigError(f"{who}: target_knob must be pull, psi, prune or both, got {target_knob!r}")
        self.target_knob = target_knob
        self.controller: SparsityController | None = None
        if target_sparsity is not None:
            self.controller = SparsityController(target_sparsity, total_steps, ramp=target_ramp, gain=target_gain,
                                                 gain_p=target_gain_p, schedule=target_schedule, factor=target_factor,
                                                 average=target_average, error=target_error, zero=target_zero,
                                                 start=target_start)
            self.controller.track(self._targets)
            self._kth = KthSmallest()

    def forward(self) -> torch.Tensor:
        """The value; in target mode times the controller's strength, which a call with grad enabled
        (a training step) first updates from the weights' current sparsity."""
        value = super().forward()
        if self.controller is None:
            return value
        if torch.is_grad_enabled():
            self.observe()
        if self.target_knob == "prune":
            return value + self.extra_prune(self.controller.strength())
        if self.target_knob == "both":  # weaker than set: a lighter hyper-penalty; stronger: pull on the prune set
            m = self.controller.strength()
            if eager_on_cpu(m):  # one of the two terms is exactly zero: skip it (the same value and gradients)
                return value + (self.extra_prune(m - 1.0) if float(m) > 1.0 else self.extra_psi(m - 1.0))
            return value + self.extra_psi(m.clamp(max=1.0) - 1.0) + self.extra_prune(m.clamp(min=1.0) - 1.0)
        k = self.controller.strength() - 1.0
        return value + (self.extra_psi(k) if self.target_knob == "psi" else self.extra_pull(k))

    def observe(self) -> None:
        """Target mode, one training step: the controller measures the weights' sparsity."""
        self.controller.update(self._targets)

    def extra_prune(self, m: torch.Tensor) -> torch.Tensor:
        """``m * xi * sum_{j in P} |w_j| / (lambda_j**2 + eps**2)`` with the scales held fixed (knob ``prune``):
        ``P`` = the ``target`` share of smallest magnitudes, the entries the final magnitude prune removes, so
        only they feel the extra pull (``m`` times HALO's own) and the kept weights are left alone."""
        mags = self.magnitudes()
        with torch.no_grad():
            flat = torch.cat([x.detach().reshape(-1) for x in mags])
            k = min(max(1, round(self.controller.target * flat.numel())), flat.numel())
            threshold = self._kth(flat, k)
        total = self._pull_sum([torch.where(x <= threshold, x, 0.0) for x in mags])
        return (m * self.xi).to(total.dtype) * total

    def _pull_sum(self, mags: list[torch.Tensor]) -> torch.Tensor:
        """``sum_j m_j / (lambda_j**2 + eps**2)`` with the scales detached (the extra pulls of target mode)."""
        eps2 = self.eps**2
        return sum((m / (lam.detach().square() + eps2)).sum() for m, lam in zip(mags, self.scale_tensors()))

    def extra_pull(self, k: torch.Tensor) -> torch.Tensor:
        """``k * xi * sum m / (lambda**2 + eps**2)`` with the scales held fixed (knob ``pull``): the weights
        feel ``(1 + k)`` times the pull and the scales' own problem is left as it is."""
        total = self._pull_sum(self.magnitudes())
        return (k * self.xi).to(total.dtype) * total

    def extra_psi(self, k: torch.Tensor) -> torch.Tensor:
        """``k * psi * R(S)`` (knob ``psi``): the hyper-penalty ``(1 + k)`` times as strong, which lowers the
        scales' optimum ``(2 xi |w| / psi)^(1/3)`` and so raises every weight's pull ``xi / lambda**2``."""
        s = sum(lam.abs().sum() for lam in self.scale_tensors())
        return (k * self.psi).to(s.dtype) * self.form.value(s, self.budget or 0.0)

    def reset_scales(self) -> None:
        """Refill every scale with ``lambda_init`` on its weight's current device (e.g. after ``to_empty``)."""
        with torch.no_grad():
            for key, t in self.initial_scales().items():
                if self.scales[key].is_meta or self.scales[key].device != t.device:
                    self.scales[key] = nn.Parameter(t)
                else:
                    self.scales[key].copy_(t)

    @property
    def form(self) -> HyperForm:
        """The hyper-penalty form ``hyper`` (looked up, not stored: a module must stay picklable)."""
        return HYPER[self.hyper]

    def initial_scales(self) -> dict[str, torch.Tensor]:
        """``{state-dict key: tensor filled with lambda_init}``, one per tensor of :meth:`magnitudes`."""
        raise NotImplementedError

    def magnitudes(self) -> list[torch.Tensor]:
        """The magnitudes the scales divide, one tensor per scale tensor (differentiable in the weights)."""
        raise NotImplementedError

    def scale_tensors(self) -> tuple[torch.Tensor, ...]:
        """The scales, in the order of :meth:`magnitudes`."""
        return tuple(self.scales[k] for k in self._scale_keys)

    def reference(self) -> torch.Tensor:
        eps2 = self.eps**2
        weight_term = s = None
        for m, lam in zip(self.magnitudes(), self.scale_tensors()):
            term = (m / (lam.square() + eps2)).sum()
            weight_term = term if weight_term is None else weight_term + term
            t = lam.abs().sum()
            s = t if s is None else s + t
        return self.xi * weight_term + self.psi * self.form.value(s, self.budget or 0.0)

    @torch.no_grad()
    def stats(self) -> dict[str, float]:
        """Summary of ``|lambda|`` (``scale_min`` / ``_median`` / ``_mean`` / ``_max``); in target mode also
        the controller's strength, measured and scheduled sparsity, and the effective ``xi`` / ``psi``."""
        out = {**scale_summary(self.scale_tensors()), **super().stats()}
        if self.controller is not None:
            out.update(self.controller.stats())
            out.update(target_xi=self.xi * out["target_strength"], target_psi=self.psi * out["target_strength"])
        return out

    def extra_repr(self) -> str:
        extra = f", budget={self.budget:g}" if self.budget is not None else ""
        return f"{super().extra_repr()}, psi={self.psi:g}, hyper={self.hyper}{extra}, eps={self.eps:g}"


class HALO(HierarchicalPenalty):
    """Hierarchical adaptive lasso: one trainable scale per penalized scalar (see the module docstring).

    Takes the arguments of :class:`HierarchicalPenalty`; the scales have the shapes of the weights.
    """

    name = "halo"

    def initial_scales(self) -> dict[str, torch.Tensor]:
        return {
            scale_key(n): torch.full_like(p, self.lambda_init, memory_format=torch.contiguous_format)
            for n, p in zip(self.names, self._targets)
        }

    def magnitudes(self) -> list[torch.Tensor]:
        return [w.abs() for w in self._targets]

    def kernel_call(self):
        scales = self.scale_tensors()
        consts = (len(scales), self.xi, self.psi, self.eps**2, self.hyper, self.budget or 0.0)
        tensors = [*self._targets, *scales]
        return halo_kernel_for(tensors), tensors, consts

    def optimal_scales(self) -> dict[str, torch.Tensor]:
        """Closed-form minimizer over the scales for the current weights (hyper="l1", eps=0):
        ``lambda* = (2 xi |w| / psi)**(1/3)``."""
        return {n: (2 * self.xi * w.detach().abs() / self.psi).pow(1 / 3) for n, w in self.penalized().items()}


class L1(Penalty):
    """Lasso: HALO with every scale frozen at ``lambda_init``::

        P(w) = xi / lambda_init**2 * sum_j |w_j|

    Args:
        params: ``{name: parameter}`` to penalize.
        xi: penalty strength.
        lambda_init: the frozen scale (non-zero).
        scale_weight_decay: accepted for symmetry with HALO (L1 has no trainable scales).
    """

    name = "l1"

    @dataclass
    class Options:
        xi: float = option(1e-4, "penalty strength (the lasso's coefficient is xi / lambda_init**2)")
        lambda_init: float = option(1.0, "the frozen scale (non-zero)")
        scale_weight_decay: float = option(0.0, "accepted for symmetry with halo (l1 has no trainable scales)")

    def __init__(self, params: Mapping[str, torch.Tensor], *, xi: float = 1e-4, lambda_init: float = 1.0, scale_weight_decay: float = 0.0):
        super().__init__(params, xi=xi, scale_weight_decay=scale_weight_decay)
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

    Args:
        params: ``{name: parameter}`` to penalize.
        xi, psi, lambda_init, eps, scale_weight_decay: as for HALO (with the one shared scale).
    """

    name = "sws"

    @dataclass
    class Options:
        xi: float = option(1e-4, "weight-penalty strength")
        psi: float = option(1e-4, "strength of the penalty psi * lambda**2 on the shared scale")
        lambda_init: float = option(1.0, "initial value of the shared scale")
        eps: float = option(1e-3, "soft floor added as eps**2 to lambda**2")
        scale_weight_decay: float = option(0.0, "weight decay on the shared scale in its optimizer group")

    def __init__(self, params: Mapping[str, torch.Tensor], *, xi: float = 1e-4, psi: float = 1e-4, lambda_init: float = 1.0,
                 eps: float = 1e-3, scale_weight_decay: float = 0.0):
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
        return scale_summary([self.scale])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, psi={self.psi:g}, eps={self.eps:g}"
