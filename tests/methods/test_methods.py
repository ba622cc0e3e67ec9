"""Pruning baselines under the one training loop: each method's defining invariant, and resume across phases."""

import pytest
import torch
from torch import nn

from sparsehalo import training
from sparsehalo.io import load_torch
from sparsehalo.progress import Progress
from sparsehalo.training import checkpointing, loop
from sparsehalo import config as config_mod
from sparsehalo.methods import cubic_sparsity, split_epochs
from sparsehalo.pruning import mask_from_scores, random_mask, snip_scores

N = 266200  # LeNet-300-100 prunable weights


def make(settings, *extra):
    base = [s for s in settings if not s.startswith("penalty.")] + ['penalty.name="none"']
    return config_mod.load(None, [*base, *extra])


def prunable_zero_fraction(exp):
    ps = list(exp.prunable().values())
    return sum(int((p == 0).sum()) for p in ps) / sum(p.numel() for p in ps)


def test_cubic_schedule_formula():
    assert cubic_sparsity(5, 10, 20, 0.0, 0.9) == 0.0
    assert cubic_sparsity(10, 10, 20, 0.1, 0.9) == pytest.approx(0.1)
    assert cubic_sparsity(15, 10, 20, 0.0, 0.9) == pytest.approx(0.9 - 0.9 * 0.5**3)
    assert cubic_sparsity(20, 10, 20, 0.0, 0.9) == 0.9
    assert cubic_sparsity(99, 10, 20, 0.0, 0.9) == 0.9


def test_split_epochs():
    assert split_epochs(10, 4) == [3, 3, 2, 2]
    with pytest.raises(Exception):
        split_epochs(2, 3)


def test_gmp_is_at_scheduled_sparsity_at_every_pruning_step(tiny_settings):
    # 512 / 64 = 8 steps per epoch; prune every 2 steps from step 4 to step 12
    cfg = make(tiny_settings, 'method.name="gmp"', "method.sparsity=0.9",
               "method.options={start_epoch=0.5, end_epoch=1.5, frequency=2}", "train.epochs=2")
    exp = training.build(cfg)
    plan = exp.method.schedule_steps(exp)
    assert [t for t, _ in plan] == [4, 6, 8, 10, 12]
    seen, masks = [], []
    hook = exp.method.after_step

    def recording(e, step):
        hook(e, step)
        if step in dict(plan):
            seen.append((step, prunable_zero_fraction(e)))
            if e.mask is not None:
                masks.append({n: m.clone() for n, m in e.mask.items()})

    exp.method.after_step = recording
    exp.method.begin_phase(exp, 0)
    for epoch in range(2):
        loop.train_epoch(exp, epoch, Progress(1, enabled=False))
    assert [t for t, _ in seen] == [t for t, _ in plan]
    for (t, s), (_, measured) in zip(plan, seen):
        assert measured == round(s * N) / N, (t, s, measured)
    assert seen[-1][1] == round(0.9 * N) / N
    for a, b in zip(masks, masks[1:]):  # nested: nothing pruned comes back
        assert all(not (b[n] & ~a[n]).any() for n in a)
    assert prunable_zero_fraction(exp) == round(0.9 * N) / N


def test_imp_never_revives_and_rewinds_to_init(tiny_settings):
    cfg = make(tiny_settings, 'method.name="imp"', "method.sparsity=0.875", "method.options={rounds=3}",
               "train.epochs=4", "optim.weight_decay=1e-3")
    exp = training.build(cfg)
    init = {n: p.detach().clone() for n, p in exp.prunable().items()}
    assert exp.phases == [1, 1, 1, 1]
    masks = []
    for epoch in range(4):
        phase, first = exp.phase_of(epoch)
        if phase > 0:
            exp.start_phase(phase)
        exp.method.begin_phase(exp, phase)
        if phase > 0:
            masks.append({n: m.clone() for n, m in exp.mask.items()})
            # rewound: every surviving weight is back at its initial value
            for n, p in exp.prunable().items():
                assert torch.equal(p[masks[-1][n]], init[n][masks[-1][n]])
            target = 1 - (1 - 0.875) ** (phase / 3)
            assert prunable_zero_fraction(exp) == round(target * N) / N
        loop.train_epoch(exp, epoch, Progress(1, enabled=False))
    for a, b in zip(masks, masks[1:]):
        assert all(not (b[n] & ~a[n]).any() for n in a)
    assert prunable_zero_fraction(exp) == round(0.875 * N) / N  # still exact after the last training


def test_snip_scores_equal_abs_grad_times_weight_by_hand():
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
    x = torch.tensor([[1.0, 2.0]])
    y = torch.tensor([1])
    scores = snip_scores(layer, {"weight": layer.weight}, [(x, y)])
    z = layer.weight.detach() @ x[0]
    p = torch.softmax(z, 0)
    grad = torch.outer(p - torch.tensor([0.0, 1.0]), x[0])  # d CE / d W for one example
    assert torch.allclose(scores["weight"], (grad * layer.weight.detach()).abs())
    mask = mask_from_scores(scores, 0.5)
    kept = scores["weight"][mask["weight"]]
    assert kept.numel() == 2 and kept.min() >= scores["weight"][~mask["weight"]].max()


