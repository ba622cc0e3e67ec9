"""Target mode: a penalty that steers its own strength so that the weights reach a requested sparsity.

A controller sets a strength ``m = exp(u)`` every training step (a penalty call with grad enabled;
evaluation calls count nothing) from what it measures, and the penalty adds what ``m`` changes:

* **knob** (what ``m`` multiplies): ``"psi"`` adds ``(m - 1) psi R(S)``, the hyper-penalty ``m`` times
  as strong, which lowers the scales' optimum ``(2 xi |w| / psi)^(1/3)`` and so raises every weight's
  pull ``xi / lambda**2`` (by ``m^(2/3)`` at the optimum, bounded by ``xi / eps**2``); ``"pull"`` adds
  ``(m - 1) xi sum |w| / (lambda**2 + eps**2)`` with the scales held fixed (the weights feel ``m`` times
  the pull, the scales' problem is untouched); ``"prune"`` adds ``m xi sum_{j in P} |w_j| / (lambda_j**2 +
  eps**2)``, ``P`` the ``target`` share of smallest magnitudes (the entries the final prune removes), so
  HALO keeps its own strength and only the weights about to be pruned get an extra pull (``m`` is
  then the extra pull's factor on HALO's); ``"both"`` (default) is ``psi`` while ``m < 1`` (a lighter
  hyper-penalty: HALO weaker than set) and adds ``(m - 1)`` times the ``prune`` pull while ``m > 1``;
* **measured sparsity** ``s``: the share of penalized entries with ``|w_bar| <= 1e-3`` (the natural
  sparsity of the tables; ``zero="jitter"``: ``|w_bar| <= max(1e-3, |w - w_bar|)``, at zero within its
  own fluctuation, default), ``w_bar`` a running average of the signed weight with decay ``average``
  (default 0.99; 0: the weights themselves);
* **schedule** ``s*(t)``: the target plus a small margin (:func:`margin`, so that the final magnitude
  prune removes only weights already at zero) from the first step (``"constant"``: dual ascent on
  ``s >= T``), or reached at ``ramp`` (default 0.7) of training along GMP's cubic (``"cubic"``) or with
  the density falling geometrically, ``1 - s* = (1 - end)^(t / ramp)`` (``"exp"``, default);
* **error** ``e``: ``log(1 - s) - log(1 - s*)`` clipped to [-1, 1] (``"log"``, default: how many
  times too dense, which still moves at 99%), or ``s* - s`` (``"absolute"``);
* **PI law** per step of ``N = total_steps``: ``I += gain * e / N`` from ``I = log start`` (default gain
  15, no proportional term), ``u = I + gain_p * e``, with ``u`` and ``I`` within
  ``[-log factor, log factor]`` (default factor 10, so ``m`` in [0.1, 10]); while the
  weights are more than 1.5 times denser than at the best ``s`` (forgotten over 5% of training), a
  positive error is integrated as negative.

Why the bounds and the back-off: under SGD a weight held at zero jumps around it by about
``lr * pull`` per step, so past some strength ``|w| <= 1e-3`` *falls* however hard one pushes, and an
unbounded controller runs away (LeNet-300-100 at 99.5%: the strength ran to 1.3e4, the accuracy to 11%).

Why this default (``scripts/target_design.py``, ``results/target/design.md``: LeNet-300-100 at 98.5 and
99.5% on the validation split, one run per design): a stronger HALO (knob ``psi`` or ``pull``) captures
weights for good (their scales collapse), so the end point is set by the strength early in training,
while the measured sparsity lags the final one at a high learning rate; every such design ended near
the same natural sparsity (98-99.4%) whatever the target, and a late push cost accuracy.  Pulling only
the weights that the final prune removes steers the end point late without touching the kept weights;
it can add sparsity but never remove it, so ``"both"`` lightens the hyper-penalty when the weights are
ahead of the schedule (early in training, where that still changes the end point).  On the validation
split ``both`` and ``prune`` from half the configs' xi / psi tied (mean 97.12 / 97.15% over the two
levels, both at 98.50% natural sparsity for 98.5%); ``both`` was kept because it needs no weaker start.

On accelerators and under ``torch.compile`` everything is a tensor operation (no host synchronization;
``torch.compile(fullgraph=True)`` traces it); on the CPU, eagerly, where reading a value costs nothing, two
exact shortcuts read it: knob ``both`` skips whichever of its two extra terms is zero, and the prune set's
k-th magnitude is selected among the entries past a bound near the last one (:class:`KthSmallest`).  The
state is in the penalty's ``state_dict`` (float32 buffers: torch 2.13's compile does not write float64
buffers back), so a resumed run continues exactly.  Cost per step (LeNet-300-100's 266,200 weights, one
core here; ``benchmarks/penalty_overhead.py``): fixed HALO 0.2 ms; target mode about 2.5 ms (the controller's
update 0.4, the prune set's threshold 0.3, its pull forward and backward 1.1), and with ``average > 0`` one
more tensor of the weights' size in memory.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError

SCHEDULES = ("cubic", "constant", "exp")
ERRORS = ("log", "absolute")
ZEROS = ("eps", "jitter")
FORGET = 0.05  # the best measurement decays by 1 (all of it) over this fraction of training
BACK_OFF = math.log(1.5)  # the controller backs off while the weights are 1.5 times denser than at their best


def _log_density(s: torch.Tensor) -> torch.Tensor:
    return torch.log1p(-s.clamp(max=1.0 - 1e-6))


def margin(target: float) -> float:
    """How far above ``target`` the schedule ends: a tenth of the density left, at most 0.2 points."""
    return min(0.1 * (1.0 - target), 0.002)


def eager_on_cpu(t: torch.Tensor) -> bool:
    """Whether reading ``t`` on the host is free (a CPU tensor, not under ``torch.compile``): then exact
    shortcuts that need a host value are taken; elsewhere everything stays a tensor operation."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


