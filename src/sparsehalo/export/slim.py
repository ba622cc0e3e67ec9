"""The slim format: a structurally pruned (slimmed) network that loads with plain PyTorch.

Two files, each with a ``.sha256`` sidecar:

* ``model.slim.pt``: the slim model's plain ``state_dict`` (``torch.save``; ``torch.load(path,
  weights_only=True)`` reads it);
* ``model.slim.json``: the architecture, generically (format ``sparsehalo-slim-1``):
  ``input_shape`` (one example), ``modules`` (``{module name: {"type": "Conv2d", "in_channels": 12,
  "out_channels": 31, ...}}``: the ``torch.nn`` class and its constructor arguments, with the new
  widths, for every module that holds tensors or is called), and ``graph``: the traced forward pass
  as an ordered list of nodes ``{"name", "op", "target", "args", "kwargs"}``, ``op`` one of
  ``input``, ``module`` (call ``target``), ``output``, or a function of the small portable set
  :data:`FUNCTIONS`; an argument ``{"node": name}`` is an earlier node's value.

``examples/load_slim.py`` (no sparsehalo import) rebuilds any such model in about 50 lines.  A model
whose forward uses an operation outside the portable set still gets ``modules`` (the new widths for
its own class) with ``graph`` null and ``graph_note`` saying why.
"""

from __future__ import annotations

import io as _stdio
import json
import operator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import fx, nn

from .. import paths
from ..errors import CheckpointError, SparsehaloError
from ..pruning.coupling import trace
from ..selection import unwrap
from .writing import dense_fp32_bytes, report, write_unless_other

FORMAT = "sparsehalo-slim-1"

#: The portable functions a graph may call, by the name ``examples/load_slim.py`` maps back.
FUNCTIONS = {"relu": (F.relu, torch.relu, "relu"), "max_pool2d": (F.max_pool2d, torch.max_pool2d),
             "avg_pool2d": (F.avg_pool2d,), "adaptive_avg_pool2d": (F.adaptive_avg_pool2d,), "tanh": (torch.tanh, F.tanh, "tanh"),
             "add": (operator.add, torch.add, "add"), "mul": (operator.mul, torch.mul, "mul"),
             "flatten": (torch.flatten, "flatten")}
_NAMES = {t: name for name, targets in FUNCTIONS.items() for t in targets}

#: Constructor arguments recorded per ``torch.nn`` class (attributes of the same names).
_CONV = ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"]
_BN = ["num_features", "eps", "momentum", "affine", "track_running_stats"]
MODULES = {"Conv1d": _CONV, "Conv2d": _CONV, "Conv3d": _CONV, "Linear": ["in_features", "out_features"],
           "BatchNorm1d": _BN, "BatchNorm2d": _BN, "BatchNorm3d": _BN, "ReLU": [], "Tanh": [], "Identity": [],
           "MaxPool2d": ["kernel_size", "stride", "padding", "dilation", "ceil_mode"],
           "AvgPool2d": ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"],
           "AdaptiveAvgPool2d": ["output_size"], "Dropout": ["p"], "Flatten": ["start_dim", "end_dim"]}


def _json(value):
    if isinstance(value, (tuple, list)):
        return [_json(v) for v in value]
    if isinstance(value, fx.Node):
        return {"node": value.name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"argument {value!r} is not portable")


def _module_spec(m: nn.Module) -> dict | None:
    kind = type(m).__name__
    if getattr(nn, kind, None) is not type(m) or kind not in MODULES:
        return None
    spec = {"type": kind, **{a: _json(getattr(m, a)) for a in MODULES[kind]}}
    if kind in ("Conv1d", "Conv2d", "Conv3d", "Linear"):
        spec["bias"] = m.bias is not None
    return spec


