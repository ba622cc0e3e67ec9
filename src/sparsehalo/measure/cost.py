"""Sizes and multiply-accumulates (MACs) of a network, dense and with its zero weights skipped.

Only ``Conv2d`` and ``Linear`` layers are counted: they hold nearly all the arithmetic of the networks
this package prunes, and their cost is exact.  Activations, pooling, normalization and biases are not
MACs and are left out; the "flops" fields are MACs per example, the usual convention in the pruning
literature.  A non-zero weight of a convolution is used once per output position, so skipping zeros
saves exactly ``positions * zeros`` MACs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import torch
from torch import nn

from ..errors import SparsehaloError
from ..selection import prunable_parameters
from .sparsity import count_nonzero

#: What the ``flops_*`` fields of :func:`measure` count.
FLOPS_UNIT = "multiply-accumulates per example (Conv2d and Linear weights; biases excluded)"


@dataclass
class LayerCost:
    """Cost of one layer per example.

    Attributes:
        name: module name in ``model.named_modules()``.
        kind: ``"Conv2d"`` or ``"Linear"``.
        macs_dense: MACs with every weight used.
        macs_nonzero: MACs with the exact-zero weights skipped.
        params: entries of the weight (bias excluded).
        params_nonzero: non-zero entries of the weight.
    """

    name: str
    kind: str
    macs_dense: int
    macs_nonzero: int
    params: int
    params_nonzero: int


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.Conv2d):
        return "Conv2d"
    if isinstance(module, nn.Linear):
        return "Linear"
    return None


def _uses(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """How many times each weight entry is used in this call (output positions or input rows)."""
    if isinstance(module, nn.Conv2d):
        # numel / channels counts the positions of the whole (size-1) batch, so a model that folds
        # extra dimensions into the batch is still counted right.
        return output.numel() // module.out_channels
    return inputs[0].numel() // module.in_features


def layer_costs(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerCost]:
    """MACs per example of every ``Conv2d`` and ``Linear`` layer of ``model``.

    Runs one all-zero input of shape ``(1, *input_shape)`` through the model in eval mode under
    ``torch.no_grad`` on the device and dtype of its first parameter, with forward hooks recording
    each layer's input and output sizes.  Each module's previous train/eval mode is restored.

    Conv2d: dense = out_h * out_w * out_channels * in_channels / groups * kh * kw, non-zero =
    out_h * out_w * count_nonzero(weight).  Linear: dense = rows * in * out, non-zero =
    rows * count_nonzero(weight), where rows is the product of the input's inner dimensions (1 for a
    flat input).  A layer called twice counts twice; a layer never called costs 0.

    Args:
        model: the network.
        input_shape: shape of one example, without the batch dimension, e.g. ``(1, 28, 28)``.

    Returns:
        One :class:`LayerCost` per layer, in ``named_modules`` order.

    Raises:
        SparsehaloError: if the forward pass fails for this input shape.
    """
    layers = [(name, m, kind) for name, m in model.named_modules() if (kind := _kind(m)) is not None]
    uses: dict[int, int] = {id(m): 0 for _, m, _ in layers}

    def hook(module, inputs, output):
        uses[id(module)] += _uses(module, inputs, output)

    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    modes = [(m, m.training) for m in model.modules()]
    handles = []
    try:
        handles = [m.register_forward_hook(hook) for _, m, _ in layers]
        # Eval mode: batch norm cannot run in training mode on a batch of one, and dropout is noise.
        model.eval()
        with torch.no_grad():
            try:
                model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
            except (RuntimeError, ValueError, TypeError) as exc:
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise SparsehaloError(
                    f"cannot run the model on an input of shape {tuple(input_shape)}: {first_line[:200]}"
                ) from None
        costs = []
        for name, m, kind in layers:
            w = m.weight.detach()
            nonzero = count_nonzero([w])[1]
            n = uses[id(m)]
            costs.append(LayerCost(name, kind, n * w.numel(), n * nonzero, w.numel(), nonzero))
        return costs
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training


def _ratio(num: float, den: float) -> float | None:
    # None rather than inf: JSON has no infinity and a fully pruned model has no meaningful ratio.
    return num / den if den else None


def measure(
    model: nn.Module, input_shape: tuple[int, ...], prunable: Mapping[str, torch.Tensor] | None = None
) -> dict:
    """Parameter counts and MACs of ``model``, dense and with zero weights skipped.

    Args:
        model: the network (pruned or not).
        input_shape: shape of one example, without the batch dimension.
        prunable: ``{name: tensor}`` counted in ``prunable_*``; default
            :func:`~sparsehalo.pruning.prunable_parameters` (Conv2d and Linear weights).

    Returns:
        A JSON-friendly dict: ``params_total`` / ``params_nonzero`` (every parameter, biases
        included), ``prunable_total`` / ``prunable_nonzero``, ``flops_dense`` / ``flops_nonzero``
        (MACs per example, see :data:`FLOPS_UNIT`), ``flops_unit``, ``compression`` (params_total /
        params_nonzero), ``speedup`` (flops_dense / flops_nonzero), and ``layers`` (one dict per
        :class:`LayerCost`).  A ratio whose denominator is 0 is ``None``.
    """
    if prunable is None:
        prunable = prunable_parameters(model)
    costs = layer_costs(model, input_shape)
    with torch.no_grad():
        params = list(model.parameters())  # shared parameters appear once
        params_total, params_nonzero = count_nonzero(params)
        prunable_total, prunable_nonzero = count_nonzero(prunable)
    flops_dense = sum(c.macs_dense for c in costs)
    flops_nonzero = sum(c.macs_nonzero for c in costs)
    return {
        "params_total": params_total,
        "params_nonzero": params_nonzero,
        "prunable_total": prunable_total,
        "prunable_nonzero": prunable_nonzero,
        "flops_dense": flops_dense,
        "flops_nonzero": flops_nonzero,
        "flops_unit": FLOPS_UNIT,
        "compression": _ratio(params_total, params_nonzero),
        "speedup": _ratio(flops_dense, flops_nonzero),
        "layers": [asdict(c) for c in costs],
    }
