"""GroupLasso and GroupHALO against hand-computed values, gradients and invariants."""

import math

import pytest
import torch
from torch import nn

from sparsehalo.errors import ConfigError
from sparsehalo.penalties import HALO, GroupHALO, GroupLasso

D = torch.float64


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


def test_group_halo_errors():
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).to(D)
    with pytest.raises(ConfigError, match="budget"):
        GroupHALO.for_model(m, hyper="budget")
    with pytest.raises(ConfigError, match="unknown hyper"):
        GroupHALO.for_model(m, hyper="l2")
    with pytest.raises(ConfigError, match="eps"):
        GroupLasso.for_model(m, eps=-1.0)


def test_a_batchnorm_scale_and_shift_form_one_group_per_channel():
    from sparsehalo.penalties.group import GroupHALO, GroupLasso, group_sets

    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.weight.uniform_(-2, 2)
        bn.bias.normal_()
    sets = group_sets({"weight": bn.weight, "bias": bn.bias})
    assert len(sets) == 1 and sets[0].num_groups == 6 and sets[0].group_size == 2
    pair = (bn.weight.detach().double() ** 2 + bn.bias.detach().double() ** 2)
    torch.testing.assert_close(sets[0].squared_norms().double(), pair)
    lasso = GroupLasso.for_model(bn, types=["BatchNorm2d"], biases=True, xi=0.01, eps=0.0)
    expected = 0.01 * math.sqrt(2) * pair.sqrt().sum()
    torch.testing.assert_close(lasso().double(), expected, rtol=1e-6, atol=0)
    halo = GroupHALO.for_model(bn, types=["BatchNorm2d"], biases=True)
    torch.testing.assert_close(halo.group_norms()["weight"].double(), pair.sqrt(), rtol=1e-6, atol=0)
