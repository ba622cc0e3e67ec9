"""Target mode: the controller's formulas, what it adds to the penalty, its state, the engine's wiring,
and a small problem on which it reaches the requested sparsity by itself."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsehalo
from sparsehalo import config as config_mod
from sparsehalo import training
from sparsehalo.errors import ConfigError
from sparsehalo.penalties.base import Penalty
from sparsehalo.penalties.target import KthSmallest, SparsityController, margin

AVERAGE = 0.95


def test_schedules_and_margin():
    c = SparsityController(0.9, 1000, ramp=0.5, schedule="cubic")
    end = 0.9 + margin(0.9)
    assert margin(0.9) == pytest.approx(0.002) and margin(0.995) == pytest.approx(0.0005)
    steps = torch.tensor([0, 250, 500, 1000])
    want = [0.0, end * (1 - 0.5**3), end, end]
    assert c.scheduled_at(steps).tolist() == pytest.approx(want)
    geometric = SparsityController(0.9, 1000, ramp=0.5, schedule="exp")
    assert geometric.scheduled_at(steps).tolist() == pytest.approx([0.0, 1 - (1 - end) ** 0.5, end, end], rel=1e-6)
    flat = SparsityController(0.9, 1000, schedule="constant")
    assert flat.scheduled_at(steps).tolist() == pytest.approx([end] * 4)


@pytest.mark.parametrize("kwargs,message", [
    ({"target": 1.0}, "target_sparsity must be in"),
    ({"total_steps": None}, "needs total_steps"),
    ({"ramp": 0.0}, "target_ramp"),
    ({"schedule": "linear"}, "target_schedule must be one of"),
    ({"gain": -1.0}, "must be >= 0"),
    ({"error": "square"}, "target_error must be one of"),
    ({"average": 1.0}, "target_average must be in"),
    ({"factor": 0.5}, "target_factor must be >= 1"),
])
def test_bad_settings(kwargs, message):
    args = {"target": 0.9, "total_steps": 10, **kwargs}
    with pytest.raises(ConfigError, match=message):
        SparsityController(args.pop("target"), args.pop("total_steps"), **args)


def test_one_update_by_hand():
    w0 = torch.tensor([0.0, 0.5, -0.0004, 2.0])
    w1 = torch.tensor([0.0, 0.4, 0.03, 2.0])
    c = SparsityController(0.9, 100, ramp=0.5, gain=10.0, gain_p=2.0, average=AVERAGE, schedule="cubic", zero="eps",
                           start=1.0)
    c.track([w0])
    c.update([w1])
    avg = AVERAGE * w0 + (1 - AVERAGE) * w1
    assert torch.allclose(c.average_0, avg)
    measured = 0.25  # only entry 0: entry 2's average is 0.95 * -0.0004 + 0.05 * 0.03 = 0.00112 > 1e-3
    assert float((avg.abs() <= 1e-3).double().mean()) == measured and c.measured.item() == pytest.approx(measured)
    sched = (0.9 + margin(0.9)) * (1 - (1 - 1 / 50) ** 3)
    assert c.scheduled.item() == pytest.approx(sched, rel=1e-5)  # float32 buffers
    err = math.log(1 - measured) - math.log(1 - sched)  # the relative error, in log density
    assert c.error().item() == pytest.approx(err, rel=1e-5)
    assert c.integral.item() == pytest.approx(10.0 * err / 100, rel=1e-5)
    assert c.strength().item() == pytest.approx(math.exp(10.0 * err / 100 + 2.0 * err), rel=1e-5)
    assert int(c.step) == 1 and c.best.item() == pytest.approx(measured)


def test_error_is_clipped_and_relative():
    c = SparsityController(0.99, 100, start=1.0)
    c.measured.fill_(0.98)
    c.scheduled.fill_(0.99)
    assert c.error().item() == pytest.approx(math.log(2.0), rel=1e-4)  # twice too dense
    c.measured.fill_(0.0)
    assert c.error().item() == 1.0 and c.log_strength().item() == 0.0  # clipped; no proportional term by default
    flat = SparsityController(0.99, 100, error="absolute")
    flat.measured.fill_(0.98)
    flat.scheduled.fill_(0.99)
    assert flat.error().item() == pytest.approx(0.01, rel=1e-4)


def test_backs_off_while_the_weights_are_much_denser_than_at_their_best():
    c = SparsityController(0.9, 100, gain=10.0, schedule="constant", average=0.0, start=1.0)
    c.track([torch.zeros(10)])
    c.update([torch.zeros(10)])  # everything at zero: measured 1.0 (the best), error clipped to -1
    assert c.best.item() == 1.0 and c.integral.item() == pytest.approx(-10.0 / 100)
    before = c.integral.item()
    c.update([torch.ones(10)])  # the average leaves zero: measured 0, far below the best
    assert c.best.item() == pytest.approx(1.0 - 1.0 / (0.05 * 100))  # the best is slowly forgotten
    assert c.integral.item() == pytest.approx(before - 10.0 * 1.0 / 100)  # backed off, not pushed


def model_and_halo(seed=0, **kw):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    pen = sparsehalo.HALO.for_model(model, xi=0.01, psi=0.02, **kw)
    with torch.no_grad():
        for i, lam in enumerate(pen.parameters()):
            lam.copy_(torch.linspace(0.3, 1.4, lam.numel()).reshape(lam.shape).roll(i))
    return model, pen


@pytest.mark.parametrize("fused", [True, False])
def test_target_mode_scales_the_pull_on_the_weights_and_leaves_the_scales_problem(fused):
    model, base = model_and_halo()
    _, target = model_and_halo(target_sparsity=0.5, total_steps=10, target_gain=1000.0, target_gain_p=3.0, target_knob="pull")
    for p in (base, target):
        p.fused = fused
    target.load_state_dict(base.state_dict(), strict=False)  # same scales
    v_base = base()
    w_grads_base = torch.autograd.grad(v_base, [*base.penalized().values(), *base.parameters()])
    v = target()  # one training step: the controller moves first
    m = target.controller.strength().item()
    assert m != pytest.approx(1.0)
    ws = list(target.penalized().values())
    lams = list(target.parameters())
    weight_term = sum((w.abs() / (lam**2 + 1e-6)).sum() for w, lam in zip(ws, lams)).item()
    assert v.item() == pytest.approx(v_base.item() + (m - 1) * 0.01 * weight_term, rel=1e-5)
    grads = torch.autograd.grad(v, [*ws, *lams])
    n = len(ws)
    for w, lam, g, gb in zip(ws, lams, grads[:n], w_grads_base[:n]):
        pull = 0.01 * torch.sign(w.detach()) / (lam.detach() ** 2 + 1e-6)
        assert torch.allclose(g, m * pull, rtol=1e-4, atol=1e-6) and torch.allclose(gb, pull, rtol=1e-4, atol=1e-6)
    for g, gb in zip(grads[n:], w_grads_base[n:]):
        assert torch.allclose(g, gb, rtol=1e-5, atol=1e-7)  # the scales see the plain objective


def test_only_training_calls_count():
    _, pen = model_and_halo(target_sparsity=0.5, total_steps=10)
    with torch.no_grad():
        pen()
    assert int(pen.controller.step) == 0
    pen()
    assert int(pen.controller.step) == 1
    stats = pen.stats()
    assert {"target_strength", "target_measured", "target_scheduled", "target_xi", "target_psi"} <= set(stats)
    assert stats["target_xi"] == pytest.approx(0.01 * stats["target_strength"])


def steps(model, pen, opt, n, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(16, 6, generator=g)
        y = torch.randint(0, 3, (16,), generator=g)
        loss = F.cross_entropy(model(x), y) + pen()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_resume_from_state_dicts_is_bit_identical():
    def fresh():
        model, pen = model_and_halo(target_sparsity=0.6, total_steps=40, target_gain=200.0)
        pen.xi = pen.psi = 1e-4
        opt = torch.optim.SGD([{"params": model.parameters()}, *pen.param_groups(lr=0.1)], lr=0.1, momentum=0.9)
        return model, pen, opt

    m1, p1, o1 = fresh()
    steps(m1, p1, o1, 20, seed=1)
    saved = [{k: v.clone() for k, v in x.state_dict().items()} for x in (m1, p1)], copy.deepcopy(o1.state_dict())
    steps(m1, p1, o1, 20, seed=2)
    m2, p2, o2 = fresh()
    m2.load_state_dict(saved[0][0])
    p2.load_state_dict(saved[0][1])
    o2.load_state_dict(saved[1])
    steps(m2, p2, o2, 20, seed=2)
    assert int(p2.controller.step) == 40
    for a, b in zip([*m1.state_dict().values(), *p1.state_dict().values()], [*m2.state_dict().values(), *p2.state_dict().values()]):
        assert torch.equal(a, b)


def test_reaches_the_target_by_itself_on_a_small_problem():
    """Three informative inputs of twenty, a 20-64-5 network, 1500 steps of SGD with a cosine rate: the
    controller alone takes it to at least 90% natural sparsity, and pruning to 90% keeps the accuracy."""
    torch.manual_seed(0)
    x = torch.randn(2048, 20)
    true = torch.zeros(20, 5)
    true[:3] = torch.randn(3, 5)
    y = (x @ true).argmax(1)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
    n = 1500
    pen = sparsehalo.HALO.for_model(model, xi=1e-3, psi=1e-3, target_sparsity=0.9, total_steps=n)
    opt = torch.optim.SGD([{"params": model.parameters()}, *pen.param_groups(lr=0.1)], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n)
    g = torch.Generator().manual_seed(1)
    for _ in range(n):
        idx = torch.randint(0, 2048, (64,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx]) + pen()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    ws = list(pen.penalized().values())
    natural = sum(int((w.abs() <= 1e-3).sum()) for w in ws) / sum(w.numel() for w in ws)
    with torch.no_grad():
        before = (model(x).argmax(1) == y).float().mean().item()
        sparsehalo.prune(model, 0.9)
        after = (model(x).argmax(1) == y).float().mean().item()
    assert 0.9 <= natural <= 0.96
    assert before > 0.95 and abs(after - before) <= 0.005


def test_engine_fills_in_total_steps_and_logs_the_controller(tiny_settings, tmp_path):
    cfg = config_mod.load(None, [*tiny_settings, "penalty.target_sparsity=0.9"])
    state = training.build(cfg)
    assert state.penalty.controller.total_steps == state.steps_per_epoch * 2 == 16
    lines = []
    training.train(cfg, tmp_path / "r", echo=lines.append)
    assert any("strength" in line and "scheduled" in line for line in lines if line.startswith("epoch"))
    with pytest.raises(ConfigError, match="penalty 'l1' has no setting 'target_sparsity'"):
        config_mod.load(None, ['penalty.name="l1"', "penalty.target_sparsity=0.9"])


def test_compiled_step_has_no_graph_break_and_matches_eager(monkeypatch):
    monkeypatch.setenv("SPARSEHALO_COMPILE", "1")
    torch._dynamo.reset()
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    runs = []
    for compiled in (False, True):
        model, pen = model_and_halo(target_sparsity=0.5, total_steps=20)
        pen.xi = pen.psi = 1e-3

        def fwd():
            return F.cross_entropy(model(x), y) + pen()

        if compiled:
            assert torch._dynamo.explain(fwd)().graph_break_count == 0
            pen.load_state_dict(model_and_halo(target_sparsity=0.5, total_steps=20)[1].state_dict())  # undo explain's step
            fwd = torch.compile(fwd, fullgraph=True)
        for _ in range(3):
            fwd().backward()
        runs.append((int(pen.controller.step), pen.controller.integral.item(), [p.grad.clone() for p in pen.parameters()]))
    torch._dynamo.reset()
    (s_e, i_e, g_e), (s_c, i_c, g_c) = runs
    assert s_e == s_c == 3 and i_c == pytest.approx(i_e, rel=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-8) for a, b in zip(g_e, g_c))


def test_psi_knob_scales_the_hyper_penalty_and_leaves_the_weights_pull():
    model, base = model_and_halo()
    _, target = model_and_halo(target_sparsity=0.5, total_steps=10, target_gain=1000.0, target_knob="psi")
    target.load_state_dict(base.state_dict(), strict=False)
    v_base = base()
    g_base = torch.autograd.grad(v_base, [*base.penalized().values(), *base.parameters()])
    v = target()
    m = target.controller.strength().item()
    lams = list(target.parameters())
    s = sum(lam.abs().sum() for lam in lams).item()
    assert m != pytest.approx(1.0)
    assert v.item() == pytest.approx(v_base.item() + (m - 1) * 0.02 * s, rel=1e-5)
    grads = torch.autograd.grad(v, [*target.penalized().values(), *lams])
    n = len(lams)
    for g, gb in zip(grads[:n], g_base[:n]):
        assert torch.allclose(g, gb, rtol=1e-5, atol=1e-7)  # the weights' pull is what the scales make it
    for g, gb, lam in zip(grads[n:], g_base[n:], lams):
        assert torch.allclose(g, gb + (m - 1) * 0.02 * torch.sign(lam.detach()), rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="target_knob must be pull, psi, prune or both"):
        model_and_halo(target_sparsity=0.5, total_steps=10, target_knob="lr")


def test_jitter_zero_counts_a_weight_at_zero_within_its_own_fluctuation():
    w0 = torch.tensor([0.0, 0.5, 0.02, 2.0])
    w1 = torch.tensor([0.0, 0.51, -0.016, 2.0])  # entry 2 jumps across zero by far more than 1e-3
    for zero, want in (("eps", 0.25), ("jitter", 0.5)):
        c = SparsityController(0.9, 100, average=0.5, zero=zero)
        c.track([w0])
        c.update([w1])
        avg = 0.5 * w0 + 0.5 * w1  # [0, 0.505, 0.002, 2]: entry 2's average is 0.002 > 1e-3, |w - avg| = 0.018
        held = avg.abs() <= ((w1 - avg).abs().clamp(min=1e-3) if zero == "jitter" else 1e-3)
        assert float(held.double().mean()) == want and c.measured.item() == pytest.approx(want)
    # entry 1 moves by 0.005 around an average of 0.505: never counted as zero
    assert not bool(avg[1].abs() <= (w1[1] - avg[1]).abs())


def test_start_sets_the_strength_before_the_first_update():
    c = SparsityController(0.9, 100, start=0.25, factor=10.0)
    assert c.strength().item() == pytest.approx(0.25)
    for bad in (0.05, 20.0, float("nan")):
        with pytest.raises(ConfigError, match="target_start must be in"):
            SparsityController(0.9, 100, start=bad, factor=10.0)
    with pytest.raises(ConfigError, match="target_zero must be one of"):
        SparsityController(0.9, 100, zero="abs")


def test_summary_of_a_target_run_reports_its_level_under_its_own_label(tiny_settings, tmp_path):
    cfg = config_mod.load(None, [*tiny_settings, "penalty.target_sparsity=0.8", "prune.levels=[0.5]"])
    summary = training.train(cfg, tmp_path / "r", echo=lambda s: None)
    assert summary["label"] == "HALO (target)" and summary["target_sparsity"] == 0.8
    assert [p["sparsity_requested"] for p in summary["points"]] == [0.5, 0.8]  # no unpruned point
    plain = training.train(config_mod.load(None, [*tiny_settings, "prune.levels=[0.5]"]), tmp_path / "p", echo=lambda s: None)
    assert plain["label"] == "HALO" and plain["target_sparsity"] is None and [p["sparsity_requested"] for p in plain["points"]] == [0.0, 0.5]


def test_prune_knob_pulls_only_the_weights_the_final_prune_removes():
    model, base = model_and_halo()
    _, target = model_and_halo(target_sparsity=0.75, total_steps=10, target_knob="prune", target_start=0.5)
    target.load_state_dict(base.state_dict(), strict=False)
    weights = list(target.penalized().values())
    with torch.no_grad():
        flat = torch.cat([w.abs().reshape(-1) for w in weights])
        threshold = flat.sort().values[round(0.75 * flat.numel()) - 1]  # the 75% smallest magnitudes
    v = target()
    m = target.controller.strength().item()
    lams = list(target.parameters())
    want = base().item() + m * 0.01 * sum(
        (torch.where(w.abs() <= threshold, w.abs(), 0.0) / (lam.square() + 1e-6)).sum().item() for w, lam in zip(weights, lams))
    assert v.item() == pytest.approx(want, rel=1e-5)
    grads = torch.autograd.grad(v, [*weights, *lams])
    g_base = torch.autograd.grad(base(), [*base.penalized().values(), *base.parameters()])
    n = len(weights)
    for g, gb, w, lam in zip(grads[:n], g_base[:n], weights, lams):
        extra = m * 0.01 * torch.sign(w.detach()) / (lam.detach().square() + 1e-6) * (w.detach().abs() <= threshold)
        assert torch.allclose(g, gb + extra, rtol=1e-5, atol=1e-7)  # kept weights feel HALO's pull only
    for g, gb in zip(grads[n:], g_base[n:]):
        assert torch.allclose(g, gb, rtol=1e-5, atol=1e-7)  # the scales' problem is untouched


def test_kth_smallest_equals_kthvalue_while_the_values_drift_and_jump():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5000, generator=gen)
    x[:300] = 0.0  # ties at zero and a few duplicates
    x[300:400] = x[400]
    for k in (1, 17, 2500, 4000, 4990, 5000):
        kth = KthSmallest()
        for step in range(40):
            # slow drift (the band hits) with a jump every 10 steps (the band misses and the full selection runs)
            x = x * (1.0 + 0.01 * torch.randn(x.shape, generator=gen)) * (3.0 if step % 10 == 9 else 1.0)
            assert torch.equal(kth(x, k), x.kthvalue(k).values), (k, step)
    assert kth.hint is not None


@pytest.mark.parametrize("start", [0.3, 3.0])
def test_both_knob_skips_only_the_term_that_is_exactly_zero(start):
    # below strength 1 the prune pull is 0 * ..., above it the extra psi term is: the eager CPU path skips
    # the zero one, which changes neither the value nor any gradient, bit for bit.
    _, pen = model_and_halo(target_sparsity=0.75, total_steps=1000, target_start=start)
    tensors = [*pen.penalized().values(), *pen.parameters()]
    v_fast = pen()  # a training call: updates the controller, then adds one term
    m = pen.controller.strength()
    assert (m.item() > 1.0) == (start > 1.0)
    v_full = Penalty.forward(pen) + pen.extra_psi(m.clamp(max=1.0) - 1.0) + pen.extra_prune(m.clamp(min=1.0) - 1.0)
    assert v_fast.item() == v_full.item()
    for a, b in zip(torch.autograd.grad(v_fast, tensors), torch.autograd.grad(v_full, tensors)):
        assert torch.equal(a, b)
