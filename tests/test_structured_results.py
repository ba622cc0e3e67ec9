"""scripts/structured_results.py: the L1-norm filter ranking removes the lowest-L1 units of every layer, to the MACs target;
the cases, the job order and the units-kept table."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from sparsehalo.measure import layer_costs
from sparsehalo.pruning import slim

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "structured_results.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("structured_results", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.conv2 = nn.Conv2d(6, 8, 3)
        self.fc1 = nn.Linear(8 * 4 * 4, 10)
        self.fc2 = nn.Linear(10, 3)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def _macs(model, shape):
    return sum(c.macs_dense for c in layer_costs(model, shape))


@pytest.mark.parametrize("target", [0.3, 0.6])
def test_l1_mask_removes_lowest_l1_units_to_the_macs_target(script, target):
    torch.manual_seed(0)
    model, shape = Tiny().eval(), (1, 8, 8)
    # scrambled L1 norms per unit (the order is not the index order), so a ranking by index would fail
    with torch.no_grad():
        for name in ("conv1", "conv2", "fc1"):
            w = model.get_submodule(name).weight
            scale = torch.randperm(w.shape[0], generator=torch.Generator().manual_seed(len(name))).double() + 1
            w.copy_(w.sign() * scale.view(-1, *[1] * (w.dim() - 1)).to(w.dtype))  # |w| = scale: L1 = scale * fan-in
    mask = script.l1_mask(model, shape, target)
    total = _macs(model, shape)
    small = slim(model, mask)
    assert _macs(small, shape) == mask.macs_after  # the exact MACs of the slim network
    assert total - mask.macs_after >= target * total  # the target is reached
    for name in ("conv1", "conv2", "fc1"):
        l1 = model.get_submodule(name).weight.abs().flatten(1).sum(1)
        removed = (~mask[name]).nonzero().flatten()
        k = len(removed)
        assert 0 < k < len(l1)
        assert set(removed.tolist()) == set(torch.argsort(l1)[:k].tolist())  # exactly the k lowest-L1 units
    assert "fc2" not in mask  # the output layer is never pruned
    # one unit fewer would not reach the target: re-adding the best removed unit of some layer falls short
    short = []
    for name in ("conv1", "conv2", "fc1"):
        keep = {n: mask[n].clone() for n in mask}
        l1 = model.get_submodule(name).weight.abs().flatten(1).sum(1)
        removed = (~keep[name]).nonzero().flatten()
        keep[name][removed[l1[removed].argmax()]] = True
        fewer = type(mask)(keep, shape, mask.groups)
        short.append(total - _macs(slim(model, fewer), shape) < target * total)
    assert any(short)


def test_cases_bind_their_own_folder_configs_and_split(script):
    try:
        script.use("resnet20")
        assert script.OUT == SCRIPT.parents[1] / "results" / "structured" / "cifar10_resnet20"
        assert script.POINTS == script.OUT / "points" and "data.val_size=5000" in script.base_overrides(None)
        cfg = script.config_for("group_lasso", {"xi": 1e-3}, 0, None)
        assert (cfg.model.name, cfg.data.name, cfg.data.val_size) == ("resnet", "cifar10", 5000)
        assert (cfg.penalty.name, cfg.penalty.types, cfg.penalty.biases, cfg.penalty.settings["xi"]) == \
            ("group_lasso", ["BatchNorm2d"], True, 1e-3)
        script.use("lenet5_caffe")
        assert script.OUT == SCRIPT.parents[1] / "results" / "structured"
        assert script.config_for("dense", {}, 1, None).data.val_size == 10000
    finally:
        script.use("lenet5_caffe")


def test_jobs_run_in_the_order_given(script, monkeypatch):
    ran = []
    for fn, label in (("tp_points", "tp"), ("l1_points", "l1"), ("target_points", "target")):
        monkeypatch.setattr(script, fn, lambda seed, data_dir, label=label: ran.append(label))
    monkeypatch.setattr(script, "report", lambda: None)
    script.run_all([0], None, None, ["target", "tp", "l1"])
    assert ran == ["target", "tp", "l1"]


def test_units_kept_table_reads_masks_and_torch_pruning_shapes(script):
    layers = [{"layers": ["conv1", "layer1.0.conv2"], "units": 16, "kept": 9}, {"layers": ["fc1"], "units": 50, "kept": 20}]
    groups = {("group_halo", 0.5): [{"seed": 0, "layers": layers}],
              ("tp_gnp", 0.5): [{"seed": 0, "layer_shapes": {"conv1": [7, 3, 3, 3], "fc1": [30, 16]}}],
              ("l1", 0.5): [{"seed": 1, "layers": layers}]}  # seed 1 only: not in the seed-0 table
    lines = script.units_kept(groups)
    rows = [ln for ln in lines if ln.startswith("| conv1") or ln.startswith("| fc1")]
    assert rows == ["| conv1 + 1 coupled | 16 | 9 | 7 |", "| fc1 | 50 | 20 | 30 |"]


def test_rebuild_gives_the_pruned_shapes_and_macs(script):
    from sparsehalo import models
    from sparsehalo.pruning import prune_channels

    torch.manual_seed(0)
    dense, shape = models.build("resnet", depth=8, num_classes=10).eval(), (3, 32, 32)
    mask = prune_channels(dense, shape, macs=0.5, apply=False)
    small, again = slim(dense, mask), script.rebuild(dense, shape, mask.layer_stats())
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in small.state_dict().items()}
    assert _macs(again, shape) == _macs(small, shape) == mask.macs_after


def test_a_case_without_a_method_skips_its_jobs(script, monkeypatch):
    ran = []
    monkeypatch.setattr(script, "target_points", lambda seed, data_dir: ran.append("target"))
    monkeypatch.setattr(script, "penalty_points", lambda *a: ran.append("penalty"))
    monkeypatch.setattr(script, "report", lambda: None)
    try:
        script.use("resnet20")  # no fixed-strength group HALO on CIFAR
        script.run_all([0], None, None, ["group_halo", "target"])
    finally:
        script.use("lenet5_caffe")
    assert ran == ["target"]
