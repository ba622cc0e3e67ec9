"""Sparsity tables, parameter counts and evaluation against hand counts."""

import json
import math

import pytest
import torch
from torch import nn

from sparsehalo.errors import SparsehaloError
from sparsehalo.measure import (
    LayerSparsity,
    SparsityTable,
    count_parameters,
    evaluate,
    natural_sparsity,
    sparsity_table,
)
from sparsehalo.models import build


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(2, 2)
        with torch.no_grad():
            # a: 6 entries, 4 non-zero, 3 with |w| <= 1e-3 (0, 0.0005, 0)
            self.a.weight.copy_(torch.tensor([[0.0, 0.0005, 0.3], [0.0, -0.002, 0.8]]))
            # b: 4 entries, 3 non-zero, 1 with |w| <= 1e-3
            self.b.weight.copy_(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
            self.a.bias.zero_()  # all-zero biases: would change the counts if they were included
            self.b.bias.zero_()


def test_sparsity_table_matches_hand_counts():
    table = sparsity_table(Toy())
    assert [(r.name, r.shape, r.total, r.nonzero, r.near_zero) for r in table.rows] == [
        ("a.weight", (2, 3), 6, 4, 3),
        ("b.weight", (2, 2), 4, 3, 1),
    ]
    assert table.rows[0].sparsity == pytest.approx(2 / 6)
    assert table.rows[0].natural_sparsity == pytest.approx(3 / 6)
    assert (table.total, table.nonzero) == (10, 7)
    assert table.sparsity == pytest.approx(0.3)
    assert table.natural_sparsity == pytest.approx(0.4)
    assert table.denominator == "10 prunable weights (Linear weights, biases excluded)"


def test_sparsity_table_eps_and_explicit_params():
    model = Toy()
    table = sparsity_table(model, params={"a.weight": model.a.weight, "a.bias": model.a.bias}, eps=1e-2)
    assert (table.total, table.nonzero) == (8, 4)
    assert [r.near_zero for r in table.rows] == [4, 2]  # 0, 0.0005, 0, -0.002 | both biases
    assert table.denominator == "8 selected entries (Linear weights and biases)"
    with pytest.raises(SparsehaloError):
        sparsity_table(model, params={})


def test_sparsity_table_string_and_dict():
    text = str(sparsity_table(Toy()))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "shape", "total", "non-zero", "sparsity", "|w|<=0.001"]
    assert any(line.split() == ["a.weight", "2x3", "6", "4", "33.33%", "50.00%"] for line in lines)
    assert any(line.split() == ["all", "10", "7", "30.00%", "40.00%"] for line in lines)
    assert "sparsity = zero entries / 10 prunable weights (Linear weights, biases excluded)" in text

    d = sparsity_table(Toy()).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert (d["total"], d["nonzero"], d["eps"]) == (10, 7, 1e-3)
    assert d["layers"][1] == {
        "name": "b.weight", "shape": [2, 2], "total": 4, "nonzero": 3, "near_zero": 1,
        "sparsity": 0.25, "natural_sparsity": 0.25,
    }


def test_lenet300_table_states_the_denominator():
    text = str(sparsity_table(build("lenet300")))
    assert "sparsity = zero entries / 266,200 prunable weights (Linear weights, biases excluded)" in text
    assert "235,200" in text  # fc1 784 x 300


def test_lenet5_denominator_names_both_module_types():
    table = sparsity_table(build("lenet5"))
    assert table.denominator.endswith("(Conv2d and Linear weights, biases excluded)")
    assert table.total == 6 * 25 + 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10


def test_denominator_names_public_layer_classes_for_subclasses():
    """Attention's out_proj is a private Linear subclass, a user's subclass is named by its nn base; a
    layer of the user's own (no nn base) keeps its own name."""

    class MyLinear(nn.Linear):
        pass

    class Own(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(2, 2))

    model = nn.ModuleDict({"att": nn.MultiheadAttention(4, 2, bias=False), "fc": MyLinear(4, 2), "own": Own()})
    names = ["att.in_proj_weight", "att.out_proj.weight", "fc.weight", "own.weight"]
    table = sparsity_table(model, {n: model.get_parameter(n) for n in names})
    assert table.denominator == (
        f"{3 * 16 + 16 + 8 + 4} selected entries (MultiheadAttention, Linear and Own weights, biases excluded)"
    )


def test_percentages_never_round_to_a_false_extreme():
    almost = SparsityTable([LayerSparsity("w", 100_000, 1, 0, (100_000,))], eps=1e-3, denominator="x")
    assert ">99.99%" in str(almost) and "100.00%" not in str(almost)
    tiny = SparsityTable([LayerSparsity("w", 100_000, 99_999, 0, (100_000,))], eps=1e-3, denominator="x")
    assert "<0.01%" in str(tiny)


def test_natural_sparsity_and_count_parameters():
    assert natural_sparsity([torch.tensor([0.0, 1e-3, -5e-4, 0.1]), torch.tensor([2.0])]) == pytest.approx(3 / 5)
    assert natural_sparsity({"w": torch.tensor([0.5, 0.0])}, eps=0.5) == 1.0
    with pytest.raises(SparsehaloError):
        natural_sparsity([])
    assert count_parameters(build("lenet300")) == 266_610
    assert count_parameters(Toy()) == 6 + 2 + 4 + 2


def _ce(logits, target):
    return math.log(sum(math.exp(v) for v in logits)) - logits[target]


def test_evaluate_on_a_known_model():
    # Identity classifier behind a dropout that would scramble results if eval mode were not used.
    model = nn.Sequential(nn.Dropout(0.9), nn.Linear(2, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2))
        model[1].bias.zero_()
    x = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 4.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1, 1])  # predictions 0, 1, 0, 0: two right
    batches = [(x[:3], y[:3]), (x[3:], y[3:])]

    model.train()
    out = evaluate(model, batches)
    assert out["n"] == 4
    assert out["accuracy"] == 50.0
    expected = sum(_ce(xi.tolist(), int(yi)) for xi, yi in zip(x, y)) / 4
    assert out["loss"] == pytest.approx(expected, rel=1e-6)
    assert model.training and model[0].training  # mode restored

    model.eval()
    evaluate(model, iter(batches), device="cpu")
    assert not model.training


def test_evaluate_restores_mixed_modes_and_rejects_empty_input():
    model = nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 2))
    model.train()
    model[0].eval()
    evaluate(model, [(torch.zeros(1, 2), torch.tensor([0]))])
    assert model.training and not model[0].training and model[1].training
    with pytest.raises(SparsehaloError, match="no examples"):
        evaluate(model, [])
    assert model.training  # restored even after the error
