"""The small Vision Transformer: weight counts of the docstring, what the default selection takes, shapes."""

import torch

from sparsehalo.models import build
from sparsehalo.selection import select_parameters


def test_vit_tiny_counts_and_selection():
    torch.manual_seed(0)
    model = build("vit_tiny")
    chosen = select_parameters(model)
    per_layer = 3 * 96 * 96 + 96 * 96 + 2 * 96 * 192
    assert per_layer == 73_728
    assert sum(p.numel() for p in chosen.values()) == 1 * 96 * 7 * 7 + 4 * per_layer + 96 * 10 == 300_576
    assert [n for n in chosen if n.startswith("encoder.layers.0.")] == [
        "encoder.layers.0.self_attn.in_proj_weight", "encoder.layers.0.self_attn.out_proj.weight",
        "encoder.layers.0.linear1.weight", "encoder.layers.0.linear2.weight"]
    assert not any("norm" in n or n in ("cls", "pos") for n in chosen)
    assert sum(p.numel() for p in model.parameters()) == 306_826
    out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10) and out.is_contiguous()
    assert build("vit_tiny", num_classes=7, dim=32, depth=2, heads=2, mlp=64)(torch.randn(2, 1, 28, 28)).shape == (2, 7)
