"""A tiny, deterministic, learnable image dataset for fast tests.

Each class has a smooth random template (a 7x7 pattern upsampled to 28x28); samples are their class's
template plus Gaussian pixel noise, quantized to uint8.  It looks like MNIST to the code (1x28x28
uint8, 10 classes) but is generated in milliseconds and needs no files.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ..errors import DataError
from .arrays import ArrayDataset, Splits

NUM_TRAIN = 512
NUM_TEST = 256
NUM_CLASSES = 10
SIZE = 28


def make_synthetic(
    num_train: int = NUM_TRAIN,
    num_test: int = NUM_TEST,
    *,
    num_classes: int = NUM_CLASSES,
    noise: float = 0.3,
    seed: int = 0,
) -> Splits:
    """Generate the synthetic dataset; the same arguments always give the same tensors.

    Args:
        num_train: training samples (classes balanced up to one sample).
        num_test: test samples.
        num_classes: number of classes (and templates).
        noise: std of the pixel noise, in [0, 1] intensity units.
        seed: picks the templates, the noise and the sample order.

    Returns:
        Splits named ``"synthetic"`` with images uint8 ``[N, 1, 28, 28]`` and no validation split.
    """
    if num_train < 1 or num_test < 1 or num_classes < 2:
        raise DataError("synthetic data needs num_train, num_test >= 1 and num_classes >= 2")
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    coarse = torch.rand(num_classes, 1, 7, 7, generator=g)
    templates = F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)

    def draw(n: int) -> ArrayDataset:
        labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
        x = templates[labels] + noise * torch.randn(n, 1, SIZE, SIZE, generator=g)
        images = x.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
        return ArrayDataset(images, labels)

    train = draw(num_train)
    test = draw(num_test)
    return Splits(train=train, test=test, val=None, num_classes=num_classes, name="synthetic")


def load_synthetic(data_dir: str | os.PathLike | None = None) -> Splits:
    """Registry loader: the default-size synthetic dataset (seed 0); ``data_dir`` is ignored."""
    return make_synthetic()