class KthSmallest:
    """The ``k``-th smallest entry of a 1-D tensor, exactly ``flat.kthvalue(k)``'s value.

    On the CPU (eager) it selects among the entries on the short side of a bound near the last answer:
    for ``k > n / 2`` the ``c`` entries above ``lo = hint * (1 - width)`` hold the answer as their
    ``(k - n + c)``-th smallest whenever ``n - c < k`` (for smaller ``k``: the entries up to ``hi = hint *
    (1 + width)``), a selection over ``n - k`` and a few more entries instead of all ``n`` (LeNet-300-100's
    266,200 magnitudes at 99%: about 0.3 instead of 2 ms on one core here).  A miss (the answer moved past
    the bound) falls back to the full selection and doubles ``width``.  The hint only speeds the search
    up: the value returned never depends on it, so it is not state, and resume stays exact.
    """

    def __init__(self, width: float = 0.1):
        self.hint: float | None = None
        self.width = float(width)

    def __call__(self, flat: torch.Tensor, k: int) -> torch.Tensor:
        if not eager_on_cpu(flat):
            return flat.kthvalue(k).values
        n = flat.numel()
        if self.hint is not None and self.hint > 0:
            if 2 * k > n:
                cand = flat[flat > self.hint * (1.0 - self.width)]
                rank = k - (n - cand.numel())
            else:
                cand = flat[flat <= self.hint * (1.0 + self.width)]
                rank = k
            if 1 <= rank <= cand.numel():
                value = cand.kthvalue(rank).values
                self.hint = float(value)
                return value
            self.width = min(0.9, 2 * self.width)
        value = flat.kthvalue(k).values
        self.hint = float(value)
        return value


