"""MACs and parameter counts against hand counts."""

import json

import pytest
import torch
from torch import nn

from sparsehalo.errors import SparsehaloError
from sparsehalo.measure import LayerCost, layer_costs, measure
from sparsehalo.models import build


def test_lenet300_dense_macs():
    costs = layer_costs(build("lenet300"), (1, 28, 28))
    assert [(c.name, c.kind, c.macs_dense) for c in costs] == [
        ("fc1", "Linear", 784 * 300),
        ("fc2", "Linear", 300 * 100),
        ("fc3", "Linear", 100 * 10),
    ]
    assert sum(c.macs_dense for c in costs) == 266_200
    # Random init has no exact zeros.
    assert all(c.macs_nonzero == c.macs_dense and c.params_nonzero == c.params for c in costs)


def test_lenet5_conv_and_fc_macs():
    costs = {c.name: c for c in layer_costs(build("lenet5"), (1, 28, 28))}
    assert costs["conv1"].macs_dense == 28 * 28 * 6 * 25 == 117_600
    assert costs["conv2"].macs_dense == 10 * 10 * 16 * 150 == 240_000
    assert costs["fc1"].macs_dense == 400 * 120
    assert costs["fc2"].macs_dense == 120 * 84
    assert costs["fc3"].macs_dense == 84 * 10
    assert costs["conv1"].kind == "Conv2d" and costs["conv1"].params == 150


def test_pruned_conv_counts_each_nonzero_once_per_position():
    conv = nn.Conv2d(3, 4, 3)  # 8x8 input -> 6x6 output, 108 weights
    k = 40
    with torch.no_grad():
        conv.weight.view(-1)[torch.randperm(108, generator=torch.Generator().manual_seed(0))[:k]] = 0
    (c,) = layer_costs(conv, (3, 8, 8))
    assert c == LayerCost("", "Conv2d", 6 * 6 * 108, 6 * 6 * (108 - k), 108, 108 - k)


def test_grouped_conv_and_stride_dense_count():
    conv = nn.Conv2d(4, 6, 3, groups=2, stride=2, padding=1)  # 9x9 -> 5x5; weight 6 x 2 x 3 x 3
    (c,) = layer_costs(conv, (4, 9, 9))
    assert c.macs_dense == 5 * 5 * 6 * (4 // 2) * 3 * 3
    assert c.params == 108


def test_linear_with_inner_rows():
    lin = nn.Linear(5, 7)
    (c,) = layer_costs(lin, (3, 4, 5))  # 12 rows of 5 features per example
    assert c.macs_dense == 12 * 5 * 7


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.fc(x))


def test_layer_called_twice_counts_twice_and_unused_costs_nothing():
    costs = {c.name: c for c in layer_costs(Shared(), (4,))}
    assert costs["fc"].macs_dense == 2 * 16
    assert costs["unused"].macs_dense == 0 and costs["unused"].params == 8


class Tiny(nn.Module):
    """Conv 1->2 3x3 on 4x4 (2x2 out) then Linear 8->3, with batch norm and dropout."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.drop(self.bn(self.conv(x))).flatten(1))


def test_measure_hand_made_case():
    model = Tiny()
    with torch.no_grad():
        model.conv.weight.view(-1)[:9] = 0  # 18 -> 9 non-zero
        model.conv.bias.zero_()  # 2 zero biases count in params_nonzero, not in prunable
        model.fc.weight.view(-1)[:20] = 0  # 24 -> 4 non-zero
    m = measure(model, (1, 4, 4))
    params_total = 18 + 2 + 2 + 2 + 24 + 3  # conv w/b, bn w/b, fc w/b
    params_nonzero = 9 + 0 + 2 + 0 + 4 + 3  # bn bias starts at 0
    assert m["params_total"] == params_total == 51
    assert m["params_nonzero"] == params_nonzero == 18
    assert (m["prunable_total"], m["prunable_nonzero"]) == (42, 13)
    assert m["flops_dense"] == 4 * 18 + 24 == 96
    assert m["flops_nonzero"] == 4 * 9 + 4 == 40
    assert m["compression"] == pytest.approx(51 / 18)
    assert m["speedup"] == pytest.approx(96 / 40)
    assert [layer["name"] for layer in m["layers"]] == ["conv", "fc"]
    assert json.loads(json.dumps(m)) == m


def test_measure_explicit_selection_and_zero_guard():
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    m = measure(model, (3,), prunable={"bias": model.bias})
    assert (m["prunable_total"], m["prunable_nonzero"]) == (2, 0)
    assert (m["flops_dense"], m["flops_nonzero"]) == (6, 0)
    assert m["compression"] is None and m["speedup"] is None
    json.dumps(m, allow_nan=False)


def test_mode_restored_and_hooks_removed():
    model = Tiny()
    model.train()
    model.bn.eval()  # a mixed state must come back as it was
    layer_costs(model, (1, 4, 4))
    assert model.training and model.conv.training and not model.bn.training
    assert not model.conv._forward_hooks and not model.fc._forward_hooks
    with pytest.raises(SparsehaloError, match="shape"):
        layer_costs(model, (1, 5, 5))  # fc expects 8 features, gets 18
    assert model.training and not model.bn.training
    assert not model.conv._forward_hooks and not model.fc._forward_hooks
