"""A small Vision Transformer built from ``nn.TransformerEncoderLayer`` (Dosovitskiy et al., 2021).

``vit_tiny`` for 28x28 single-channel images (MNIST, Fashion-MNIST): 7x7 patches -> 16 tokens plus a
class token, width 96, 4 pre-norm encoder layers of 4 heads with a 192-wide GELU MLP, no dropout.
Weight matrices the default selection prunes (10 classes), pinned by a test::

    patch embedding (Conv2d 1->96, 7x7)        4,704
    per layer: in_proj 3*96*96 + out_proj 96*96 + MLP 2*96*192   73,728   (x 4)
    head 96->10                                   960
    total                                     300,576

Left out by the default selection: the class token and position embedding, norms and biases.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register


@register("vit_tiny")
class ViT(nn.Module):
    """Patch embedding, class token, learned position embedding, encoder layers, linear head."""

    def __init__(self, num_classes: int = 10, image_size: int = 28, patch: int = 7, in_channels: int = 1,
                 dim: int = 96, depth: int = 4, heads: int = 4, mlp: int = 192, dropout: float = 0.0):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of patch {patch}")
        tokens = (image_size // patch) ** 2
        self.patch = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, mlp, dropout, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # (N, tokens, dim)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.encoder(x)[:, 0])
