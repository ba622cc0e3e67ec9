"""MCP, SCAD, GroupLasso and GroupHALO against hand-computed values, gradients and invariants."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsehalo.errors import ConfigError
from sparsehalo.penalties import HALO, MCP, PENALTIES, SCAD, GroupHALO, GroupLasso, build

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


# -- group penalties ----------------------------------------------------------------------------------
def linear32(bias=(4.0, 0.0)):
    """Linear(3, 2) with rows [1, 2, 2] (norm 3) and [0, 3, 4] (norm 5); bias [4, 0]."""
    m = nn.Linear(3, 2).to(D)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, 2.0, 2.0], [0.0, 3.0, 4.0]]))
        m.bias.copy_(torch.tensor(bias))
    return m


def test_group_lasso_value_on_linear():
    m, xi = linear32(), 0.3
    # weights only: groups of size 3 with norms 3 and 5
    exact = GroupLasso.for_model(m, xi=xi, eps=0.0)
    assert exact.names == ("weight",) and exact.num_groups == 2
    assert exact().item() == pytest.approx(xi * math.sqrt(3) * (3 + 5), rel=1e-14)
    eps = 0.1
    smooth = GroupLasso.for_model(m, xi=xi, eps=eps)
    assert smooth().item() == pytest.approx(xi * math.sqrt(3) * (math.sqrt(9 + eps**2) + math.sqrt(25 + eps**2)), rel=1e-14)
    # with biases: bias i joins row i -> [1, 2, 2, 4] and [0, 3, 4, 0], norms 5 and 5, size 4
    pb = GroupLasso.for_model(m, xi=xi, eps=0.0, biases=True)
    assert pb.names == ("weight", "bias") and pb.num_groups == 2
    assert pb().item() == pytest.approx(xi * 2 * (5 + 5), rel=1e-14)
    assert pb.group_norms()["weight"].tolist() == pytest.approx([5.0, 5.0])
    assert set(pb.group_norms()) == {"weight"}
    # and inside a model the names are prefixed: 0.weight / 0.bias still pair up
    seq = nn.Sequential(linear32())
    assert GroupLasso.for_model(seq, xi=xi, eps=0.0, biases=True)().item() == pytest.approx(xi * 20, rel=1e-14)


def test_group_lasso_gradient_matches_formula():
    m, xi, eps = linear32(), 0.3, 0.1
    p = GroupLasso.for_model(m, xi=xi, eps=eps, biases=True)
    p().backward()
    rows = torch.cat([m.weight, m.bias[:, None]], 1).detach()
    expected = xi * 2 * rows / (rows.square().sum(1, keepdim=True) + eps**2).sqrt()
    assert torch.allclose(m.weight.grad, expected[:, :3], atol=1e-14)
    assert torch.allclose(m.bias.grad, expected[:, 3], atol=1e-14)


def test_bias_without_its_weight_and_1d_tensors_are_size_one_groups():
    m, xi = linear32(bias=(4.0, -2.0)), 0.3
    p = GroupLasso.for_model(m, xi=xi, eps=0.0, biases=True, include=["bias"])
    assert p.num_groups == 2 and p().item() == pytest.approx(xi * 6.0, rel=1e-14)
    v = torch.tensor([0.5, -1.5, 0.0], dtype=D)
    assert GroupLasso({"v": v}, xi=xi, eps=0.0)().item() == pytest.approx(xi * 2.0, rel=1e-14)
    # a set of 1-D groups under GroupHALO is exactly HALO
    lam = torch.tensor([0.7, -0.4, 1.3], dtype=D)
    g, h = GroupHALO({"v": v}, xi=xi, psi=0.2), HALO({"v": v}, xi=xi, psi=0.2)
    with torch.no_grad():
        g.scales["v"].copy_(lam)
        h.scales["v"].copy_(lam)
    assert torch.allclose(g(), h(), rtol=1e-14, atol=0)


@pytest.mark.parametrize("eps", [1e-6, 0.0])
def test_group_lasso_zero_group_has_finite_zero_gradient(eps):
    m = linear32()
    with torch.no_grad():
        m.weight[1].zero_()
    p = GroupLasso.for_model(m, xi=0.3, eps=eps)
    v = p()
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(m.weight.grad).all()
    assert torch.equal(m.weight.grad[1], torch.zeros(3, dtype=D))
    assert m.weight.grad[0].abs().sum() > 0
    assert p.stats() == {"groups_zero": 0.5}


@pytest.mark.parametrize("hyper,budget", [("l1", None), ("budget", 5.0), ("budget_sq", 5.0)])
def test_group_halo_value_and_gradients_match_formula(hyper, budget):
    m, xi, psi, eps = linear32(), 0.3, 0.2, 1e-3
    p = GroupHALO.for_model(m, xi=xi, psi=psi, hyper=hyper, budget=budget, eps=eps, biases=True)
    (lam,) = p.scale_tensors()
    assert lam.shape == (2,) and sorted(p.state_dict()) == ["scales.weight"]
    with torch.no_grad():
        lam.copy_(torch.tensor([0.5, -1.2], dtype=D))
    norms = torch.tensor([5.0, 5.0], dtype=D)
    d = lam.detach().square() + eps**2
    s = 0.5 + 1.2
    r = {"l1": s, "budget": abs(s - 5.0), "budget_sq": (s - 5.0) ** 2}[hyper]
    v = p()
    assert v.item() == pytest.approx(xi * (norms / d).sum().item() + psi * r, rel=1e-14)
    v.backward()
    rows = torch.cat([m.weight, m.bias[:, None]], 1).detach()
    gw = xi * rows / norms[:, None] / d[:, None]
    assert torch.allclose(m.weight.grad, gw[:, :3], atol=1e-14)
    assert torch.allclose(m.bias.grad, gw[:, 3], atol=1e-14)
    dr = {"l1": 1.0, "budget": math.copysign(1.0, s - 5.0), "budget_sq": 2 * (s - 5.0)}[hyper]
    gl = -2 * xi * norms * lam.detach() / d**2 + psi * dr * torch.sign(lam.detach())
    assert torch.allclose(lam.grad, gl, atol=1e-12)


def test_group_halo_zero_group_and_zero_scale_are_finite():
    m = linear32()
    with torch.no_grad():
        m.weight[0].zero_()
    p = GroupHALO.for_model(m, xi=1e-2, psi=1e-2, lambda_init=0.0)
    v = p()
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(m.weight.grad).all() and torch.isfinite(p.scales["weight"].grad).all()
    assert v.item() == pytest.approx(1e-2 * 5.0 / 1e-6, rel=1e-12)  # the zero group adds exactly 0
    assert torch.equal(m.weight.grad[0], torch.zeros(3, dtype=D))
    st = p.stats()
    assert st["groups_zero"] == 0.5 and st["scale_max"] == 0.0


def test_group_halo_scales_converge_to_closed_form():
    """Weights frozen, eps=0: SGD on the scales alone reaches lambda_g* = (2 xi ||w_g|| / psi)^(1/3)."""
    torch.manual_seed(0)
    w = (torch.rand(6, 4, dtype=D) * 0.6 + 0.1).requires_grad_(False)
    b = (torch.rand(6, dtype=D) * 0.5).requires_grad_(False)
    xi, psi = 1e-2, 1e-2
    p = GroupHALO({"fc.weight": w, "fc.bias": b}, xi=xi, psi=psi, eps=0.0)
    opt = torch.optim.SGD(p.param_groups(), lr=2.0)
    for _ in range(2000):
        opt.zero_grad()
        p().backward()
        opt.step()
    norms = torch.cat([w, b[:, None]], 1).norm(dim=1)
    target = (2 * xi * norms / psi) ** (1 / 3)
    assert torch.allclose(p.scales["fc__weight"].detach(), target, atol=1e-8)
    assert torch.allclose(p.optimal_scales()["fc.weight"], target, atol=1e-14)


def test_conv2d_groups_are_output_channels():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3).to(D)
    p = GroupLasso.for_model(conv, xi=0.1)
    assert p.num_groups == 3
    before = p.group_norms()["weight"]
    assert torch.allclose(before, conv.weight.detach().flatten(1).norm(dim=1))
    with torch.no_grad():
        conv.weight[1].zero_()
    after = p.group_norms()["weight"]
    changed = (before != after).nonzero().flatten().tolist()
    assert changed == [1] and after[1].item() == 0.0
    h = GroupHALO.for_model(conv, biases=True)
    assert h.scales["weight"].shape == (3,) and h.num_groups == 3


def toy(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).to(D)


def _train(model, penalty, steps=20):
    groups = [{"params": model.parameters()}] + (penalty.param_groups(lr=0.05) if penalty is not None else [])
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g, dtype=D)
    y = torch.randint(0, 2, (64,), generator=g)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        if penalty is not None:
            loss = loss + penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


NEW = {"mcp": MCP, "scad": SCAD, "group_lasso": GroupLasso, "group_halo": GroupHALO}


@pytest.mark.parametrize("name", sorted(NEW))
def test_registry_state_dict_and_param_groups(name):
    assert PENALTIES[name] is NEW[name]
    m = toy()
    p = build(name, m, xi=1e-2, biases=True)
    assert type(p) is NEW[name] and p.names == ("0.weight", "0.bias", "2.weight", "2.bias")
    _train(m, p, steps=3)
    q = build(name, m, xi=1e-2, biases=True)
    q.load_state_dict(p.state_dict())
    assert torch.equal(p(), q())
    if name == "group_halo":
        assert sorted(p.state_dict()) == ["scales.0__weight", "scales.2__weight"]
        assert not torch.equal(p.scales["0__weight"], torch.ones(3, dtype=D))  # trained, then copied
        (g,) = p.param_groups(lr=0.1)
        assert g["weight_decay"] == 0.0 and g["lr"] == 0.1 and len(g["params"]) == 2
    else:
        assert p.state_dict() == {} and p.param_groups(lr=0.1) == []
    with pytest.raises(ConfigError):
        build(name, m, xii=1.0)


def test_group_halo_errors():
    m = toy()
    with pytest.raises(ConfigError, match="budget"):
        GroupHALO.for_model(m, hyper="budget")
    with pytest.raises(ConfigError, match="unknown hyper"):
        GroupHALO.for_model(m, hyper="l2")
    with pytest.raises(ConfigError, match="eps"):
        GroupLasso.for_model(m, eps=-1.0)


@pytest.mark.parametrize("name", sorted(NEW))
def test_xi_zero_is_identical_to_no_penalty(name):
    a, b = toy(), toy()
    _train(a, build(name, a, xi=0.0, biases=True))
    _train(b, None)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
