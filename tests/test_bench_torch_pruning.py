"""The structured extra (torch-pruning), exercised in CI: benchmarks/torch_pruning_gnp.py's pruner on LeNet-5-Caffe."""

import importlib.util

import torch
import torch.nn.functional as F

from sparsehalo import models

from support import ROOT, require_extra

tp = require_extra("torch_pruning", "structured")


def load_benchmark():
    spec = importlib.util.spec_from_file_location("torch_pruning_gnp", ROOT / "benchmarks" / "torch_pruning_gnp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_group_norm_pruner_learns_then_removes_half_the_macs_as_sparsehalo_counts_them(monkeypatch):
    bench = load_benchmark()
    monkeypatch.setattr(bench, "ITERATIVE_STEPS", 40)  # coarse steps: the test's budget, not the benchmark's
    torch.manual_seed(0)
    model = models.build("lenet5_caffe", {"num_classes": 10})
    shape, example = (1, 28, 28), torch.zeros(2, 1, 28, 28)
    pruner = bench.make_pruner(model, example, 10, reg=5e-4)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pruner.update_regularizer()
    F.cross_entropy(model(x), y).backward()
    pruner.regularize(model)  # its sparsity-learning step adds to the gradients
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    assert any(not torch.equal(grads[n], p.grad) for n, p in model.named_parameters())
    dense = bench.sparsehalo_macs(model, shape)
    steps = 0
    while bench.sparsehalo_macs(model, shape) > 0.5 * dense and steps < 40:
        pruner.step()
        steps += 1
    after = bench.sparsehalo_macs(model, shape)
    assert 0.35 * dense <= after <= 0.5 * dense  # reached, without removing far more
    assert model.fc2.out_features == 10 and model(example).shape == (2, 10)  # the classes are never pruned
    assert model.conv1.out_channels < before["conv1.weight"].shape[0] or model.fc1.out_features < 500
