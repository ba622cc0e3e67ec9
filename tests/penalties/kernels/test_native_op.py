"""The native HALO pass as the PyTorch operator ``sparsehalo::halo``: its registrations (opcheck), its
autograd formula against hand-written gradients, and ``torch.compile(fullgraph=True)`` of a training
step with ``penalty()`` (native operator, and the traced fallback where the extension is missing)
against eager and the plain autograd reference."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsehalo import HALO, L1
from sparsehalo.penalties.hyper import HYPER
from sparsehalo.penalties.kernels import elementwise, native

FORMS = [("l1", 0.0), ("budget", 40.0), ("budget_sq", 30.0)]


@pytest.fixture(scope="module")
def ext():
    mod = native.halo_cpu()
    assert mod is not None, "the native kernel must build where g++ and ninja are installed"
    return mod


@pytest.fixture(autouse=True)
def fresh_dynamo(monkeypatch):
    """A fresh Dynamo cache, and no AOTAutograd cache: that one is keyed by the forward graph, which names
    the operator but not its Python autograd formula, so an edited formula would be served stale
    (pytorch/pytorch#144344); Inductor's cache, keyed by the generated graphs, stays on."""
    monkeypatch.setenv("SPARSEHALO_COMPILE", "1")
    torch._dynamo.reset()
    with torch._functorch.config.patch(enable_autograd_cache=False):
        yield
    torch._dynamo.reset()


def leaves(seed=0):
    """Weights and scales of two shapes (float32, exact zeros in both), as leaves that want a gradient."""
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(4, 6, generator=g) * 0.5, torch.randn(2500, generator=g) * 0.5]
    lams = [torch.rand(4, 6, generator=g) * 1.3 - 0.2, torch.rand(2500, generator=g) * 1.3 - 0.2]
    ws[0][0, :2] = 0.0
    lams[1][:3] = 0.0
    return [w.requires_grad_() for w in ws], [lam.requires_grad_() for lam in lams]


def by_hand(ws, lams, xi, psi, eps2, hyper, budget):
    """dP/dw and dP/dlambda from the formulas of csrc/halo_cpu.cpp, in float64."""
    ws = [w.detach().double() for w in ws]
    lams = [lam.detach().double() for lam in lams]
    s = sum(lam.abs().sum() for lam in lams)
    dr = {"l1": 1.0, "budget": torch.sign(s - budget), "budget_sq": 2 * (s - budget)}[hyper]
    gws = [xi * torch.sign(w) / (lam**2 + eps2) for w, lam in zip(ws, lams)]
    gls = [-2 * xi * w.abs() * lam / (lam**2 + eps2) ** 2 + psi * dr * torch.sign(lam) for w, lam in zip(ws, lams)]
    return gws + gls


def close(got, want, rel):
    """``got`` equals ``want`` up to ``rel`` times the largest entry of ``want`` (float32 sums in another order)."""
    return got.shape == want.shape and (got.double() - want.double()).abs().max() <= rel * want.abs().max()


@pytest.mark.parametrize("hyper,budget", FORMS)
def test_op_equals_the_pass_and_its_gradients_the_formulas(ext, hyper, budget):
    ws, lams = leaves()
    args = (0.3, 0.2, 1e-6, HYPER[hyper].code, budget)
    out = torch.ops.sparsehalo.halo(ws, lams, *args)
    direct = ext.halo_forward(ws, lams, *args, [])
    assert len(out) == len(direct) == 5 and all(torch.equal(a, b) for a, b in zip(out, direct))
    assert out[0].requires_grad and not any(t.requires_grad for t in out[1:])  # the gradients are constants
    (2.5 * out[0]).backward()  # scaled by the incoming gradient
    for t, want in zip(ws + lams, by_hand(ws, lams, 0.3, 0.2, 1e-6, hyper, budget)):
        assert close(t.grad, 2.5 * want, 1e-6)
    assert (ws[0].grad[0, :2] == 0).all()  # subgradient 0 at w = 0


@pytest.mark.parametrize("hyper,budget", FORMS)
def test_opcheck(ext, hyper, budget):
    """Schema, fake implementation, autograd registration and AOT dispatch (dynamic shapes) agree with eager."""
    ws, lams = leaves(1)
    report = torch.library.opcheck(torch.ops.sparsehalo.halo.default, (ws, lams, 0.3, 0.2, 1e-6, HYPER[hyper].code, budget))
    assert report and set(report.values()) == {"SUCCESS"}