def describe(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """The ``model.slim.json`` description of ``model`` (see the module docstring)."""
    model = unwrap(model)
    out: dict = {"format": FORMAT, "input_shape": list(input_shape), "modules": {}, "graph": None}
    notes: list[str] = []
    holders = {n for n, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None
               or next(m.buffers(recurse=False), None) is not None}
    try:
        gm = trace(model, input_shape)
    except SparsehaloError as exc:
        gm, notes = None, [str(exc)]
    called = {n.target for n in gm.graph.nodes if n.op == "call_module"} if gm is not None else set()
    for name, m in model.named_modules():
        if name in holders or name in called:
            spec = _module_spec(m)
            if spec is None:
                notes.append(f"module {name!r} is a {type(m).__name__}, not a portable torch.nn layer")
                spec = {"type": type(m).__name__}
            out["modules"][name] = spec
    graph = []
    for node in gm.graph.nodes if gm is not None else []:
        entry = {"name": node.name, "op": node.op}
        if node.op == "placeholder":
            entry["op"] = "input"
        elif node.op == "call_module":
            entry.update(op="module", target=node.target)
        elif node.op in ("call_function", "call_method") and node.target in _NAMES:
            entry["op"] = _NAMES[node.target]
        elif node.op in ("call_method", "call_function") and node.target in ("view", "reshape", torch.reshape):
            src, dst = node.args[0].meta.get("tensor_meta"), node.meta.get("tensor_meta")
            if src is None or dst is None or tuple(dst.shape) != (src.shape[0], src.shape[1:].numel()):
                notes.append(f"node {node.name!r} reshapes other than a flatten")
            entry.update(op="flatten", args=[{"node": node.args[0].name}, 1], kwargs={})
        elif node.op != "output":
            notes.append(f"node {node.name!r} calls {getattr(node.target, '__name__', node.target)!s}, outside the portable set")
        if "args" not in entry:
            try:
                entry["args"] = _json(list(node.args))
                entry["kwargs"] = {k: _json(v) for k, v in node.kwargs.items() if k != "inplace"}
            except ValueError as exc:
                notes.append(f"node {node.name!r}: {exc}")
        graph.append(entry)
    if notes:
        out["graph_note"] = "; ".join(notes[:5])
    else:
        out["graph"] = graph
    return out


def json_path(path: str | Path) -> Path:
    """The description next to a slim state dict: ``model.slim.pt`` -> ``model.slim.json``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".pt") + ".json")


def write_slim(state: dict, description: dict | str, path: str | Path, overwrite: bool = True) -> dict:
    """Write a slim model's plain ``state`` dict to ``path`` and its ``description`` to ``json_path(path)``.

    Both are written atomically with ``.sha256`` sidecars; ``overwrite=False`` refuses to replace a file
    holding other bytes (the same bytes again succeed); both are checked before either is written.

    Returns:
        The export report (``format``, ``path``, ``json``, ``file_bytes``, ``dense_fp32_bytes``, ``ratio``,
        ``params`` (entries of the state's floating-point tensors), ``portable``).
    """
    path = Path(path)
    desc = json.loads(description) if isinstance(description, str) else description
    text = (json.dumps(desc, indent=1) + "\n").encode()
    buf = _stdio.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, buf)
    data = buf.getvalue()
    for target, blob in ((path, data), (json_path(path), text)):
        if target.exists() and not overwrite and not (target.is_file() and target.read_bytes() == blob):
            raise SparsehaloError(f"{str(target)!r} exists and differs from this export; pass --force to replace it, or choose another --out")
    write_unless_other(path, data, True, checksum=True)
    write_unless_other(json_path(path), text, True, checksum=True)
    params = sum(v.numel() for k, v in state.items() if v.is_floating_point() and not k.endswith(("running_mean", "running_var")))
    return report("slim", path, dense_fp32_bytes(state), json=str(json_path(path)), params=params, portable=desc.get("graph") is not None)


def export_slim(model: nn.Module, path: str | Path, input_shape: tuple[int, ...], *, overwrite: bool = True) -> dict:
    """:func:`write_slim` of ``model``'s state dict and :func:`describe` (e.g. the output of
    :func:`sparsehalo.pruning.slim`)."""
    return write_slim(unwrap(model).state_dict(), describe(model, input_shape), path, overwrite)


def find_slim(root: str | Path, channels: float | None, macs: float | None, scope: str = "global") -> Path:
    """The slim checkpoint ``sparsehalo prune ROOT --structured --channels C | --macs M [--scope S]`` wrote.

    Raises:
        SparsehaloError: not exactly one of ``channels`` / ``macs``.
        CheckpointError: no such checkpoint (naming the command that writes it).
    """
    if (channels is None) == (macs is None):
        raise SparsehaloError("--format slim needs the structured prune to export: --channels C or --macs M (one of them)")
    source = paths.slim_checkpoint(Path(root), paths.slim_stem(channels, macs, scope))
    if not source.is_file():
        option = f"--macs {macs:g}" if macs is not None else f"--channels {channels:g}"
        raise CheckpointError(f"{str(source)!r} not found; run `sparsehalo prune {root} --structured {option}"
                              f"{'' if scope == 'global' else ' --scope ' + scope}` first")
    return source
