"""Sizes and multiply-accumulates (MACs) of a network, dense and with its zero weights skipped.

Counted: the weight of every convolution (``Conv1d/2d/3d`` and ``ConvTranspose1d/2d/3d``, any groups,
stride, dilation, padding), of every Linear-like layer (``nn.Linear`` and its subclasses,
``nn.Bilinear``) and the projections of ``nn.MultiheadAttention`` (``in_proj_weight`` or
``q/k/v_proj_weight``, and ``out_proj``), plus the two attention matmuls (``Q K^T`` and ``A V``),
which are counted dense since they multiply activations, not weights.  Biases, normalization,
activations, pooling and softmax are not MACs and are left out; embeddings (``nn.Embedding``,
``nn.EmbeddingBag``) are table lookups and listed with 0 MACs.  The "flops" fields are MACs per
example, the usual convention in the pruning literature (a FLOP counter such as
``torch.utils.flop_counter`` reports 2 FLOPs per MAC).

A weight entry is used a fixed number of times per call: once per output position of a convolution,
once per *input* position of a transposed convolution, once per input row of a Linear-like layer.
Skipping an exact zero therefore saves exactly that many MACs.  A floating-point parameter of dim >= 2
that the counter does not understand (a user's own ``x @ self.weight``) is never dropped silently:
:func:`measure` lists it under ``"uncounted"`` and a warning names it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import SparsehaloError
from ..selection import prunable_parameters, unwrap
from .sparsity import count_nonzero

#: What the ``flops_*`` fields of :func:`measure` count.
FLOPS_UNIT = (
    "multiply-accumulates per example (weights of convolutions, linear layers and attention projections, "
    "plus the attention matmuls counted dense; biases, norms and activations excluded)"
)

_CONV = nn.modules.conv._ConvNd
_KNOWN = (_CONV, nn.Linear, nn.Bilinear, nn.MultiheadAttention, nn.Embedding, nn.EmbeddingBag)
# the parameters of the known modules that the counter accounts for (MACs, or none by definition)
_UNDERSTOOD = {"weight", "bias", "in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
               "in_proj_bias", "bias_k", "bias_v"}
# operations that hand a watched tensor on unchanged in value (views, copies, casts) ...
_PASS = {"view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "squeeze", "unsqueeze", "expand",
         "expand_as", "broadcast_to", "permute", "transpose", "swapaxes", "movedim", "t", "contiguous", "detach",
         "clone", "to", "type", "type_as", "float", "double", "half", "bfloat16", "__getitem__", "narrow",
         "select", "split", "chunk", "unbind", "repeat", "tile", "__get__"}
# ... and those that consume it without a multiply-accumulate
_FREE = {"add", "__add__", "__radd__", "add_", "__iadd__", "sub", "__sub__", "__rsub__", "sub_", "__isub__",
         "cat", "concat", "concatenate", "stack", "hstack", "vstack", "neg", "__neg__"}


@dataclass
class LayerCost:
    """Cost of one layer per example.

    Attributes:
        name: module name in ``model.named_modules()``; for the projections of a
            ``MultiheadAttention`` ``att``, the parameter name (``att.in_proj_weight``, or
            ``att.q_proj_weight`` / ``att.k_proj_weight`` / ``att.v_proj_weight``), its output
            projection being the Linear ``att.out_proj`` and its attention matmuls the row ``att``.
        kind: the nearest ``torch.nn`` class (``"Conv2d"``, ``"ConvTranspose1d"``, ``"Linear"``,
            ``"Bilinear"``, ``"Embedding"``, ...), ``"attention projection"`` or ``"attention matmul"``.
        macs_dense: MACs with every weight used.
        macs_nonzero: MACs with the exact-zero weights skipped (the attention matmuls: dense).
        params: entries of the weight (bias excluded; 0 for the attention matmuls and for a tensor
            shared with an earlier layer, whose entries are listed there).
        params_nonzero: non-zero entries of the weight (same convention).
    """

    name: str
    kind: str
    macs_dense: int
    macs_nonzero: int
    params: int
    params_nonzero: int


@dataclass
class _Row:
    """A :class:`LayerCost` being counted: ``uses[(start, stop)]`` = how often each entry of
    ``weight[start:stop]`` was used (``(None, None)``: the whole weight)."""

    name: str
    kind: str
    module: nn.Module | None
    attr: str | None
    uses: dict[tuple[int | None, int | None], int] = field(default_factory=dict)
    dense: int = 0  # MACs not tied to a weight (the attention matmuls)

    def add(self, n: int, rows: tuple[int | None, int | None] = (None, None)) -> None:
        self.uses[rows] = self.uses.get(rows, 0) + n


def _kind(module: nn.Module) -> str:
    """The nearest public ``torch.nn`` class of ``module`` (``Linear`` for attention's out_proj)."""
    for cls in type(module).__mro__:
        if getattr(nn, cls.__name__, None) is cls:
            return cls.__name__
    return type(module).__name__


def _params(module: nn.Module, attr: str) -> list[torch.Tensor]:
    """The parameters behind ``module.<attr>``: itself, ``<attr>_orig`` for a ``torch.nn.utils.prune``
    layer, or the originals of a ``torch.nn.utils.parametrize`` parametrization."""
    p = module._parameters.get(attr)
    if p is None:
        p = module._parameters.get(f"{attr}_orig")
    plist = getattr(module, "parametrizations", None)
    if p is None and isinstance(plist, nn.ModuleDict) and attr in plist:
        return list(plist[attr].parameters(recurse=False))
    return [p] if p is not None else []


def _rows(model: nn.Module) -> tuple[list[_Row], dict[int, list[_Row]]]:
    """One row per counted weight (plus the attention matmuls), and the rows of each hooked module."""
    rows: list[_Row] = []
    of: dict[int, list[_Row]] = {}
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(m, nn.MultiheadAttention):
            attrs = ["in_proj_weight"] if m._qkv_same_embed_dim else ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
            new = [_Row(prefix + a, "attention projection", m, a) for a in attrs]
            new.append(_Row(name, "attention matmul", None, None))
        elif isinstance(m, _KNOWN) and isinstance(getattr(m, "weight", None), torch.Tensor):
            new = [_Row(name, _kind(m), m, "weight")]
        else:
            continue
        rows += new
        of[id(m)] = new
    return rows, of


def _arg(args: tuple, kwargs: dict, i: int, key: str):
    return args[i] if len(args) > i else kwargs[key]


def _attention(m: nn.MultiheadAttention, args: tuple, kwargs: dict, own: list[_Row], out_proj: list[_Row]) -> None:
    """Count one call of ``m`` from the sizes of its query, key and value."""
    q, k, v = (_arg(args, kwargs, i, key) for i, key in enumerate(("query", "key", "value")))
    e = m.embed_dim
    nq, nk, nv = q.numel() // e, k.numel() // m.kdim, v.numel() // m.vdim  # rows through each projection
    # key length per sequence: (L, N, E), (N, L, E) with batch_first, or unbatched (L, E)
    lk = k.shape[1] if k.dim() == 3 and m.batch_first else k.shape[0]
    lk += (m.bias_k is not None) + bool(m.add_zero_attn)  # a learned / a zero key and value appended
    if m._qkv_same_embed_dim:
        for (start, stop), n in zip(((0, e), (e, 2 * e), (2 * e, 3 * e)), (nq, nk, nv)):
            own[0].add(n, (start, stop))
    else:
        for row, n in zip(own, (nq, nk, nv)):
            row.add(n)
    own[-1].dense += 2 * nq * lk * e  # Q K^T and A V, summed over the heads (num_heads * head_dim = E)
    for row in out_proj:
        row.add(nq)


def _uses(module: nn.Module, args: tuple, kwargs: dict, output) -> int:
    """How many times each weight entry is used in this call (output or input positions, input rows).

    ``numel / channels`` counts the positions of the whole (size-1) batch, so a model that folds extra
    dimensions into the batch is still counted right.
    """
    x = args[0] if args else next(iter(kwargs.values()))
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return x.numel() // module.in_channels
    if isinstance(module, _CONV):
        return output.numel() // module.out_channels
    if isinstance(module, nn.Bilinear):
        return x.numel() // module.in1_features
    if isinstance(module, nn.Linear):
        return x.numel() // module.in_features
    return 0  # embeddings: lookups


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


class _Watch(TorchFunctionMode):
    """Marks the watched tensors that reach an operation other than a view, a copy or an addition."""

    def __init__(self, watched: dict[int, str]):
        super().__init__()
        self.watched = {i: {n} for i, n in watched.items()}
        self.keep: list = []  # views of watched tensors stay alive, so their ids stay theirs
        self.seen: set[str] = set()
        self.flagged: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        hit = set().union(*(self.watched[id(t)] for t in _tensors((args, kwargs)) if id(t) in self.watched))
        if hit:
            self.seen |= hit
            name = getattr(func, "__name__", "")
            if name in _PASS:
                self.keep.append(out)
                for t in _tensors(out):
                    self.watched.setdefault(id(t), set()).update(hit)
            elif name not in _FREE and _tensors(out):  # metadata (shape, dim, ...) is no use
                self.flagged |= hit
        return out


def _watched(model: nn.Module, rows: list[_Row]) -> dict[int, str]:
    """``{id: first name}`` of the floating-point parameters of dim >= 2 that no row accounts for."""
    first = {id(p): n for n, p in model.named_parameters()}
    counted = {id(p) for r in rows if r.module is not None for p in _params(r.module, r.attr)}
    out = {}
    for m in model.modules():
        for attr, p in m._parameters.items():
            if p is None or id(p) in counted or isinstance(m, _KNOWN) and attr.removesuffix("_orig") in _UNDERSTOOD:
                continue
            if p.dim() < 2 or not p.is_floating_point():
                continue
            out.setdefault(id(p), first[id(p)])
    return out


def _count(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[list[LayerCost], list[str]]:
    """The rows of :func:`layer_costs` and the names of the parameters left uncounted."""
    model = unwrap(model)
    rows, of = _rows(model)
    watched = _watched(model, rows)
    out_proj = {id(m): of.get(id(m.out_proj), []) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}

    def hook(module, args, kwargs, output):
        if isinstance(module, nn.MultiheadAttention):
            _attention(module, args, kwargs, of[id(module)], out_proj[id(module)])
        else:
            of[id(module)][0].add(_uses(module, args, kwargs, output))

    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    modes = [(m, m.training) for m in model.modules()]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    handles = []
    watch = _Watch(watched)
    try:
        handles = [m.register_forward_hook(hook, with_kwargs=True) for m in model.modules() if id(m) in of]
        # Eval mode: batch norm cannot run in training mode on a batch of one, and dropout is noise.
        model.eval()
        # The fused attention / encoder-layer kernels skip the module calls the hooks count.
        torch.backends.mha.set_fastpath_enabled(False)
        with torch.no_grad():
            try:
                x = torch.zeros((1, *input_shape), device=device, dtype=dtype)
                if watched:
                    with watch:
                        model(x)
                else:
                    model(x)
            except (RuntimeError, ValueError, TypeError) as exc:
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise SparsehaloError(
                    f"cannot run the model on an input of shape {tuple(input_shape)}: {first_line[:200]}"
                ) from None
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
        torch.backends.mha.set_fastpath_enabled(fastpath)
    listed: set[int] = set()  # a tensor shared by several layers lists its entries under the first
    costs = []
    for r in rows:
        if r.module is None:
            costs.append(LayerCost(r.name, r.kind, r.dense, r.dense, 0, 0))
            continue
        value = getattr(r.module, r.attr)  # a pruned or parametrized layer's computed value
        w = value.detach()
        dense = nonzero = 0
        for (start, stop), n in r.uses.items():
            part = w[start:stop]
            dense += n * part.numel()
            nonzero += n * count_nonzero([part])[1]
        ids = {id(p) for p in _params(r.module, r.attr)} or {id(value)}
        total, nz = (0, 0) if ids & listed else count_nonzero([w])
        listed |= ids
        costs.append(LayerCost(r.name, r.kind, dense, nonzero, total, nz))
    uncounted = [n for n in watched.values() if n in watch.flagged or n not in watch.seen]
    if uncounted:
        warnings.warn(f"MACs not counted for {', '.join(uncounted)}: parameters of dim >= 2 used by an operation "
                      "the counter does not know (or not used in the forward pass); flops_* leave them out",
                      stacklevel=3)
    return costs, uncounted


def layer_costs(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerCost]:
    """MACs per example of every convolution, Linear-like layer and attention of ``model``.

    Runs one all-zero input of shape ``(1, *input_shape)`` through the model (wrappers such as
    ``torch.compile`` or DDP looked through, so names are the plain model's) in eval mode under
    ``torch.no_grad``, with PyTorch's fused attention fast path off, on the device and dtype of its
    first parameter; forward hooks record each layer's input and output sizes.  Each module's previous
    train/eval mode and the fast-path setting are restored.

    Convolution: dense = out positions * out_channels * in_channels / groups * prod(kernel), non-zero =
    out positions * count_nonzero(weight); transposed: the same with the *input* positions.  Linear:
    dense = rows * in * out, non-zero = rows * count_nonzero(weight), where rows is the product of the
    input's inner dimensions (1 for a flat input); Bilinear: dense = rows * in1 * in2 * out.
    MultiheadAttention with query, key, value lengths Lq, Lk (per sequence, summed over the batch for
    the projections) and width E: q / k / v projections Lq * E * E, Lk * kdim * E, Lk * vdim * E (each
    row block of a packed ``in_proj_weight`` with its own non-zero count), out projection Lq * E * E,
    attention matmuls 2 * Lq * Lk' * E dense, where Lk' adds one for ``bias_k`` and one for
    ``add_zero_attn``.  Embeddings: 0.  A layer called twice counts twice; a layer never called costs 0;
    a tensor shared by several layers counts its entries under the first one only.  A parameter of
    dim >= 2 that none of these accounts for is named in a warning (see :func:`measure`).

    Args:
        model: the network.
        input_shape: shape of one example, without the batch dimension, e.g. ``(1, 28, 28)``.

    Returns:
        One :class:`LayerCost` per weight (and attention), in ``named_modules`` order.

    Raises:
        SparsehaloError: if the forward pass fails for this input shape.
    """
    return _count(model, input_shape)[0]


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
            :func:`~sparsehalo.pruning.prunable_parameters` (every weight matrix or kernel).

    Returns:
        A JSON-friendly dict: ``params_total`` / ``params_nonzero`` (every parameter, biases
        included), ``prunable_total`` / ``prunable_nonzero``, ``flops_dense`` / ``flops_nonzero``
        (MACs per example, see :data:`FLOPS_UNIT` and :func:`layer_costs`), ``flops_unit``,
        ``compression`` (params_total / params_nonzero), ``speedup`` (flops_dense / flops_nonzero),
        ``layers`` (one dict per :class:`LayerCost`) and ``uncounted``: the names of floating-point
        parameters of dim >= 2 whose MACs the counter could not count (used by an operation other than
        a view, a copy or an addition, e.g. a custom ``x @ self.weight``, or not used at all), also
        named in a warning.  A ratio whose denominator is 0 is ``None``.
    """
    if prunable is None:
        prunable = prunable_parameters(model)
    costs, uncounted = _count(model, input_shape)
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
        "uncounted": uncounted,
    }
