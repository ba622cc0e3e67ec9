"""Inspect checkpoints produced by other code, e.g. the ones the HALO authors released.

Files are read with :func:`sparsehalo.io.load_torch` (``torch.load(weights_only=True)``), so a file
that would run code when unpickled is refused instead of executed.  Sparsity is reported over Conv2d
weights, the denominator the paper's "prune ratio" uses on CIFAR, and, separately, over all parameters
(so the share of the whole network left is visible too).

Typical use::

    info = describe_external("res50_c100_pruned_0.7.pth.tar", "resnet", 100, depth=50)
    print(info["table"])                     # per-layer conv sparsity
    metrics = sparsehalo.evaluate(info["model"], test_batches)   # inputs normalized as in training
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..io import load_torch
from ..models import build
from .accuracy import count_parameters
from .sparsity import count_nonzero, sparsity_table

#: Keys under which other code commonly nests the state dict, tried in this order.
_NESTED_KEYS = ("state_dict", "model")
_PREFIX = "module."  # added by nn.DataParallel / DistributedDataParallel
_SHOW = 5  # key names quoted in a mismatch message before "(+N more)"


def _number(value: Any) -> float | int | None:
    """A plain Python number from a stored metric (float, int, or one-element tensor), else None."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    return None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_external(path: str | Path) -> dict:
    """Read a checkpoint written by other code, without unpickling code objects.

    Accepts a raw state dict, or a dict holding one under ``"state_dict"`` or ``"model"``.  A leading
    ``module.`` (from ``DataParallel``) is stripped from every key that has it.

    Args:
        path: the checkpoint file.

    Returns:
        ``{"state_dict": {name: tensor}, "acc": ..., "epoch": ..., "best_acc": ...}`` where the last three
        are the file's values as plain numbers, or ``None`` when absent (always ``None`` for a raw state
        dict).

    Raises:
        CheckpointError: if the file is missing, unsafe or corrupt, or holds no state dict.
    """
    obj = load_torch(path)
    meta: dict = {}
    if _is_state_dict(obj):
        state = obj
    else:
        key = next((k for k in _NESTED_KEYS if k in obj), None)
        if key is None or not _is_state_dict(obj[key]):
            found = ", ".join(map(str, list(obj)[:8])) or "nothing"
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds no state dict (expected tensors, or a dict with "
                f"'state_dict' or 'model'; found keys {found})"
            )
        state, meta = obj[key], obj
    state = {(k[len(_PREFIX):] if k.startswith(_PREFIX) else k): v for k, v in state.items()}
    return {
        "state_dict": state,
        "acc": _number(meta.get("acc")),
        "epoch": _number(meta.get("epoch")),
        "best_acc": _number(meta.get("best_acc")),
    }


def _some(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``model.load_state_dict(state, strict=True)`` with a one-line error naming what differs.

    Raises:
        CheckpointError: listing the first few missing keys, unexpected keys and shape mismatches.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {'x'.join(map(str, state[k].shape))} vs {'x'.join(map(str, expected[k].shape))}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_some(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch (file vs model) {_some(shapes)}")
    if problems:
        raise CheckpointError(f"{source} does not match the model: {'; '.join(problems)}")
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:  # e.g. a dtype that cannot be copied
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{source} does not load into the model: {first[:200]}") from None


def describe_external(path: str | Path, model_name: str, num_classes: int, **model_kwargs) -> dict:
    """Load an external checkpoint into a registered model and measure its sparsity.

    Args:
        path: the checkpoint file.
        model_name: a name known to :func:`sparsehalo.models.build`, e.g. ``"resnet"``.
        num_classes: outputs of the model.
        **model_kwargs: further constructor arguments, e.g. ``depth=50``.

    Returns:
        A dict.  ``"model"`` (the loaded ``nn.Module``, CPU, mode unchanged) and ``"table"`` (the
        :class:`~sparsehalo.metrics.SparsityTable` over Conv2d weights, printable) are objects; every other
        entry is plain JSON data:

        * ``path``, ``model_name``, ``model_kwargs`` (including ``num_classes``);
        * ``acc``, ``epoch``, ``best_acc``: as stored in the file (``None`` if absent);
        * ``conv_sparsity``: exact zeros / Conv2d weights (the paper's prune ratio on CIFAR);
        * ``conv``: the table's :meth:`~sparsehalo.metrics.SparsityTable.to_dict` (per layer);
        * ``num_parameters``, ``num_nonzero_parameters``, ``all_sparsity``: over every parameter
          (weights, biases and BatchNorm affine terms; buffers such as running statistics excluded);
        * ``num_conv_weights``, ``num_conv_nonzero``.

    Raises:
        ConfigError: for an unknown model or constructor argument.
        CheckpointError: if the file cannot be read safely or does not match the model.
    """
    loaded = load_external(path)
    kwargs = {"num_classes": num_classes, **model_kwargs}
    model = build(model_name, **kwargs)
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    load_into(model, loaded["state_dict"], source=f"checkpoint {str(path)!r} for {model_name}({args})")

    conv_weights = {
        f"{name}.weight" if name else "weight": m.weight
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    }
    if not conv_weights:
        raise CheckpointError(f"model {model_name!r} has no Conv2d layers to measure")
    table = sparsity_table(model, conv_weights, label="Conv2d weights")
    with torch.no_grad():
        nonzero_all = count_nonzero(model.parameters())[1]
    total_all = count_parameters(model)
    return {
        "model": model,
        "table": table,
        "path": str(path),
        "model_name": model_name,
        "model_kwargs": kwargs,
        "acc": loaded["acc"],
        "epoch": loaded["epoch"],
        "best_acc": loaded["best_acc"],
        "conv_sparsity": table.sparsity,
        "conv": table.to_dict(),
        "num_conv_weights": table.total,
        "num_conv_nonzero": table.nonzero,
        "num_parameters": total_all,
        "num_nonzero_parameters": nonzero_all,
        "all_sparsity": 1 - nonzero_all / total_all if total_all else 0.0,
    }
