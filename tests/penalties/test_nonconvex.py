"""MCP and SCAD against hand-computed values and gradients, piecewise and at the region boundaries."""

import math

import pytest
import torch
from torch import nn

from sparsehalo.errors import ConfigError
from sparsehalo.penalties import MCP, SCAD

D = torch.float64


def per_point(cls, points, **kw):
    """Value and d/dw of a scalar penalty at each point, one single-entry tensor per point."""
    values, grads = [], []
    for x in points:
        w = torch.tensor([x], dtype=D, requires_grad=True)
        v = cls({"w": w}, **kw)()
        (g,) = torch.autograd.grad(v, w)
        values.append(v.item())
        grads.append(g.item())
    return values, grads


# -- MCP: lam = xi = 0.5, gamma = psi = 2, so the flat region starts at |w| = gamma * lam = 1 ----------
LAM, GAMMA = 0.5, 2.0
MCP_POINTS = [0.0, 0.4, -0.4, 1.0, -1.0, 1.7, -3.0]
MCP_VALUES = [0.0, 0.16, 0.16, 0.25, 0.25, 0.25, 0.25]  # 0.5*0.4 - 0.16/4 = 0.16; 2*0.25/2 = 0.25
MCP_GRADS = [0.0, 0.3, -0.3, 0.0, 0.0, 0.0, 0.0]  # sign(w) * (0.5 - |w|/2) inside, 0 outside


def mcp_grad(w):
    return math.copysign(1.0, w) * (LAM - abs(w) / GAMMA) if 0 < abs(w) <= GAMMA * LAM else 0.0


def test_mcp_values_and_gradients_piecewise():
    values, grads = per_point(MCP, MCP_POINTS, xi=LAM, psi=GAMMA)
    assert values == pytest.approx(MCP_VALUES, abs=1e-15)
    assert grads == pytest.approx(MCP_GRADS, abs=1e-15)
    assert grads == pytest.approx([mcp_grad(x) for x in MCP_POINTS], abs=1e-15)
    # summed over a tensor, all regions at once
    w = torch.tensor(MCP_POINTS, dtype=D, requires_grad=True)
    v = MCP({"w": w}, xi=LAM, psi=GAMMA)()
    assert v.item() == pytest.approx(sum(MCP_VALUES), abs=1e-14)
    (g,) = torch.autograd.grad(v, w)
    assert g.tolist() == pytest.approx(MCP_GRADS, abs=1e-15)


# -- SCAD: lam = 0.5, a = 3, so the regions change at |w| = 0.5 and |w| = 1.5 ---------------------------
A = 3.0
SCAD_POINTS = [0.0, 0.3, -0.3, 0.5, 1.0, -1.0, 1.5, 2.0, -4.0]
# lam|w|; (2*3*0.5*|w| - w^2 - 0.25) / 4; 0.25 * 4 / 2 = 0.5
SCAD_VALUES = [0.0, 0.15, 0.15, 0.25, 0.4375, 0.4375, 0.5, 0.5, 0.5]
SCAD_GRADS = [0.0, 0.5, -0.5, 0.5, 0.25, -0.25, 0.0, 0.0, 0.0]


def scad_grad(w):
    m, s = abs(w), (math.copysign(1.0, w) if w else 0.0)
    if m <= LAM:
        return LAM * s
    if m <= A * LAM:
        return s * (A * LAM - m) / (A - 1)
    return 0.0


def test_scad_values_and_gradients_piecewise():
    values, grads = per_point(SCAD, SCAD_POINTS, xi=LAM, a=A)
    assert values == pytest.approx(SCAD_VALUES, abs=1e-15)
    assert grads == pytest.approx(SCAD_GRADS, abs=1e-15)
    assert grads == pytest.approx([scad_grad(x) for x in SCAD_POINTS], abs=1e-15)
    # default a = 3.7: the flat value is lam^2 (a + 1) / 2
    (v,), _ = per_point(SCAD, [10.0], xi=0.2)
    assert v == pytest.approx(0.04 * 4.7 / 2, rel=1e-14)


@pytest.mark.parametrize(
    "cls,kw,boundaries,grad",
    [(MCP, {"xi": LAM, "psi": GAMMA}, [0.0, 1.0, -1.0], mcp_grad), (SCAD, {"xi": LAM, "a": A}, [0.0, 0.5, 1.5, -1.5], scad_grad)],
)
def test_continuity_at_region_boundaries(cls, kw, boundaries, grad):
    h = 1e-9
    for b in boundaries:
        (lo, at, hi), (glo, _, ghi) = per_point(cls, [b - h, b, b + h], **kw)
        assert lo == pytest.approx(at, abs=1e-8) and hi == pytest.approx(at, abs=1e-8)
        if b != 0.0:  # the derivative is continuous everywhere except at the kink at 0
            assert glo == pytest.approx(ghi, abs=1e-8)
            assert glo == pytest.approx(grad(b - h), abs=1e-12) and ghi == pytest.approx(grad(b + h), abs=1e-12)


def test_nonconvex_gradcheck_away_from_kinks():
    w = torch.tensor([-2.0, -1.2, -0.3, 0.2, 0.8, 1.2, 2.5], dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: MCP({"w": x}, xi=LAM, psi=GAMMA)(), (w,))
    assert torch.autograd.gradcheck(lambda x: SCAD({"w": x}, xi=LAM, a=A)(), (w,))


def test_nonconvex_errors_and_no_state():
    w = nn.Parameter(torch.ones(3, dtype=D))
    with pytest.raises(ConfigError, match="psi"):
        MCP({"w": w}, psi=0.0)
    with pytest.raises(ConfigError, match="a must be > 2"):
        SCAD({"w": w}, a=2.0)
    with pytest.raises(ConfigError, match="xi"):
        SCAD({"w": w}, xi=-1.0)
    for p in (MCP({"w": w}), SCAD({"w": w})):
        assert list(p.parameters()) == [] and p.param_groups(lr=0.1) == []
