"""Folded-concave penalties: MCP (Zhang 2010) and SCAD (Fan & Li 2001).

Both act on each penalized scalar separately, are non-convex, grow like the lasso near zero and
level off to a constant for large weights, so big weights are not shrunk.  Neither has trainable
state: :meth:`Penalty.param_groups` returns ``[]``.

Both are written with ``torch.where`` on ``|w|`` so that the gradient is finite everywhere: every
branch is a polynomial in ``|w|`` and ``w**2`` (finite for every input, so the zero gradient that
``torch.where`` sends to the branch not taken never meets an ``inf`` or ``nan``), and ``|w|`` has
the subgradient ``sign(w)``, which is 0 at 0.  Away from 0 both penalties are continuously
differentiable, so which branch owns a boundary point does not change the gradient there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from ..errors import ConfigError
from .base import Penalty, option
from .kernels.elementwise import mcp_kernel, scad_kernel


class _Elementwise(Penalty):
    """A penalty without state that sums one function of each penalized scalar."""

    def pointwise(self, w: torch.Tensor) -> torch.Tensor:
        """The penalty of every entry of ``w`` (same shape)."""
        raise NotImplementedError

    def reference(self) -> torch.Tensor:
        total = None
        for w in self._targets:
            term = self.pointwise(w).sum()
            total = term if total is None else total + term
        return total


class MCP(_Elementwise):
    """Minimax concave penalty (Zhang, Annals of Statistics 2010).

    With ``lam = xi``, summed over every penalized scalar ``w``::

        P(w) = lam * |w| - w**2 / (2 * gamma)     if |w| <= gamma * lam
             = gamma * lam**2 / 2                 otherwise

    The derivative ``sign(w) * (lam - |w| / gamma)`` falls linearly from ``lam`` at 0 to 0 at
    ``|w| = gamma * lam``: a lasso near zero that relaxes to no shrinkage at all for large weights.
    ``gamma`` sets how fast it relaxes.  ``lam = xi`` follows the project's METHOD.md ("MCP with
    lam = xi, gamma = psi"), so ``xi`` keeps its meaning as the strength of the weight penalty
    across all penalties; ``psi``, the name ``gamma`` had before, is still accepted (and is the key
    configs and hashes store it under, so earlier runs keep their hash).

    Args:
        params: ``{name: parameter}`` to penalize (see :meth:`Penalty.for_model`).
        xi: ``lam``, the lasso slope at zero (>= 0; 0 gives the zero penalty).
        gamma: the concavity (> 0): the penalty is flat beyond ``|w| = gamma * xi``.
        psi: the old name of ``gamma``; when given, it is ``gamma``.

    Raises:
        ConfigError: for ``gamma <= 0`` or ``xi < 0``.
    """

    name = "mcp"

    @dataclass
    class Options:
        xi: float = option(1e-4, "lam, the lasso slope at zero")
        gamma: float = option(3.0, "the concavity: flat beyond |w| = gamma * xi (old name: psi)", stored_as="psi")

    def __init__(self, params: Mapping[str, torch.Tensor], *, xi: float = 1e-4, gamma: float = 3.0, psi: float | None = None):
        super().__init__(params, xi=xi)
        if psi is not None:
            gamma = psi
        if not gamma > 0:
            raise ConfigError(f"MCP: gamma (psi) must be > 0, got {gamma}")
        self.gamma = float(gamma)

    def kernel_call(self):
        return mcp_kernel, list(self._targets), (self.xi, self.gamma)

    def pointwise(self, w: torch.Tensor) -> torch.Tensor:
        lam, gamma = self.xi, self.gamma
        a = w.abs()
        # w.square(), not a * a: same value, and its gradient 2w does not route through |w|.
        return torch.where(a <= gamma * lam, lam * a - w.square() / (2 * gamma), gamma * lam * lam / 2)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma:g}"


class SCAD(_Elementwise):
    """Smoothly clipped absolute deviation (Fan & Li, JASA 2001).

    With ``lam = xi``, summed over every penalized scalar ``w``::

        P(w) = lam * |w|                                          if |w| <= lam
             = (2 * a * lam * |w| - w**2 - lam**2) / (2 * (a - 1))  if lam < |w| <= a * lam
             = lam**2 * (a + 1) / 2                               otherwise

    The derivative is ``lam * sign(w)`` up to ``lam``, then ``sign(w) * (a * lam - |w|) / (a - 1)``
    falling linearly to 0 at ``a * lam``, then 0.  ``a = 3.7`` is Fan & Li's recommended value.

    Args:
        params: ``{name: parameter}`` to penalize (see :meth:`Penalty.for_model`).
        xi: ``lam``, the lasso slope near zero (>= 0; 0 gives the zero penalty).
        a: the clipping point in units of ``lam`` (> 2).

    Raises:
        ConfigError: for ``a <= 2`` or ``xi < 0``.
    """

    name = "scad"

    @dataclass
    class Options:
        xi: float = option(1e-4, "lam, the lasso slope near zero")
        a: float = option(3.7, "the clipping point in units of lam (> 2; 3.7 is Fan & Li's value)")

    def __init__(self, params: Mapping[str, torch.Tensor], *, xi: float = 1e-4, a: float = 3.7):
        super().__init__(params, xi=xi)
        if not a > 2:
            raise ConfigError(f"SCAD: a must be > 2, got {a}")
        self.a = float(a)

    def kernel_call(self):
        lam, a = self.xi, self.a
        return scad_kernel, list(self._targets), (lam, a * lam, lam * lam * (a + 1) / 2, a - 1)

    def pointwise(self, w: torch.Tensor) -> torch.Tensor:
        lam, a = self.xi, self.a
        m = w.abs()
        middle = (2 * a * lam * m - w.square() - lam * lam) / (2 * (a - 1))
        return torch.where(m <= lam, lam * m, torch.where(m <= a * lam, middle, lam * lam * (a + 1) / 2))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, a={self.a:g}"