class SparsityController(nn.Module):
    """The strength ``m`` of a penalty in target mode (see the module docstring).

    Args:
        target: the requested sparsity, in (0, 1).
        total_steps: training steps of the run (the schedule's time axis).
        ramp: fraction of training at which the schedule reaches the target (``cubic``).
        gain: integral gain (change of ``log m`` per unit of training fraction per unit of error).
        gain_p: proportional gain (change of ``log m`` per unit of error).
        schedule: ``"cubic"`` or ``"constant"``.
        error: ``"log"`` (the relative error in log density, clipped to [-1, 1]) or ``"absolute"`` (``s* - s``).
        average: decay of the weights' running average that is measured (0: the weights themselves).
        factor: the strength stays within ``[1 / factor, factor]`` times the penalty's own ``xi`` / ``psi``.
        zero: ``"eps"`` counts ``|w_bar| <= zero_eps`` as zero; ``"jitter"`` counts
            ``|w_bar| <= max(zero_eps, |w - w_bar|)`` (with ``average > 0``: a weight that SGD holds at
            zero oscillates around it by about ``lr * pull``, far more than ``zero_eps`` at a high learning rate).
        start: the strength at step 0 (``I = log start``).
        zero_eps: ``|w| <= zero_eps`` counts as zero.
    """

    def __init__(self, target: float, total_steps: int, *, ramp: float = 0.7, gain: float = 15.0, gain_p: float = 0.0,
                 schedule: str = "exp", factor: float = 10.0, average: float = 0.99, error: str = "log",
                 zero: str = "jitter", start: float = 1.0, zero_eps: float = 1e-3):
        super().__init__()
        if not 0.0 < target < 1.0:
            raise ConfigError(f"target_sparsity must be in (0, 1), got {target}")
        if not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1:
            raise ConfigError(f"target mode needs total_steps (the run's training steps) >= 1, got {total_steps!r}")
        if not 0.0 < ramp <= 1.0:
            raise ConfigError(f"target_ramp must be in (0, 1], got {ramp}")
        if gain < 0 or gain_p < 0:
            raise ConfigError("target_gain and target_gain_p must be >= 0")
        if error not in ERRORS:
            raise ConfigError(f"target_error must be one of {', '.join(ERRORS)}, got {error!r}")
        if not 0.0 <= average < 1.0:
            raise ConfigError(f"target_average must be in [0, 1), got {average}")
        if factor < 1.0:
            raise ConfigError(f"target_factor must be >= 1, got {factor}")
        if zero not in ZEROS:
            raise ConfigError(f"target_zero must be one of {', '.join(ZEROS)}, got {zero!r}")
        if not (math.isfinite(start) and 1.0 / factor <= start <= factor):
            raise ConfigError(f"target_start must be in [1/target_factor, target_factor] = "
                              f"[{1 / factor:g}, {factor:g}], got {start}")
        if schedule not in SCHEDULES:
            raise ConfigError(f"target_schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        self.target, self.total_steps, self.ramp = float(target), total_steps, float(ramp)
        self.gain, self.gain_p, self.schedule, self.zero_eps = float(gain), float(gain_p), schedule, float(zero_eps)
        self.end = min(self.target + margin(self.target), 1.0)
        self.factor, self.reach, self.average, self.error_kind = float(factor), math.log(factor), float(average), error
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.zero, self.start = zero, float(start)
        self.register_buffer("integral", torch.full((), math.log(start), dtype=torch.float32))
        self.register_buffer("measured", torch.zeros((), dtype=torch.float32))
        self.register_buffer("best", torch.zeros((), dtype=torch.float32))
        self.register_buffer("scheduled", torch.zeros((), dtype=torch.float32))
        self._averages: tuple[str, ...] = ()

    def track(self, weights: Sequence[torch.Tensor]) -> None:
        """Start the running averages at the current ``weights`` (one buffer each, in the state dict)."""
        self._averages = tuple(f"average_{i}" for i in range(len(weights)))
        for key, w in zip(self._averages, weights):
            self.register_buffer(key, w.detach().clone(memory_format=torch.contiguous_format))

    def scheduled_at(self, step: torch.Tensor) -> torch.Tensor:
        """``s*(t)`` at ``step`` (a tensor)."""
        if self.schedule == "constant":
            return torch.full_like(step, self.end, dtype=torch.float32)
        t = (step.float() / (self.ramp * self.total_steps)).clamp(max=1.0)
        if self.schedule == "exp":  # the density falls geometrically: 1 - s* = (1 - end) ** t
            return 1.0 - (1.0 - self.end) ** t
        return self.end * (1.0 - (1.0 - t) ** 3)

    def error(self) -> torch.Tensor:
        """``e = log(1 - s) - log(1 - s*)``, clipped to [-1, 1]: how many times too dense the weights are,
        in log (0 before the first update); with ``error="absolute"`` the plain ``s* - s``.  A relative error: 2% kept where 1% is due weighs as much at 98% as 40% where 20%."""
        if self.error_kind == "absolute":
            return self.scheduled - self.measured
        return (_log_density(self.measured) - _log_density(self.scheduled)).clamp(-1.0, 1.0)

    def log_strength(self) -> torch.Tensor:
        """``u = I + gain_p * e`` from the last update (``log start`` before the first), within ``[-log f, log f]``."""
        return (self.integral + self.gain_p * self.error()).clamp(-self.reach, self.reach)

    def strength(self) -> torch.Tensor:
        """``m = exp(u)`` (0-dim float32: float64 buffers are not written back by torch.compile in torch 2.13)."""
        return self.log_strength().exp()

    @torch.no_grad()
    def update(self, weights: Sequence[torch.Tensor]) -> None:
        """One training step: average, measure, advance the schedule, integrate the error."""
        averages = [getattr(self, key) for key in self._averages]
        if len(averages) != len(weights):
            raise RuntimeError("SparsityController.update: call track(weights) first")
        zeros = None
        for avg, w in zip(averages, weights):
            avg.mul_(self.average).add_(w.detach(), alpha=1.0 - self.average)
            if self.zero == "jitter":  # at zero within its own fluctuation around the average
                n = (avg.abs() <= (w.detach() - avg).abs().clamp(min=self.zero_eps)).sum()
            else:
                n = (avg.abs() <= self.zero_eps).sum()
            zeros = n if zeros is None else zeros + n
        self.advance(zeros.float() / sum(w.numel() for w in weights))

    @torch.no_grad()
    def advance(self, measured: torch.Tensor) -> None:
        """One training step from a measured share ``s`` (what :meth:`update` measures; a MACs target
        measures the share of MACs its zero units remove): advance the schedule, integrate the error."""
        self.step += 1
        self.measured.copy_(measured)
        # The best so far, forgotten over FORGET of training (a collapse must not latch the back-off).
        self.best.sub_(1.0 / (FORGET * self.total_steps)).clamp_(min=0.0)
        torch.maximum(self.best, self.measured, out=self.best)
        self.scheduled.copy_(self.scheduled_at(self.step))
        err = self.error()
        # Past the jitter point more strength lowers the measurement: while it is well below its best,
        # back off rather than push harder.
        fallen = _log_density(self.measured) - _log_density(self.best) > BACK_OFF
        err = torch.where(fallen, -err.abs(), err)
        self.integral += self.gain * err / self.total_steps
        self.integral.clamp_(-self.reach, self.reach)  # no windup past the range

    @torch.no_grad()
    def stats(self) -> dict[str, float]:
        return {"target_strength": self.strength().item(), "target_measured": self.measured.item(),
                "target_scheduled": self.scheduled.item(), "target_step": int(self.step)}

    def extra_repr(self) -> str:
        return (f"target={self.target:g}, total_steps={self.total_steps}, schedule={self.schedule}, ramp={self.ramp:g}, "
                f"gain={self.gain:g}, gain_p={self.gain_p:g}, factor={self.factor:g}, zero={self.zero}, start={self.start:g}")
