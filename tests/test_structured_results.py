"""scripts/structured_results.py: the L1-norm filter ranking removes the lowest-L1 units of every layer, to the MACs target."""

import importlib.util
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
    spec.loader.exec_module(mod)
    return mod


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
