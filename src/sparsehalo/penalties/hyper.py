"""The hyper-penalty forms ``R(S)`` on the trainable scales: their one definition.

HALO and group HALO penalize their scales through ``S = sum_k |lambda_k|`` (over every scale of the
penalty)::

    R(S) = S                    "l1"         (default)   R'(S) = 1
         = | S - p |            "budget"                 R'(S) = sign(S - p)
         = ( S - p )**2         "budget_sq"              R'(S) = 2 (S - p)

with ``p`` the budget (the target sum of ``|lambda|``).  Every user of ``R`` reads this table: the
plain autograd references of :class:`~.halo.HALO` and :class:`~.group.GroupHALO` call
:attr:`HyperForm.value`, the fused kernel (:func:`.kernels.elementwise.halo_kernel`) calls ``value``
and :attr:`HyperForm.slope`, and the C++ pass (``kernels/csrc/halo_cpu.cpp``) is handed
:attr:`HyperForm.code`, the integer under which it implements the same form (the one place ``R`` is
written again, in C++, checked against this table by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import ConfigError
from ..registry import Registry

Value = Callable[[torch.Tensor, float], torch.Tensor]
Slope = Callable[[torch.Tensor, float], "torch.Tensor | float"]


@dataclass(frozen=True)
class HyperForm:
    """One form of the hyper-penalty.

    Attributes:
        name: the ``hyper`` setting that selects it.
        code: the integer the C++ kernel takes for this form (``hyper`` in ``halo_cpu.cpp``).
        value: ``R(S, p)`` for a 0-dim tensor ``S`` and the budget ``p`` (differentiable).
        slope: ``dR/dS (S, p)``.
        needs_budget: whether ``p`` must be given (the budget forms).
        linear: ``R'(S)`` is the constant 1, so a kernel needs no pass over the scales for ``S``
            before it can write their gradients.
    """

    name: str
    code: int
    value: Value
    slope: Slope
    needs_budget: bool
    linear: bool = False


HYPER: Registry[HyperForm] = Registry("hyper-penalty")

for _form in (
    HyperForm("l1", 0, lambda s, p: s, lambda s, p: 1.0, needs_budget=False, linear=True),
    HyperForm("budget", 1, lambda s, p: (s - p).abs(), lambda s, p: torch.sign(s - p), needs_budget=True),
    HyperForm("budget_sq", 2, lambda s, p: (s - p).square(), lambda s, p: 2.0 * (s - p), needs_budget=True),
):
    HYPER.add(_form.name, _form)


def hyper_form(hyper: str, budget: float | None, who: str) -> HyperForm:
    """The form ``hyper``, checked against the budget it needs.

    Args:
        hyper: the form's name.
        budget: the target ``p`` (None when not given).
        who: the penalty's name, for messages.

    Raises:
        ConfigError: for an unknown form, or a budget form without a budget.
    """
    if hyper not in HYPER:
        raise ConfigError(f"{who}: unknown hyper={hyper!r}; choose one of {', '.join(HYPER.names())}")
    form = HYPER.get(hyper)
    if form.needs_budget and budget is None:
        raise ConfigError(f"{who}: hyper={hyper!r} needs a budget (the target sum of |lambda|)")
    return form
