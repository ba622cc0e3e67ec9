"""VGG-16 with batch normalization for 32x32 inputs (CIFAR), as used in the HALO paper.

Layout: configuration D of Simonyan & Zisserman (13 convolutions of 3x3, padding 1), each followed by
``BatchNorm2d`` and ReLU, a 2x2 max-pool after each block; five pools take 32x32 down to 1x1, so the
head is a single ``Linear(512, num_classes)`` on the flattened 512 features (no 4096-wide layers).

Parameter count for 10 classes, pinned by tests: **14,728,266**.  That number requires the convolutions
to keep their biases even though a BatchNorm follows each of them (the bias is then redundant, but the
CIFAR VGG everyone compares against has it):

    conv weights    14,710,464
    conv biases          4,224
    BatchNorm            8,448   (weight and bias, 2 x 4,224)
    Linear 512->10       5,130
    total           14,728,266   (without conv biases: 14,724,042)
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register

#: Configuration D: output channels of each 3x3 conv, ``"M"`` for a 2x2 max-pool.
CFG_D: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


@register("vgg16_bn")
class VGG16BN(nn.Module):
    """VGG-16-bn for CIFAR: ``features`` (conv/BN/ReLU stack with pools) then ``classifier``.

    Args:
        num_classes: outputs of the final linear layer.
        in_channels: channels of the input image.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for v in CFG_D:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                # bias=True on purpose: it is part of the published 14,728,266-parameter count.
                layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialization suits the ReLU stack; BN starts as the identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