def test_snip_run_keeps_exact_sparsity(tiny_settings):
    cfg = make(tiny_settings, 'method.name="snip"', "method.sparsity=0.95", "train.epochs=1")
    exp = training.build(cfg)
    exp.method.begin_phase(exp, 0)
    assert prunable_zero_fraction(exp) == round(0.95 * N) / N
    loop.train_epoch(exp, 0, Progress(1, enabled=False))
    assert prunable_zero_fraction(exp) == round(0.95 * N) / N


def test_random_mask_matches_requested_layer_densities():
    shapes = {"a": torch.Size([10, 30]), "b": torch.Size([7]), "c": torch.Size([4, 5, 3])}
    dens = {"a": 0.1, "b": 0.5, "c": 1 / 3}
    m = random_mask(shapes, dens, seed=3)
    for n, s in shapes.items():
        assert int(m[n].sum()) == round(dens[n] * s.numel())
    assert m == random_mask(shapes, dens, seed=3) and m != random_mask(shapes, dens, seed=4)


@pytest.mark.parametrize("source", ["uniform", "snip", "magnitude"])
def test_random_method_densities(tiny_settings, source):
    cfg = make(tiny_settings, 'method.name="random"', "method.sparsity=0.9", f'method.options={{densities="{source}"}}')
    exp = training.build(cfg)
    wanted = exp.method.layer_densities(exp)
    exp.method.begin_phase(exp, 0)
    for s in exp.mask.layer_stats():
        assert s["kept"] == round(wanted[s["name"]] * s["total"])
    if source == "uniform":
        assert all(d == pytest.approx(0.1) for d in wanted.values())
    else:
        assert len(set(round(d, 6) for d in wanted.values())) > 1  # non-uniform


def test_finetune_prunes_then_keeps_zeros_and_lowers_lr(tmp_path, tiny_settings):
    cfg = make(tiny_settings, 'method.name="finetune"', "method.sparsity=0.9", "method.options={finetune_epochs=1}",
               "train.epochs=3", "optim.weight_decay=1e-2")
    s = training.train(cfg, tmp_path / "ft", echo=lambda m: None)
    assert s["phases"] == [2, 1] and s["label"] == "magnitude+FT"
    (pt,) = s["points"]
    assert pt["sparsity_requested"] == 0.9 and pt["fine_tuned"] is True
    assert pt["sparsity_measured"] == round(0.9 * N) / N
    ck = load_torch(tmp_path / "ft" / "checkpoint.pt")
    w = ck["model"]["fc1.weight"]
    assert torch.equal(w == 0, ~ck["mask"]["fc1.weight"])
    assert ck["optimizer"]["param_groups"][0]["initial_lr"] == pytest.approx(0.1 * cfg.optim.lr)


def test_oneshot_summary_points_and_costs(tmp_path, tiny_settings):
    cfg = config_mod.load(None, tiny_settings)
    s = training.train(cfg, tmp_path / "r", echo=lambda m: None)
    assert [p["sparsity_requested"] for p in s["points"]] == [0.0, 0.5, 0.9]
    p9 = s["points"][2]
    assert p9["sparsity_measured"] == round(0.9 * N) / N and p9["fine_tuned"] is False
    assert p9["flops_dense"] == N and p9["flops_nonzero"] == p9["prunable_nonzero"] == N - round(0.9 * N)
    assert p9["params_total"] == 266610 and p9["compression"] == pytest.approx(266610 / p9["params_nonzero"])
    assert p9["test_accuracy"] == pytest.approx(s["pruned_test_accuracy"]["0.9"])
    assert s["label"] == "HALO" and s["dataset"] == "synthetic"


@pytest.mark.parametrize("stop_after", [1, 2])  # 1: at a phase boundary; 2: inside the second phase
def test_multiphase_resume_is_bit_identical(tmp_path, tiny_settings, monkeypatch, stop_after):
    cfg = make(tiny_settings, 'method.name="imp"', "method.sparsity=0.75", "method.options={rounds=1, rewind_step=3}",
               "train.epochs=4")
    full = training.train(cfg, tmp_path / "full", echo=lambda m: None)

    real_save = checkpointing.save

    class Killed(Exception):
        pass

    def save_then_die(exp, path, epoch, history):
        real_save(exp, path, epoch, history)
        if epoch == stop_after:
            raise Killed

    monkeypatch.setattr(checkpointing, "save", save_then_die)
    with pytest.raises(Killed):
        training.train(cfg, tmp_path / "part", echo=lambda m: None)
    monkeypatch.setattr(checkpointing, "save", real_save)
    resumed = training.train(cfg, tmp_path / "part", echo=lambda m: None)
    a = load_torch(tmp_path / "full" / "checkpoint.pt")
    b = load_torch(tmp_path / "part" / "checkpoint.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert resumed["points"][0]["test_accuracy"] == full["points"][0]["test_accuracy"]


def test_unknown_method_and_bad_options(tiny_settings):
    from sparsehalo.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown method"):
        training.build(make(tiny_settings, 'method.name="obd"'))
    with pytest.raises(ConfigError, match="rounds"):
        training.build(make(tiny_settings, 'method.name="imp"', "method.sparsity=0.5", "method.options={round=2}"))
    with pytest.raises(ConfigError, match="sparsity"):
        training.build(make(tiny_settings, 'method.name="snip"'))
