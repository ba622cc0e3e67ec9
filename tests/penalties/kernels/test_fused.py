"""The fused fast path of every penalty equals its plain autograd reference."""


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsehalo.penalties import HALO, L1, MCP, SCAD, SWS
from sparsehalo.penalties.kernels import elementwise, fused as fused_mod, native


def toy(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    with torch.no_grad():
        m[0].weight[0, :3] = 0.0  # exact zeros: subgradient 0
        m[2].weight[0, 0] = 0.3  # on the MCP / SCAD boundaries below
        m[2].weight[0, 1] = -0.1
    return m


PENALTIES = [
    ("halo-l1", lambda m: HALO.for_model(m, xi=0.3, psi=0.2, lambda_init=0.7)),
    ("halo-budget", lambda m: HALO.for_model(m, xi=0.3, psi=0.2, hyper="budget", budget=9.0, biases=True)),
    ("halo-budget_sq", lambda m: HALO.for_model(m, xi=0.3, psi=0.2, hyper="budget_sq", budget=30.0)),
    ("l1", lambda m: L1.for_model(m, xi=0.3, lambda_init=0.5)),
    ("sws", lambda m: SWS.for_model(m, xi=0.3, psi=0.2, lambda_init=0.8)),
    ("mcp", lambda m: MCP.for_model(m, xi=0.1, psi=3.0)),
    ("scad", lambda m: SCAD.for_model(m, xi=0.1, a=3.0)),
]


def value_and_grads(make, fused, scale=1.0):
    m = toy()
    p = make(m)
    with torch.no_grad():
        for t in p.parameters():
            t.uniform_(-1.2, 1.2)
    p.fused = fused
    v = p()
    (scale * v).backward()
    grads = [t.grad.clone() for t in list(m.parameters()) + list(p.parameters()) if t.grad is not None]
    return v.detach(), grads


@pytest.mark.parametrize("name,make", PENALTIES)
@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_fused_equals_reference(name, make, scale):
    v_ref, g_ref = value_and_grads(make, False, scale)
    v_fast, g_fast = value_and_grads(make, True, scale)
    assert torch.allclose(v_fast, v_ref, rtol=1e-12, atol=1e-12)
    assert len(g_fast) == len(g_ref) > 0
    for a, b in zip(g_fast, g_ref):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_no_grad_returns_value_only():
    m = toy()
    p = HALO.for_model(m, xi=0.3, psi=0.2)
    with torch.no_grad():
        v = p()
    assert not v.requires_grad and torch.allclose(v, p.reference().detach())


def test_retained_graph_second_backward_is_correct():
    m = toy()
    p = HALO.for_model(m, xi=0.3, psi=0.2)
    v = p()
    v.backward(retain_graph=True)
    first = m[0].weight.grad.clone()
    v.backward()
    assert torch.allclose(m[0].weight.grad, 2 * first)


def test_frozen_scales_get_no_gradient():
    m = toy()
    p = HALO.for_model(m, xi=0.3, psi=0.2)
    for t in p.parameters():
        t.requires_grad_(False)
    p().backward()
    assert all(t.grad is None for t in p.parameters()) and m[0].weight.grad is not None


def test_compiled_kernel_matches_reference(monkeypatch):
    """The torch.compile'd kernel (float32, as in training) against the reference (the native kernel,
    which HALO prefers on the CPU, is tested in test_native.py)."""
    monkeypatch.setenv("SPARSEHALO_COMPILE", "1")
    monkeypatch.setattr(native, "halo_cpu", lambda: None)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 10))
    p = HALO.for_model(m, xi=1e-2, psi=1e-2)
    with torch.no_grad():
        for t in p.parameters():
            t.uniform_(0.1, 1.5)
    p.fused = False
    p().backward()
    ref = [t.grad.clone() for t in [m[0].weight, m[2].weight, *p.parameters()]]
    for t in [*m.parameters(), *p.parameters()]:
        t.grad = None
    p.fused = True
    v = p()
    v.backward()
    got = [m[0].weight.grad, m[2].weight.grad, *[t.grad for t in p.parameters()]]
    assert torch.allclose(v, p.reference(), rtol=1e-5)
    for a, b in zip(got, ref):  # float32, summed in another order: compare against the gradient's scale
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()
    assert elementwise.halo_kernel in fused_mod._compiled and elementwise.halo_kernel not in fused_mod._failed


def test_compile_failure_falls_back_to_eager(monkeypatch):
    monkeypatch.setenv("SPARSEHALO_COMPILE", "1")

    def broken(*a, **k):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(fused_mod, "_compiled", {elementwise.l1_kernel: broken})
    monkeypatch.setattr(fused_mod, "_failed", set())
    m = toy()
    p = L1.for_model(m, xi=0.3)
    with pytest.warns(UserWarning, match="running it eagerly"):
        v = p()
    assert torch.allclose(v, p.reference()) and elementwise.l1_kernel in fused_mod._failed


def test_training_with_fused_matches_reference_training():
    """A few SGD steps with momentum give the same weights either way."""
    def run(fused):
        m = toy()
        p = HALO.for_model(m, xi=1e-2, psi=1e-2)
        p.fused = fused
        opt = torch.optim.SGD([{"params": m.parameters()}, *p.param_groups(lr=0.05)], lr=0.1, momentum=0.9)
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(32, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (32,), generator=g)
        for _ in range(10):
            loss = F.cross_entropy(m(x), y) + p()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [t.detach() for t in [*m.parameters(), *p.parameters()]]

    for a, b in zip(run(True), run(False)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
