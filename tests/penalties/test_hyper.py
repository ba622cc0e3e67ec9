"""The hyper-penalty forms R(S): one table, checked against the hand formulas, and read by every user
(the references, the compiled kernel, the C++ pass)."""

import ast
import math
from pathlib import Path

import pytest
import torch

from sparsehalo.errors import ConfigError
from sparsehalo.penalties import HALO, GroupHALO
from sparsehalo.penalties.hyper import HYPER, hyper_form
from sparsehalo.penalties.kernels import elementwise, native

from support import ROOT

# R(S, p) and R'(S, p) written out by hand, for S on both sides of the budget p = 2.
BY_HAND = {
    "l1": (lambda s, p: s, lambda s, p: 1.0),
    "budget": (lambda s, p: abs(s - p), lambda s, p: math.copysign(1.0, s - p)),
    "budget_sq": (lambda s, p: (s - p) ** 2, lambda s, p: 2 * (s - p)),
}


def test_the_table_holds_the_three_forms_with_distinct_codes():
    assert HYPER.names() == ["l1", "budget", "budget_sq"]
    assert [HYPER.get(n).code for n in HYPER] == [0, 1, 2]
    assert [HYPER.get(n).needs_budget for n in HYPER] == [False, True, True]
    assert [n for n in HYPER if HYPER.get(n).linear] == ["l1"]


@pytest.mark.parametrize("name", list(BY_HAND))
@pytest.mark.parametrize("s", [0.5, 1.75, 3.0, 7.25])
def test_value_and_slope_match_the_hand_formulas_and_autograd(name, s):
    form = HYPER.get(name)
    value, slope = BY_HAND[name]
    t = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    r = form.value(t, 2.0)
    assert r.item() == pytest.approx(value(s, 2.0), abs=1e-15)
    assert float(form.slope(t.detach(), 2.0)) == pytest.approx(slope(s, 2.0), abs=1e-15)
    (g,) = torch.autograd.grad(r, t)
    assert g.item() == pytest.approx(slope(s, 2.0), abs=1e-15)  # slope is the derivative of value


def test_hyper_form_checks_name_and_budget():
    assert hyper_form("l1", None, "HALO") is HYPER.get("l1")
    assert hyper_form("budget", 3.0, "HALO") is HYPER.get("budget")
    with pytest.raises(ConfigError, match="unknown hyper='l2'; choose one of l1, budget, budget_sq"):
        hyper_form("l2", None, "HALO")
    with pytest.raises(ConfigError, match="needs a budget"):
        hyper_form("budget_sq", None, "GroupHALO")


def test_only_hyper_py_spells_the_forms():
    """No other module of the package defines a form: the string ``"budget_sq"`` is a constant of
    hyper.py alone (docstrings aside)."""
    src = ROOT / "src" / "sparsehalo"

    def spells(path):
        return any(isinstance(n, ast.Constant) and n.value == "budget_sq" for n in ast.walk(ast.parse(path.read_text())))

    assert sorted(str(p.relative_to(src)) for p in src.rglob("*.py") if spells(p)) == [str(Path("penalties") / "hyper.py")]


def scales_and_weights():
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(6, 5, generator=g), torch.randn(40, generator=g)]
    lams = [torch.rand(6, 5, generator=g) + 0.1, torch.rand(40, generator=g) + 0.1]
    return ws, lams


@pytest.mark.parametrize("name", list(BY_HAND))
def test_references_and_compiled_kernel_use_the_table(name):
    """HALO's reference, group HALO's reference and the elementwise kernel give psi * R(S) of the table."""
    ws, lams = scales_and_weights()
    ws = [w.double() for w in ws]
    lams = [lam.double() for lam in lams]
    s = sum(lam.abs().sum() for lam in lams).item()
    budget = s - 3.0  # S is on the far side of the budget: every form differs from the others
    xi, psi = 0.0, 0.7  # xi = 0: the value is the hyper term alone
    want = psi * BY_HAND[name][0](s, budget)
    h = HALO({"a": ws[0], "b": ws[1]}, xi=xi, psi=psi, hyper=name, budget=budget)
    with torch.no_grad():
        for t, lam in zip(h.scale_tensors(), lams):
            t.copy_(lam)
    assert h.reference().item() == pytest.approx(want, rel=1e-12)
    value, grads = elementwise.halo_kernel([*ws, *lams], 2, xi, psi, 0.0, name, budget)
    assert value.item() == pytest.approx(want, rel=1e-12)
    for g, lam in zip(grads[2:], lams):  # d/dlambda = psi * R'(S) * sign(lambda)
        assert torch.allclose(g, psi * BY_HAND[name][1](s, budget) * torch.sign(lam), rtol=1e-12, atol=0)
    one_d = GroupHALO({"v": ws[1]}, xi=xi, psi=psi, hyper=name, budget=budget)
    with torch.no_grad():
        one_d.scales["v"].copy_(lams[1])
    s1 = lams[1].abs().sum().item()
    assert one_d.reference().item() == pytest.approx(psi * BY_HAND[name][0](s1, budget), rel=1e-12)


@pytest.fixture(scope="module")
def ext():
    mod = native.halo_cpu()
    assert mod is not None, "the native kernel must build where g++ and ninja are installed"
    return mod


@pytest.mark.parametrize("name", list(BY_HAND))
def test_native_pass_implements_each_code_of_the_table(ext, name):
    """The C++ pass, handed a form's code, computes that form's value and slope (float32)."""
    ws, lams = scales_and_weights()
    s = sum(lam.double().abs().sum() for lam in lams).item()
    budget = s - 3.0
    psi = 0.7
    value, grads = native.halo_native_kernel([*ws, *lams], 2, 0.0, psi, 1e-6, name, budget)
    assert value.item() == pytest.approx(psi * BY_HAND[name][0](s, budget), rel=1e-5)
    slope = BY_HAND[name][1](s, budget)
    for g, lam in zip(grads[2:], lams):
        assert torch.allclose(g, psi * slope * torch.sign(lam), rtol=1e-5, atol=1e-6)


def test_native_kernel_reads_the_code_from_the_table(ext, monkeypatch):
    """Point "l1" at budget_sq's code: the native kernel then computes budget_sq (it has no codes of its own)."""
    ws, lams = scales_and_weights()
    swapped = {"l1": HYPER.get("budget_sq"), "budget_sq": HYPER.get("budget_sq")}
    monkeypatch.setattr(native, "HYPER", swapped)
    got, _ = native.halo_native_kernel([*ws, *lams], 2, 0.0, 1.0, 1e-6, "l1", 2.0)
    want, _ = native.halo_native_kernel([*ws, *lams], 2, 0.0, 1.0, 1e-6, "budget_sq", 2.0)
    s = sum(lam.double().abs().sum() for lam in lams).item()
    assert got.item() == want.item() == pytest.approx((s - 2.0) ** 2, rel=1e-5)
