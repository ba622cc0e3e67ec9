"""HALO, L1 and SWS against hand-written formulas, gradcheck, the closed-form optimum, and invariants
(selection, partition, ownership, state dicts, errors, the README's use in a user's loop)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsehalo
from sparsehalo.errors import ConfigError
from sparsehalo.penalties import HALO, L1, SWS, NoPenalty, build


def toy(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).to(dtype)


def test_selection_defaults_and_partition():
    m = toy()
    p = HALO.for_model(m)
    assert p.names == ("0.weight", "2.weight")
    p.check_partition(m)
    pb = HALO.for_model(m, biases=True, exclude=["2.*"])
    assert pb.names == ("0.weight", "0.bias")
    pb.check_partition(m)
    assert HALO.for_model(m, include=["2.weight"]).names == ("2.weight",)


def test_partition_detects_overlap_and_gap():
    m = toy()
    p = HALO.for_model(m)
    with pytest.raises(AssertionError, match="no group"):
        sparsehalo.selection.check_partition(m, {"a": [m[0].weight]})
    with pytest.raises(AssertionError, match="both"):
        sparsehalo.selection.check_partition(m, {"a": list(m.parameters()), "b": [m[0].weight]})
    assert set(p.penalized()) == {"0.weight", "2.weight"}


def test_penalty_does_not_own_network_parameters():
    m = toy()
    p = HALO.for_model(m)
    own = {id(t) for t in p.parameters()}
    assert not own & {id(t) for t in m.parameters()}
    assert sorted(p.state_dict()) == ["scales.0__weight", "scales.2__weight"]


@pytest.mark.parametrize("hyper,budget", [("l1", None), ("budget", 5.0), ("budget_sq", 5.0)])
def test_halo_value_and_gradient_match_formula(hyper, budget):
    m = toy()
    xi, psi, eps = 0.3, 0.2, 1e-3
    p = HALO.for_model(m, xi=xi, psi=psi, lambda_init=0.7, hyper=hyper, budget=budget, eps=eps)
    with torch.no_grad():
        for lam in p.scale_tensors():
            lam.uniform_(-1.5, 1.5)
    ws = [m[0].weight, m[2].weight]
    lams = p.scale_tensors()
    s = sum(l.abs().sum() for l in lams)
    r = {"l1": s, "budget": (s - 5.0).abs(), "budget_sq": (s - 5.0) ** 2}[hyper]
    expected = xi * sum((w.abs() / (l**2 + eps**2)).sum() for w, l in zip(ws, lams)) + psi * r
    value = p()
    assert torch.allclose(value, expected, rtol=0, atol=1e-12)
    value.backward()
    dr = {"l1": 1.0, "budget": torch.sign(s - 5.0), "budget_sq": 2 * (s - 5.0)}[hyper]
    for w, l in zip(ws, lams):
        d = l**2 + eps**2
        assert torch.allclose(w.grad, xi * torch.sign(w) / d, atol=1e-12)
        g = -2 * xi * w.abs() * l / d**2 + psi * dr * torch.sign(l)
        assert torch.allclose(l.grad, g.detach(), atol=1e-12)


def test_halo_gradcheck():
    torch.manual_seed(0)
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    lam = (torch.rand(3, 4, dtype=torch.float64) + 0.5).requires_grad_()

    def f(w_, lam_):
        q = HALO({"w": w_}, xi=0.5, psi=0.1, hyper="budget_sq", budget=3.0)
        return torch.func.functional_call(q, {"scales.w": lam_}, ())

    assert torch.autograd.gradcheck(f, (w, lam))


def test_l1_and_sws_formulas():
    m = toy()
    ws = [m[0].weight, m[2].weight]
    l1 = L1.for_model(m, xi=0.2, lambda_init=0.5)
    assert torch.allclose(l1(), 0.2 / 0.25 * sum(w.abs().sum() for w in ws))
    assert l1.param_groups(lr=0.1) == []
    sws = SWS.for_model(m, xi=0.2, psi=0.3, lambda_init=0.8, eps=0.0)
    v = sws()
    assert torch.allclose(v, 0.2 * sum(w.abs().sum() for w in ws) / 0.64 + 0.3 * 0.64)
    v.backward()
    l1w = sum(w.abs().sum() for w in ws).detach()
    assert torch.allclose(sws.scale.grad, -2 * 0.2 * l1w / 0.8**3 + 2 * 0.3 * 0.8)
    assert torch.autograd.gradcheck(lambda w: SWS({"w": w}, xi=0.2, psi=0.3, eps=0.1)(), (torch.randn(5, dtype=torch.float64, requires_grad=True),))


def test_halo_finite_at_zero_scale():
    w = torch.randn(10, requires_grad=True)
    p = HALO({"w": w}, xi=1e-4, psi=1e-4, lambda_init=0.0)
    v = p()
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(w.grad).all() and torch.isfinite(p.scales["w"].grad).all()
    assert torch.allclose(v, 1e-4 * w.abs().sum() / 1e-6)


def test_scales_converge_to_closed_form():
    """With the weights frozen, SGD on the scales alone reaches lambda* = (2 xi |w| / psi)^(1/3)."""
    torch.manual_seed(0)
    w = (torch.rand(50, dtype=torch.float64) * 0.9 + 0.1).requires_grad_(False)
    xi, psi = 1e-2, 1e-2
    p = HALO({"w": w}, xi=xi, psi=psi, eps=0.0, lambda_init=1.0)
    opt = torch.optim.SGD(p.param_groups(), lr=2.0)
    for _ in range(3000):
        opt.zero_grad()
        p().backward()
        opt.step()
    target = (2 * xi * w.abs() / psi) ** (1 / 3)
    assert torch.allclose(p.scales["w"].detach(), target, atol=1e-6)
    assert torch.allclose(p.optimal_scales()["w"], target)
    # profiled penalty: c xi^(1/3) psi^(2/3) |w|^(1/3), c = 3 / 2^(2/3)
    profiled = 3 / 2 ** (2 / 3) * xi ** (1 / 3) * psi ** (2 / 3) * (w.abs() ** (1 / 3)).sum()
    assert torch.allclose(p(), profiled, rtol=1e-8)


def test_xi_zero_is_identical_to_no_penalty(train):
    a, b = toy(), toy()
    train(a, HALO.for_model(a, xi=0.0, psi=1e-2, biases=True))
    train(b, None)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_scale_weight_decay_is_explicit():
    m = toy()
    p = HALO.for_model(m)
    (g,) = p.param_groups(lr=0.1, momentum=0.5)
    assert g["weight_decay"] == 0.0 and g["lr"] == 0.1 and g["momentum"] == 0.5
    (g,) = HALO.for_model(m, scale_weight_decay=1e-4).param_groups()
    assert g["weight_decay"] == 1e-4 and "lr" not in g


def test_state_dict_round_trip_and_to(train):
    m = toy()
    p = HALO.for_model(m, xi=0.1)
    train(m, p, steps=5)
    q = HALO.for_model(copy.deepcopy(m), xi=0.1)
    assert not torch.equal(q.scales["0__weight"], p.scales["0__weight"])
    q.load_state_dict(p.state_dict())
    for a, b in zip(p.scale_tensors(), q.scale_tensors()):
        assert torch.equal(a, b)
    assert torch.equal(p(), q())
    assert p.to(torch.float32).scales["0__weight"].dtype == torch.float32


def test_registry_and_errors():
    m = toy()
    assert isinstance(build("halo", m, xi=1e-3), HALO)
    assert isinstance(build("none", m), NoPenalty) and build("none", m)().item() == 0.0
    with pytest.raises(ConfigError, match="unknown penalty"):
        build("lasso2", m)
    with pytest.raises(ConfigError, match="budget"):
        HALO.for_model(m, hyper="budget")
    with pytest.raises(ConfigError, match="empty"):
        HALO.for_model(m, types=["Conv2d"])
    with pytest.raises(ConfigError):
        build("halo", m, xii=1.0)


def test_three_line_use_in_user_loop():
    """The README's three lines in a hand-written loop with the user's own model."""

    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

        def forward(self, x):
            return self.body(x)

    torch.manual_seed(0)
    model = Mine()
    penalty = sparsehalo.HALO.for_model(model, xi=1e-3, psi=1e-3)
    opt = torch.optim.SGD([{"params": model.parameters()}, *penalty.param_groups(lr=0.1)], lr=0.1, momentum=0.9)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 3, (32,))
    before = [t.detach().clone() for t in penalty.scale_tensors()]
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x), y) + penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(not torch.equal(a, b) for a, b in zip(before, penalty.scale_tensors()))
    penalty.check_partition(model)


def test_top_level_prune_and_table_after_penalized_training():
    """Library flow: penalize, train, prune with the top-level API, read the table."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 2))
    penalty = sparsehalo.HALO.for_model(model, xi=1e-2, psi=1e-2)
    opt = torch.optim.SGD([{"params": model.parameters()}, *penalty.param_groups(lr=0.1)], lr=0.1, momentum=0.9)
    x = torch.randn(256, 20)
    y = (x[:, 0] > 0).long()  # only input 0 matters
    for _ in range(300):
        loss = F.cross_entropy(model(x), y) + penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
    mask = sparsehalo.prune(model, 0.9)
    assert mask.num_pruned == round(0.9 * (20 * 30 + 30 * 2))
    acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.95
    table = sparsehalo.sparsity_table(model)
    assert table.nonzero == mask.num_kept and "660" in str(table)
    assert isinstance(sparsehalo.models.build("lenet300"), nn.Module)
