"""ONNX export of a (pruned) network: the dense graph, its weights (pruned zeros included) as initializers.

:func:`export_onnx` uses ``torch.onnx.export(..., dynamo=True)``: the ``torch.export``-based exporter,
torch's default since 2.9 (the TorchScript one is deprecated and warns), which needs ``onnxscript``.
The batch dimension is dynamic (``torch.export.Dim``); the example batch has 2 rows because
``torch.export`` specializes sizes 0 and 1.  The input is the float tensor the model's ``forward``
takes, ``[batch, *input_shape]`` (for our datasets: scaled to [0, 1] and normalized as in training),
named ``input``; the output is named ``logits``.  The file is one protobuf (no external data), written
atomically with its ``.sha256`` sidecar; the same model gives the same bytes, so exporting twice is
idempotent.  Needs the ``onnx`` extra (``pip install 'sparsehalo[onnx]'``).
"""

from __future__ import annotations

import contextlib
import importlib
import io as _stdio
import logging
import re
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import SparsehaloError
from ..selection import aliases, prunable_parameters, unwrap
from .writing import dense_fp32_bytes, report, write_unless_other

#: the packages of the ``onnx`` extra that writing a file needs (onnxruntime only runs one)
NEEDED = ("onnx", "onnxscript")
INPUT, OUTPUT, BATCH = "input", "logits", "batch"
EXAMPLE_BATCH = 2
#: protobuf's limit on one message: larger models would need ONNX external data
MAX_BYTES = 2**31 - 1


def require_onnx() -> None:
    """Raise one clear line when the ``onnx`` extra is not installed."""
    missing = []
    for name in NEEDED:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise SparsehaloError(f"--format onnx needs the onnx extra ({', '.join(missing)} not installed): "
                              "pip install 'sparsehalo[onnx]'")


def check_input_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` (one example, no batch dimension) as a tuple of positive ints."""
    try:
        out = tuple(int(s) for s in shape)
        ok = bool(out) and all(s > 0 and s == v for s, v in zip(out, shape))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise SparsehaloError(f"input shape must be positive integers without the batch dimension, e.g. 1,28,28; got {shape!r}")
    return out


@contextlib.contextmanager
def _quiet():
    """Keep the exporter's progress prints, log lines (torch.export logs its failures' tracebacks) and
    warnings off the command's output; a failure is reported by :func:`_failure` instead."""
    disabled = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(_stdio.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)


def _failure(exc: BaseException) -> str:
    """The first line of the innermost cause (the exporter wraps the real error in steps), escapes removed."""
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    for e in reversed(seen):
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
        if text:
            return f"{type(e).__name__}: {text.splitlines()[0][:300]}"
    return type(seen[0]).__name__


def _serialized(model: nn.Module, example: torch.Tensor, opset: int | None) -> tuple[bytes, int]:
    """(the ONNX file's bytes, its default-domain opset)."""
    try:
        with _quiet():
            program = torch.onnx.export(
                model, (example,), dynamo=True, verbose=False, input_names=[INPUT], output_names=[OUTPUT],
                dynamic_shapes=({0: torch.export.Dim(BATCH, min=1)},), external_data=False, opset_version=opset,
            )
            proto = program.model_proto
            data = proto.SerializeToString()
    except SparsehaloError:
        raise
    except Exception as exc:  # the exporter's errors are many kinds; one line names the real one
        shape = ", ".join(map(str, example.shape[1:]))
        raise SparsehaloError(f"ONNX export of {type(model).__name__} with input [{BATCH}, {shape}] failed: {_failure(exc)}") from None
    return data, next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _initializer_zeros(data: bytes, tensors: Sequence[tuple[Sequence[str], torch.Tensor]]) -> tuple[int, int]:
    """(zeros in the file's copies of ``tensors``, how many have a copy there).

    Each entry is a tensor's names (a tied tensor has several) and its value.  Its copy is the initializer
    of one of its names, else one holding exactly its values or, for a matrix, their transpose (the
    exporter's optimizer stores some weights transposed, under new names).
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load_from_string(data).graph.initializer}
    zeros = found = 0
    for names, value in tensors:
        v = value.detach().cpu().float().numpy()
        candidates = [inits[n] for n in names if n in inits] + [
            a for a in inits.values() if a.shape == v.shape or (v.ndim == 2 and a.shape == v.shape[::-1])]
        hit = next((a for a in candidates if np.array_equal(a, v if a.shape == v.shape else v.T)), None)
        if hit is not None:
            zeros, found = zeros + int((hit == 0).sum()), found + 1
    return zeros, found


def export_onnx(model: nn.Module, path: str | Path, input_shape: Sequence[int], *, overwrite: bool = True,
                opset: int | None = None) -> dict:
    """Write ``model`` (in eval mode) as an ONNX file with a dynamic batch dimension.

    Args:
        model: the network (wrappers looked through); pruned weights are exported as the zeros they are.
        path: the output file (conventionally ``*.onnx``).
        input_shape: one example's shape without the batch dimension, e.g. ``(1, 28, 28)``.
        overwrite: False refuses an existing ``path`` holding other bytes (the same bytes are rewritten).
        opset: the ONNX opset; None takes the exporter's default.

    Returns:
        ``{"format": "onnx", "path", "dense_fp32_bytes", "file_bytes", "ratio", "opset", "input",
        "output", "prunable_zeros", "prunable_zeros_in_file", "prunable_tensors_in_file"}``: ``input``
        is ``"input: [batch, C, H, W]"``; the zeros are the prunable weights' in the model and in their
        copies among the file's initializers (found by name, else by value: see :func:`_initializer_zeros`).

    Raises:
        SparsehaloError: the ``onnx`` extra is missing, a bad ``input_shape``, a model the exporter
            cannot trace or over 2 GiB, or (``overwrite=False``) an existing ``path`` with other content.
    """
    require_onnx()
    path = Path(path)
    model = unwrap(model)
    shape = check_input_shape(input_shape)
    state = model.state_dict()
    size = sum(t.numel() * t.element_size() for t in state.values() if isinstance(t, torch.Tensor))
    if size > MAX_BYTES:
        raise SparsehaloError(f"the model has {size:,} bytes of tensors, over the 2 GiB an ONNX file holds without external data")
    prunable = prunable_parameters(model)
    tied = aliases(model)
    first = next(iter(state.values()), None)
    device = first.device if isinstance(first, torch.Tensor) else torch.device("cpu")
    example = torch.rand((EXAMPLE_BATCH, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    was_training = model.training
    model.eval()
    try:
        data, opset_used = _serialized(model, example, opset)
    finally:
        model.train(was_training)
    write_unless_other(path, data, overwrite, checksum=True)
    in_file, tensors = _initializer_zeros(data, [((name, *tied.get(name, ())), p) for name, p in prunable.items()])
    zeros = sum(int((p == 0).sum()) for p in prunable.values())
    return report("onnx", path, dense_fp32_bytes(state), opset=opset_used, input=f"{INPUT}: [{BATCH}, {', '.join(map(str, shape))}]",
                  output=OUTPUT, prunable_zeros=zeros, prunable_zeros_in_file=in_file, prunable_tensors_in_file=tensors)