def tiny(seed=0):
    """Two Linear layers (float32)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def batch():
    g = torch.Generator().manual_seed(3)
    return torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)


def halo(model, **kw):
    """HALO on both weights, the scales spread over [0.3, 1.4] (off their initial value)."""
    p = HALO.for_model(model, xi=0.05, psi=0.02, **kw)
    with torch.no_grad():
        for i, lam in enumerate(p.parameters()):
            lam.copy_(torch.linspace(0.3, 1.4, lam.numel()).reshape(lam.shape).roll(i))
    return p


def objective(model, penalty, x, y):
    """The training loss of the three-line use, as a function of nothing (to compile)."""

    def fwd():
        return F.cross_entropy(model(x), y) + penalty()

    return fwd


def loss_and_grads(model, penalty, fwd):
    """``fwd()`` then a backward outside it: the loss and the gradients of the weights, biases and scales."""
    loss = fwd()
    loss.backward()
    return loss.detach(), [t.grad.clone() for t in [*model.parameters(), *penalty.parameters()]]


@pytest.mark.parametrize("hyper,budget", [("l1", 0.0), ("budget_sq", 30.0)])
def test_compiled_forward_has_no_graph_break_and_matches_eager(ext, hyper, budget):
    x, y = batch()
    runs = {}
    for mode in ("eager", "compiled", "reference"):
        model = tiny()
        p = halo(model, hyper=hyper, budget=budget if hyper != "l1" else None)
        p.fused = mode != "reference"
        assert p.kernel_call()[0] is native.halo_native_kernel
        fwd = objective(model, p, x, y)
        if mode == "compiled":
            explained = torch._dynamo.explain(fwd)()
            assert explained.graph_break_count == 0 and "sparsehalo.halo" in explained.graphs[0].code
            fwd = torch.compile(fwd, fullgraph=True)
        runs[mode] = loss_and_grads(model, p, fwd)
    (v_e, g_e), (v_c, g_c), (v_r, g_r) = runs["eager"], runs["compiled"], runs["reference"]
    assert torch.allclose(v_c, v_e, rtol=1e-6) and torch.allclose(v_c, v_r, rtol=1e-5)
    assert len(g_c) == len(g_e) == 6  # 2 weights, 2 biases, 2 scales
    for a, b, r in zip(g_c, g_e, g_r):
        assert close(a, b, 1e-6) and close(a, r, 1e-5)


def test_compiled_training_step_with_backward_inside(ext):
    """``loss = ce + penalty(); loss.backward()`` as one graph (Dynamo's ``trace_autograd_ops``), three SGD
    steps: the same losses and final weights and scales as eager."""
    x, y = batch()

    def train(compiled):
        model = tiny()
        p = halo(model, hyper="budget", budget=40.0)
        opt = torch.optim.SGD([{"params": model.parameters()}, *p.param_groups(lr=0.05)], lr=0.1, momentum=0.9)

        def step():
            loss = F.cross_entropy(model(x), y) + p()
            loss.backward()
            return loss.detach()

        if compiled:
            step = torch.compile(step, fullgraph=True)
        losses = []
        with torch._dynamo.config.patch(trace_autograd_ops=True):
            for _ in range(3):
                opt.zero_grad()
                losses.append(step())
                opt.step()
        return torch.stack(losses), [t.detach() for t in [*model.parameters(), *p.parameters()]]

    (l_e, t_e), (l_c, t_c) = train(False), train(True)
    assert torch.allclose(l_c, l_e, rtol=1e-6)
    for a, b in zip(t_c, t_e):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make", [lambda m: halo(m, hyper="budget", budget=40.0), lambda m: L1.for_model(m, xi=0.05)],
                         ids=["halo", "l1"])
def test_compiled_without_the_extension_traces_the_kernel(monkeypatch, make):
    """Where the extension cannot be built, HALO keeps its elementwise kernel; compiled, its value is traced
    (no graph break) and the compiler's gradients equal the plain autograd reference's."""
    monkeypatch.setattr(native, "native_available", lambda: False)
    x, y = batch()
    runs = {}
    for mode in ("compiled", "reference"):
        model = tiny()
        p = make(model)
        p.fused = mode == "compiled"
        if isinstance(p, HALO):
            assert p.kernel_call()[0] is elementwise.halo_kernel
        fwd = objective(model, p, x, y)
        runs[mode] = loss_and_grads(model, p, torch.compile(fwd, fullgraph=True) if mode == "compiled" else fwd)
    (v_c, g_c), (v_r, g_r) = runs["compiled"], runs["reference"]
    assert torch.allclose(v_c, v_r, rtol=1e-5) and len(g_c) == len(g_r) > 0
    for a, b in zip(g_c, g_r):
        assert close(a, b, 1e-5)
