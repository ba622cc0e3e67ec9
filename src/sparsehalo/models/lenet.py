"""LeNet family for 28x28 single-channel inputs (MNIST, Fashion-MNIST).

Parameter counts (10 classes), pinned by tests:
    lenet300      784-300-100-10                                  266,610
    lenet5        conv 6@5x5 pad 2, conv 16@5x5, fc 400-120-84-10   61,706
    lenet5_caffe  conv 20@5x5, conv 50@5x5, fc 800-500-10          431,080
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .registry import register


@register("lenet300")
class LeNet300(nn.Module):
    """LeNet-300-100: a 784-300-100-10 perceptron with ReLU."""

    def __init__(self, num_classes: int = 10, in_features: int = 784, hidden: tuple[int, int] = (300, 100)):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


@register("lenet5")
class LeNet5(nn.Module):
    """Classic LeNet-5: conv 6@5x5 (pad 2), max-pool, conv 16@5x5, max-pool, fc 400-120-84-10."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


@register("lenet5_caffe")
class LeNet5Caffe(nn.Module):
    """LeNet-5 as in Caffe's example: conv 20@5x5, max-pool, conv 50@5x5, max-pool, fc 800-500-10."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))
