"""Evaluation: mean cross-entropy and accuracy over batches, and parameter counts."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SparsehaloError


def count_parameters(model: nn.Module) -> int:
    """Number of parameter entries in ``model`` (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def evaluate(model: nn.Module, batches: Iterable, device: torch.device | str | None = None) -> dict:
    """Mean cross-entropy and accuracy of ``model`` over ``batches`` of ``(x, y)``.

    Runs under ``torch.no_grad`` in eval mode and restores every module's previous mode.  Sums stay on
    the device and are read once at the end, so there is no host sync per batch.

    Args:
        model: a classifier returning logits.
        batches: iterable of ``(inputs, integer targets)``.
        device: where to run; default the device of the model's first parameter (CPU if none).

    Returns:
        ``{"loss": mean cross-entropy, "accuracy": percent in [0, 100], "n": number of examples}``.

    Raises:
        SparsehaloError: if ``batches`` is empty.
    """
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    # float64 sums avoid drift over many batches; MPS has no float64.
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        loss_sum = torch.zeros((), dtype=acc_dtype, device=device)
        correct = torch.zeros((), dtype=acc_dtype, device=device)
        n = 0
        with torch.no_grad():
            for x, y in batches:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                logits = model(x)
                loss_sum += F.cross_entropy(logits, y, reduction="sum").to(acc_dtype)
                correct += (logits.argmax(dim=1) == y).sum().to(acc_dtype)
                n += y.shape[0]
        if n == 0:
            raise SparsehaloError("evaluate got no examples")
        loss_total, correct_total = torch.stack([loss_sum, correct]).tolist()
    finally:
        for m, training in modes:
            m.training = training
    return {"loss": loss_total / n, "accuracy": 100.0 * correct_total / n, "n": n}
