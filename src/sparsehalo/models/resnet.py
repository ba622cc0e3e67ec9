"""The CIFAR ResNet (He et al. 2016, section 4.2) in its widely used PyTorch layout.

A 3x3 stem (``conv1``/``bn1``, 16 channels), three stages ``layer1..3`` of widths 16/32/64 (the
second and third start with stride 2), an 8x8 average pool and ``fc``.  Two block types:

* depth < 54: basic blocks (two 3x3 convs), depth = 6n + 2 (8, 14, 20, 26, 32, 44, 50);
* depth >= 54: bottleneck blocks (1x1, 3x3, 1x1, expansion 4), depth = 9n + 2 (56, 110, 164, ...).

Where a block changes the shape of its input, the shortcut is ``downsample`` =
``Sequential(1x1 conv with the block's stride and no bias, BatchNorm2d)`` (option B of the paper).
Convolutions have no bias because a BatchNorm follows each one.  The parameter and buffer names are
those of the checkpoints the HALO authors released (``/work/shared/reference/halo-released``), so those
files load with ``load_state_dict(strict=True)``.

Parameter counts, pinned by tests:
    resnet(depth=20, num_classes=10)     272,474  (269,722 of the option-A ResNet-20 plus 2,752 for
                                                   the two 1x1 projection shortcuts and their BN)
    resnet(depth=50, num_classes=100)    764,404  (basic blocks, n = 8; the released checkpoints)
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .registry import register

#: Depth from which bottleneck blocks are used, as in the common CIFAR layout.
BOTTLENECK_FROM_DEPTH = 54


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv/BN pairs with a residual connection; ``expansion`` = 1."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand to ``4 * planes``, each with BN."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _blocks_per_stage(depth: int) -> tuple[type[nn.Module], int]:
    """Block type and blocks per stage for ``depth``.

    Raises:
        ConfigError: if ``depth`` is not 6n+2 (n >= 1) below 54 or 9n+2 from 54 on.
    """
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ConfigError(f"resnet depth must be an integer, got {depth!r}")
    if depth < BOTTLENECK_FROM_DEPTH:
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(
                f"resnet depth {depth} is invalid: below {BOTTLENECK_FROM_DEPTH} it must be 6n+2 "
                "with n >= 1 (8, 14, 20, 32, 44, 50, ...)"
            )
        return BasicBlock, (depth - 2) // 6
    if (depth - 2) % 9:
        raise ConfigError(
            f"resnet depth {depth} is invalid: from {BOTTLENECK_FROM_DEPTH} on (bottleneck blocks) it must "
            "be 9n+2 (56, 110, 164, ...)"
        )
    return Bottleneck, (depth - 2) // 9


@register("resnet")
class CifarResNet(nn.Module):
    """CIFAR ResNet of the given depth.

    Args:
        depth: total number of weighted layers; see the module docstring for the valid values.
        num_classes: outputs of ``fc``.
        in_channels: channels of the input image.

    Raises:
        ConfigError: for an invalid ``depth``.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        block, n = _blocks_per_stage(depth)
        self.depth = depth
        self.inplanes = 16
        self.conv1 = _conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 16, n, stride=1)
        self.layer2 = self._make_layer(block, 32, n, stride=2)
        self.layer3 = self._make_layer(block, 64, n, stride=2)
        # Fixed 8x8 pool as in the original: the last stage is 8x8 for 32x32 inputs.
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64 * block.expansion, num_classes)
        self._init_weights()

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # He initialization (fan-out) for the ReLU convs; BN starts as the identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))
