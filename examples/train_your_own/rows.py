"""Your own model and data for ``sparsehalo train``, named by import path in ``rows.toml``.

    cd examples/train_your_own && sparsehalo train rows.toml      # 3 epochs, a few minutes on 2 CPU cores

``model.name = "rows:row_transformer"`` and ``data.name = "rows:mnist_rows"`` are found in this
directory (the current one).  The data factory returns plain ``torch.utils.data`` datasets; sparsehalo
stacks them in memory once (they fit) and batches them as they are.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from sparsehalo.data import load_dataset


class RowTransformer(nn.Module):
    """Each 28x28 image as 28 row tokens: a linear embedding, a TransformerEncoder, mean pooling, a head."""

    def __init__(self, dim: int, depth: int, heads: int, num_classes: int):
        super().__init__()
        self.inp = nn.Linear(28, dim)
        self.pos = nn.Parameter(torch.zeros(1, 28, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.inp(x) + self.pos)
        return self.head(self.norm(h.mean(dim=1)))


def row_transformer(dim: int = 64, depth: int = 2, heads: int = 4, num_classes: int = 10) -> nn.Module:
    """The model factory (``num_classes`` comes from the data)."""
    return RowTransformer(dim, depth, heads, num_classes)


def mnist_rows(train_size: int = 0, data_dir: str | None = None) -> dict:
    """MNIST (the copy bundled with sparsehalo) as float row sequences [N, 28, 28] in [0, 1]."""
    splits = load_dataset("mnist", data_dir)

    def rows(d, limit=0):
        x, y = d.images[:, 0].float() / 255.0, d.labels
        return TensorDataset(x[:limit], y[:limit]) if limit else TensorDataset(x, y)

    return {"train": rows(splits.train, train_size), "test": rows(splits.test), "num_classes": 10}
