"""CIFAR models: parameter counts, shapes, depth validation, and the released HALO checkpoints."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from sparsehalo.errors import ConfigError
from sparsehalo.models import build, names
from sparsehalo.models.resnet import BasicBlock, Bottleneck
from support import shared_path

CHECKPOINTS = ["res50_c100_pruned_0.7.pth.tar", "res50_c100_pruned_0.95.pth.tar"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registered():
    assert {"vgg16_bn", "resnet"} <= set(names())


def test_vgg16_bn_count_layout_and_shape():
    model = build("vgg16_bn")
    assert n_params(model) == 14_728_266
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == 13 and len(linears) == 1
    assert linears[0].in_features == 512
    # The published count needs the conv biases: without them it would be 4,224 fewer.
    assert all(c.bias is not None for c in convs)
    assert sum(c.bias.numel() for c in convs) == 4_224
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert build("vgg16_bn", num_classes=100).classifier.out_features == 100


@pytest.mark.parametrize(
    "depth, classes, count",
    [
        (20, 10, 272_474),  # 269,722 (option-A ResNet-20) + 2,752 for the projection shortcuts
        (50, 100, 764_404),  # the released HALO checkpoints
        (164, 10, 1_704_154),  # bottleneck ResNet-164: the 1.7M of He et al. (2016)
    ],
)
def test_resnet_counts(depth, classes, count):
    assert n_params(build("resnet", depth=depth, num_classes=classes)) == count


def test_resnet_blocks_and_shapes():
    r20 = build("resnet", depth=20)
    assert all(isinstance(b, BasicBlock) for layer in (r20.layer1, r20.layer2, r20.layer3) for b in layer)
    assert [len(layer) for layer in (r20.layer1, r20.layer2, r20.layer3)] == [3, 3, 3]
    assert r20.layer1[0].downsample is None and r20.layer2[0].downsample is not None
    assert all(m.bias is None for m in r20.modules() if isinstance(m, nn.Conv2d))
    r56 = build("resnet", depth=56)  # from 54 on: bottleneck, 9n+2 -> n = 6
    assert all(isinstance(b, Bottleneck) for b in r56.layer1) and len(r56.layer1) == 6
    assert r56.layer1[0].downsample is not None  # 16 -> 64 channels changes the shape
    assert r56.fc.in_features == 256
    for model, classes in ((r20, 10), (r56, 10), (build("resnet", depth=50, num_classes=100), 100)):
        model.eval()
        with torch.no_grad():
            assert model(torch.randn(2, 3, 32, 32)).shape == (2, classes)


@pytest.mark.parametrize("depth", [0, 2, 21, 54, 57, 100, 20.0, "20", True])
def test_resnet_invalid_depth(depth):
    with pytest.raises(ConfigError) as exc:
        build("resnet", depth=depth)
    assert "\n" not in str(exc.value) and "depth" in str(exc.value)


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_released_checkpoints_load_strictly(name):
    obj = torch.load(shared_path("reference", "halo-released", name), map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v for k, v in obj["state_dict"].items()}
    model = build("resnet", depth=50, num_classes=100)
    assert len(state) == len(model.state_dict()) == 308
    assert list(state) == list(model.state_dict())  # same names in the same order
    model.load_state_dict(state, strict=True)
