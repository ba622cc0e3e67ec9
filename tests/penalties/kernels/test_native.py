"""The native C++ HALO kernel (kernels/csrc/halo_cpu.cpp, built on first use) against hand-written formulas
and the reference formulation, its autograd function, the choice of kernel, and the allocator setting."""

import platform

import pytest
import torch
from torch import nn

from sparsehalo import HALO, keep_freed_memory
from sparsehalo.penalties.hyper import HYPER
from sparsehalo.penalties.kernels import elementwise, native


@pytest.fixture(scope="module")
def ext():
    mod = native.halo_cpu()
    assert mod is not None, "the native kernel must build where g++ and ninja are installed"
    return mod


def tensors(seed=0):
    """Weights and scales of three shapes (one longer than a vector block), with exact zeros."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (3000,), (2, 3, 4)]
    ws = [torch.randn(s, generator=g) * 0.3 for s in shapes]
    lams = [torch.rand(s, generator=g) * 1.5 - 0.3 for s in shapes]
    ws[0][0, :3] = 0.0
    lams[2][0, 0, :2] = 0.0
    return ws, lams


def by_hand(ws, lams, xi, psi, eps2, hyper, budget):
    """P and its gradients from the formulas, in float64."""
    ws = [w.double() for w in ws]
    lams = [lam.double() for lam in lams]
    s = sum(lam.abs().sum() for lam in lams)
    r, dr = {"l1": (s, 1.0), "budget": ((s - budget).abs(), torch.sign(s - budget)),
             "budget_sq": ((s - budget) ** 2, 2 * (s - budget))}[hyper]
    value = xi * sum((w.abs() / (lam**2 + eps2)).sum() for w, lam in zip(ws, lams)) + psi * r
    gws = [xi * torch.sign(w) / (lam**2 + eps2) for w, lam in zip(ws, lams)]
    gls = [-2 * xi * w.abs() * lam / (lam**2 + eps2) ** 2 + psi * dr * torch.sign(lam) for w, lam in zip(ws, lams)]
    return value, gws + gls


@pytest.mark.parametrize("hyper,budget", [("l1", 0.0), ("budget", 900.0), ("budget", 4000.0), ("budget_sq", 1500.0)])
def test_native_pass_equals_the_formulas(ext, hyper, budget):
    ws, lams = tensors()
    xi, psi, eps2 = 0.3, 0.2, 1e-6
    out = ext.halo_forward(ws, lams, xi, psi, eps2, HYPER[hyper].code, budget, [])
    value, grads = by_hand(ws, lams, xi, psi, eps2, hyper, budget)
    assert out[0].dtype == torch.float32 and out[0].dim() == 0
    assert abs(out[0].item() - value.item()) <= 1e-5 * abs(value.item())
    assert len(out) == 1 + len(grads)
    for got, want in zip(out[1:], grads):
        assert got.shape == want.shape
        assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-6 * want.abs().max().item())
    # subgradient 0 at exact zeros of w (weights' gradient) and of lambda (the hyper term)
    assert (out[1][0, :3] == 0).all()


def test_native_writes_into_given_buffers(ext):
    ws, lams = tensors(1)
    bufs = [torch.full_like(w, 7.0) for w in ws]
    out = ext.halo_forward(ws, lams, 0.3, 0.2, 1e-6, 0, 0.0, bufs)
    fresh = ext.halo_forward(ws, lams, 0.3, 0.2, 1e-6, 0, 0.0, [])
    for b, got, want in zip(bufs, out[1:4], fresh[1:4]):
        assert got.data_ptr() == b.data_ptr() and torch.equal(got, want)


def test_native_rejects_what_it_cannot_read(ext):
    ws, lams = tensors()
    with pytest.raises(RuntimeError, match="contiguous float32"):
        ext.halo_forward([w.double() for w in ws], lams, 0.3, 0.2, 1e-6, 0, 0.0, [])
    with pytest.raises(RuntimeError, match="differ in size"):
        ext.halo_forward(ws, lams[::-1], 0.3, 0.2, 1e-6, 0, 0.0, [])


def test_native_autograd_function(ext):
    ws, lams = tensors(2)
    ws = [w.requires_grad_() for w in ws]
    lams = [lam.requires_grad_() for lam in lams]
    _, want = by_hand([w.detach() for w in ws], [lam.detach() for lam in lams], 0.3, 0.2, 1e-6, "l1", 0.0)
    v = ext.halo_apply(ws, lams, 0.3, 0.2, 1e-6, 0, 0.0)
    (2.5 * v).backward(retain_graph=True)  # scaled by the incoming gradient
    first = [t.grad.clone() for t in ws + lams]
    for got, w in zip(first, want):
        assert torch.allclose(got.double(), 2.5 * w, rtol=1e-5, atol=1e-5 * w.abs().max().item())
    v.backward()  # a second backward through the same graph recomputes and accumulates
    for t, f, w in zip(ws + lams, first, want):
        assert torch.allclose(t.grad.double(), f.double() + w, rtol=1e-5, atol=1e-5 * w.abs().max().item())
    (g,) = torch.autograd.grad(ext.halo_apply(ws, lams, 0.3, 0.2, 1e-6, 0, 0.0), [lams[1]])
    assert torch.allclose(g.double(), want[4].detach(), rtol=1e-5, atol=1e-5 * want[4].abs().max().item())


def float_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 10))


def test_halo_picks_the_native_kernel_where_it_applies(ext, monkeypatch):
    monkeypatch.setenv("SPARSEHALO_COMPILE", "1")
    assert HALO.for_model(float_model(), xi=1e-2, psi=1e-2).kernel_call()[0] is native.halo_native_kernel
    assert HALO.for_model(float_model().double(), xi=1e-2, psi=1e-2).kernel_call()[0] is elementwise.halo_kernel
    m = float_model()
    m[0].weight = nn.Parameter(torch.randn(40, 30).t())  # not contiguous
    assert HALO.for_model(m, xi=1e-2, psi=1e-2).kernel_call()[0] is elementwise.halo_kernel
    monkeypatch.setenv("SPARSEHALO_COMPILE", "0")
    assert HALO.for_model(float_model(), xi=1e-2, psi=1e-2).kernel_call()[0] is elementwise.halo_kernel


def test_training_with_native_kernel_matches_reference(ext, monkeypatch):
    """Five SGD steps with momentum: native fast path and plain autograd give the same weights."""
    monkeypatch.setenv("SPARSEHALO_COMPILE", "1")
    x, y = torch.randn(16, 40), torch.randint(0, 10, (16,))

    def run(fused):
        m = float_model()
        p = HALO.for_model(m, xi=1e-2, psi=1e-2)
        p.fused = fused
        opt = torch.optim.SGD([{"params": m.parameters()}, *p.param_groups(lr=0.05)], lr=0.1, momentum=0.9)
        for _ in range(5):
            loss = nn.functional.cross_entropy(m(x), y) + p()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [t.detach().clone() for t in [*m.parameters(), *p.parameters()]]

    for a, b in zip(run(True), run(False)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_build_failure_falls_back_to_compiled_kernel(monkeypatch):
    from torch.utils import cpp_extension

    def broken(*a, **k):
        raise RuntimeError("no C++ compiler\nmore lines")

    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_failed", False)
    monkeypatch.setattr(cpp_extension, "load", broken)
    monkeypatch.setenv("SPARSEHALO_COMPILE", "1")
    with pytest.warns(UserWarning, match="native HALO kernel not built \\(no C\\+\\+ compiler\\)"):
        assert native.halo_cpu() is None
    assert HALO.for_model(float_model(), xi=1e-2, psi=1e-2).kernel_call()[0] is elementwise.halo_kernel


def test_keep_freed_memory():
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc
    assert keep_freed_memory() is glibc  # idempotent


def test_concurrent_first_calls_build_once_and_needs_build_follows(monkeypatch):
    # the demo builds in a thread while a run trains: two first calls at once must load the extension once
    import threading
    import time

    from torch.utils import cpp_extension

    calls = []

    def slow_load(*a, **k):
        calls.append(k["name"])
        time.sleep(0.2)
        return object()

    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_failed", False)
    monkeypatch.setattr(native, "_register_op", lambda: None)
    monkeypatch.setattr(cpp_extension, "load", slow_load)
    monkeypatch.setattr(native, "_is_built", lambda *a: False)
    monkeypatch.setenv("SPARSEHALO_COMPILE", "1")
    assert native.needs_build()
    got = []
    threads = [threading.Thread(target=lambda: got.append(native.halo_cpu())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and calls[0] == native._name() and got[0] is got[1] is not None
    assert not native.needs_build()  # loaded: nothing left to build
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setenv("SPARSEHALO_COMPILE", "0")
    assert not native.needs_build()  # compilation disabled: nothing will be built
