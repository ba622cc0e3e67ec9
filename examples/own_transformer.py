#!/usr/bin/env python3
"""HALO in your own training loop, on your own nn.TransformerEncoder: the three lines, then prune and measure.

Each MNIST image (bundled with the package) is read as a sequence of 28 rows of 28 pixels, classified by a
2-layer ``nn.TransformerEncoder``; HALO penalizes every weight matrix (attention in_proj and out_proj, the
MLPs, the input projection and the head), then one global magnitude threshold prunes it, no fine-tuning:

    .venv/bin/python examples/own_transformer.py                 # 2 epochs, about 2 minutes on 2 CPU cores
    .venv/bin/python examples/own_transformer.py --epochs 1 --train-size 5000   # a quick look
    .venv/bin/python examples/own_transformer.py --dataset fashion-mnist --data-dir DIR
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import sparsehalo
from sparsehalo.data import load_dataset


class RowTransformer(nn.Module):
    """The user's model: rows as tokens, a learned position embedding, a TransformerEncoder, mean pooling."""

    def __init__(self, dim: int = 64, depth: int = 2, heads: int = 4, classes: int = 10):
        super().__init__()
        self.inp = nn.Linear(28, dim)
        self.pos = nn.Parameter(torch.zeros(1, 28, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.inp(x.flatten(1, 2).view(-1, 28, 28)) + self.pos
        return self.head(self.encoder(tokens).mean(1))


def batches(split, batch: int, shuffle: bool, gen: torch.Generator):
    order = torch.randperm(len(split.labels), generator=gen) if shuffle else torch.arange(len(split.labels))
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        yield split.images[idx].float().div_(255).sub_(0.1307).div_(0.3081), split.labels[idx]


@torch.no_grad()
def accuracy(model: nn.Module, split) -> float:
    model.eval()
    hits = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches(split, 1000, False, torch.Generator()))
    model.train()
    return 100.0 * hits / len(split.labels)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=60000)
    ap.add_argument("--xi", type=float, default=2e-4)
    ap.add_argument("--psi", type=float, default=2e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    ap.add_argument("--data-dir", default=None, help="where fashion-mnist is (MNIST is bundled)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_dataset(args.dataset, args.data_dir)
    train = data.train.subset(torch.arange(args.train_size)) if args.train_size < len(data.train.labels) else data.train
    model = RowTransformer()

    # The three lines:
    penalty = sparsehalo.HALO.for_model(model, xi=args.xi, psi=args.psi)
    opt = torch.optim.SGD([{"params": model.parameters()}, *penalty.param_groups(lr=0.05)], lr=0.05, momentum=0.9)
    print(penalty.summary(model))  # what is penalized, and what is left out

    steps = args.epochs * -(-len(train.labels) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        for x, y in batches(train, 128, True, gen):
            loss = F.cross_entropy(model(x), y) + penalty()  # ... the third line
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}: test accuracy {accuracy(model, data.test):.2f}%")

    dense = {k: v.clone() for k, v in model.state_dict().items()}
    for level in (0.9, 0.95, 0.98):
        model.load_state_dict(dense)
        sparsehalo.prune(model, level)  # every weight matrix, one global threshold, no fine-tuning
        table = sparsehalo.sparsity_table(model)
        print(f"pruned to {level:.0%} of {table.denominator}: test accuracy {accuracy(model, data.test):.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
