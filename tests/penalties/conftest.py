"""Fixtures shared by the penalty tests."""

import pytest
import torch
import torch.nn.functional as F


def train_steps(model, penalty, steps=20):
    """``steps`` of SGD with momentum and weight decay on a fixed float64 batch (4 inputs, 2 classes),
    with ``penalty`` added to the loss (None: no penalty)."""
    groups = [{"params": model.parameters()}] + (penalty.param_groups(lr=0.05) if penalty is not None else [])
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (64,), generator=g)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        if penalty is not None:
            loss = loss + penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.fixture
def train():
    """:func:`train_steps`: a few training steps of a toy model with a penalty."""
    return train_steps
