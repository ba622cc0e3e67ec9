"""Which output units of which layers must be removed together: a ``torch.fx`` coupling analysis.

Structured pruning removes whole output channels of a convolution or output neurons of a Linear
layer.  Removing channel ``c`` of a layer also removes entry ``c`` of the BatchNorm that normalizes
it, input channel ``c`` of every convolution reading it, input features ``c*f .. c*f+f-1`` of a Linear
reading it after a flatten (``f = H*W``), and channel ``c`` of every other layer whose output is
*added* to it (a residual sum).  A :class:`Group` is one such set of coupled units.

**Residual sums are pruned jointly, not excluded.**  The channels that meet in a sum are one group,
so in the CIFAR ResNet a stage's stem (or projection shortcut) and every block's second conv lose the
same channels, and the residual stream itself gets narrower.  This is sound (a sum of zero channels is
zero), needs no special case (it is the union-find of the sums), and excluding those channels would
leave every block's input and output width and the shortcuts' cost fixed.

**Why our own analysis and not Torch-Pruning's dependency graph.**  Both trace the model into a graph,
so neither hard-codes model families.  Ours is one small module (no new dependency) that does exactly
what the masks and :func:`~sparsehalo.pruning.slimming.slim` need: it keeps the pruned model's outputs
provably equal to the slimmed one's, because it couples a layer only through operations it knows to be
*channel-wise and zero-preserving* (``f(0) = 0`` per channel: ReLU-like activations, dropout, max /
average pooling, BatchNorm with its scale and shift zeroed, sums and products of aligned tensors).
Every other operation that sees a channel (concatenation, reshapes other than a flatten, attention,
an unknown module or function, the network's output) makes its group *unprunable* rather than
guessed at, so a user's model is never slimmed wrongly, only less.  Torch-Pruning handles more
operators (concatenation, grouped convolutions) but prunes in place, has its own importance and
target semantics, and would pin a fast-moving third-party graph to exact-equality guarantees.

How it works: ``torch.fx.symbolic_trace`` of the model, ``ShapeProp`` on one all-zero input of
``input_shape`` (eval mode, the modules' modes restored), then one pass over the nodes that gives
each tensor the channel *space* of its dimension 1 (a new space per Conv / Linear output), merges the
spaces of summed tensors (union-find) and blocks the spaces that reach an unknown operation.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from ..errors import SparsehaloError
from ..selection import unwrap


@dataclass(frozen=True)
class Group:
    """Coupled output units: ``size`` channels (or neurons) kept or removed together.

    Attributes:
        producers: modules (Conv / Linear) whose output units these are, in graph order.
        followers: BatchNorms normalizing them (sliced along).
        consumers: ``(module, factor)``: Conv / Linear layers reading the units as input; unit ``c``
            is input features ``c*factor .. c*factor+factor-1`` (factor 1 but after a flatten).
        size: number of units.
        blocked: why the group cannot be pruned (``None``: prunable).
        stages: the modules whose per-unit parameters (weight row / entry and bias entry) set the
            units' values last: for each producer, the affine BatchNorm that normalizes its output
            alone if there is one (a channel after ``BN(conv)`` is ``gamma * z + beta``, zero exactly
            when ``gamma = beta = 0`` whatever the conv's weights; the conv's scale is undone by the
            normalization), else the producer itself; then every BatchNorm of a sum of producers.
    """

    producers: tuple[str, ...]
    followers: tuple[str, ...]
    consumers: tuple[tuple[str, int], ...]
    size: int
    blocked: str | None
    stages: tuple[str, ...] = ()

    @property
    def prunable(self) -> bool:
        return self.blocked is None


@dataclass
class _Space:
    size: int
    producers: list[str] = field(default_factory=list)
    followers: list[str] = field(default_factory=list)
    blocked: str | None = None


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = nn.modules.batchnorm._BatchNorm
# channel-wise, zero-preserving modules and functions (f(0) = 0 for every channel on its own)
_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh,
                        nn.Hardtanh, nn.Hardswish, nn.Softshrink, nn.Hardshrink, nn.Tanhshrink, nn.Identity,
                        nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                 nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_ELEMENTWISE_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu,
                          F.silu, F.mish, F.hardtanh, F.hardswish, torch.tanh, F.tanh, F.dropout, F.dropout1d, F.dropout2d,
                          F.dropout3d}
_ELEMENTWISE_METHODS = {"relu", "relu_", "tanh", "tanh_", "contiguous", "clone", "detach", "float", "double", "half",
                        "bfloat16", "to"}
_POOL_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
                   F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
                   F.adaptive_max_pool2d, F.adaptive_max_pool3d, torch.max_pool1d, torch.max_pool2d, torch.max_pool3d,
                   torch.avg_pool1d}
_ADD = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub, "add", "add_", "sub", "sub_"}
_MUL = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
_FLATTEN = {torch.flatten, "flatten", "view", "reshape", nn.Flatten}


def _first_line(exc: BaseException) -> str:
    return ((str(exc).strip().splitlines() or [type(exc).__name__])[0])[:200]


def trace(model: nn.Module, input_shape: tuple[int, ...]) -> fx.GraphModule:
    """``torch.fx`` graph of ``model`` (wrappers looked through) with each node's ``tensor_meta``.

    Raises:
        SparsehaloError: the model cannot be traced (data-dependent control flow) or run on the input.
    """
    model = unwrap(model)
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError, ...)
        raise SparsehaloError(f"structured pruning needs a model torch.fx can trace: {_first_line(exc)}") from None
    first = next(model.parameters(), None)
    x = torch.zeros((2, *input_shape), device=first.device if first is not None else "cpu",
                    dtype=first.dtype if first is not None and first.is_floating_point() else torch.float32)
    modes = [(m, m.training) for m in model.modules()]
    try:
        gm.eval()
        with torch.no_grad():
            ShapeProp(gm).propagate(x)
    except Exception as exc:
        raise SparsehaloError(f"cannot run the model on an input of shape {tuple(input_shape)}: {_first_line(exc)}") from None
    finally:
        for m, training in modes:
            m.training = training
    return gm


def _shape(node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if isinstance(meta, TensorMetadata) else None


def _plain(module: nn.Module) -> bool:
    """Whether the module's weight is a plain parameter we can slice (not parametrized / torch-pruned)."""
    return not hasattr(module, "parametrizations") and not hasattr(module, "weight_orig")


class _Analysis:
    def __init__(self, gm: fx.GraphModule, order: dict[str, int]):
        self.gm = gm
        self.order = order  # module name -> position in the model's named_modules
        self.produced: dict[str, int] = {}  # producer module -> its space (a module called twice: one space)
        self.parent: list[int] = []
        self.spaces: list[_Space] = []
        self.value: dict[fx.Node, tuple | None] = {}
        self.reads: dict[str, list[tuple | None]] = {}  # consumer module -> the values it read
        self.bn_of: dict[str, str] = {}  # producer -> the affine BatchNorm normalizing its output alone

    # union-find ---------------------------------------------------------------------------------
    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def new(self, size: int, producer: str) -> tuple:
        self.parent.append(len(self.spaces))
        self.spaces.append(_Space(size, [producer]))
        return ("chan", len(self.spaces) - 1, 1)

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            sa, sb = self.spaces[a], self.spaces[b]
            self.parent[b] = a
            sa.producers += [p for p in sb.producers if p not in sa.producers]
            sa.followers += [f for f in sb.followers if f not in sa.followers]
            sa.blocked = sa.blocked or sb.blocked
            if sa.size != sb.size:
                sa.blocked = sa.blocked or "summed tensors of different widths"
        return a

    def block(self, val, why: str) -> None:
        if val is not None:
            s = self.spaces[self.find(val[1])]
            s.blocked = s.blocked or why

    # the pass -----------------------------------------------------------------------------------
    def run(self) -> None:
        for node in self.gm.graph.nodes:
            ins = [self.value.get(a) for a in node.all_input_nodes]
            if node.op in ("placeholder", "get_attr"):
                self.value[node] = None
            elif node.op == "output":
                for v in ins:
                    self.block(v, "it is (part of) the network's output")
            elif node.meta.get("tensor_meta") is None:
                self.value[node] = None  # sizes, dims, shapes: metadata, not data
            elif not isinstance(node.meta["tensor_meta"], TensorMetadata):
                for v in ins:
                    self.block(v, f"{self._what(node)} returns several tensors")
                self.value[node] = None
            else:
                self.value[node] = self.step(node, ins)

    def _what(self, node) -> str:
        if node.op == "call_module":
            return f"{type(self.gm.get_submodule(node.target)).__name__} {node.target!r}"
        return f"{getattr(node.target, '__name__', node.target)}"

    def step(self, node: fx.Node, ins: list):
        what = self._what(node)
        kind = node.target
        arg = node.args[0] if node.args else None
        x = self.value.get(arg) if isinstance(arg, fx.Node) else None
        if node.op == "call_module":
            m = self.gm.get_submodule(node.target)
            kind = type(m)
            if isinstance(m, _CONV) or type(m) is nn.Linear or isinstance(m, nn.Linear):
                return self.layer(node, m, x)
            if isinstance(m, _BN):
                if x is not None and x[0] == "chan" and m.num_features == self.spaces[self.find(x[1])].size and _plain(m):
                    s = self.spaces[self.find(x[1])]
                    if node.target not in s.followers:
                        s.followers.append(node.target)
                    if len(s.producers) == 1 and m.affine and s.producers[0] not in self.bn_of:
                        self.bn_of[s.producers[0]] = node.target
                    return x
                self.block(x, f"{what} is not a plain per-channel BatchNorm of it")
                return None
            if isinstance(m, _ELEMENTWISE_MODULES) and len(ins) <= 1:
                return x
            if isinstance(m, _POOL_MODULES) and len(ins) <= 1:
                return self.pool(x, what)
        elif node.op in ("call_function", "call_method"):
            if kind in _ELEMENTWISE_FUNCTIONS or (node.op == "call_method" and kind in _ELEMENTWISE_METHODS):
                if len(ins) <= 1:
                    return x
            elif kind in _POOL_FUNCTIONS and len(ins) <= 1:
                return self.pool(x, what)
            elif kind in _ADD or kind in _MUL:
                return self.combine(node, kind in _MUL, what)
        if kind in _FLATTEN and len(ins) <= 1 or isinstance(kind, str) and kind in _FLATTEN:
            return self.flatten(node, arg, x, what)
        for v in ins:
            self.block(v, f"{what} is not an operation the channel analysis knows")
        return None

    def pool(self, x, what: str):
        if x is not None and x[0] != "chan":
            self.block(x, f"{what} pools flattened features")
            return None
        return x

    def layer(self, node: fx.Node, m: nn.Module, x):
        name = node.target
        conv = isinstance(m, _CONV)
        in_shape = _shape(node.args[0]) if node.args else None
        ok = _plain(m) and (m.groups == 1 if conv else in_shape is not None and len(in_shape) == 2)
        if not ok:
            why = "it is grouped" if conv and m.groups != 1 else "its input is not (batch, features)" if not conv else "it is parametrized"
            self.block(x, f"{type(m).__name__} {name!r} reads it and {why}")
            self.reads.setdefault(name, []).append("blocked")
            return None
        self.reads.setdefault(name, []).append(x)
        val = self.new(m.out_channels if conv else m.out_features, name)
        if name in self.produced:
            self.union(self.produced[name], val[1])
        else:
            self.produced[name] = val[1]
        return val

    def combine(self, node: fx.Node, mul: bool, what: str):
        a = node.args[0]
        b = node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
        va = self.value.get(a) if isinstance(a, fx.Node) else None
        vb = self.value.get(b) if isinstance(b, fx.Node) else None
        tensor_a, tensor_b = _shape(a) is not None, _shape(b) is not None
        if mul and (va is None) != (vb is None) and not (tensor_a and tensor_b):
            return va or vb  # times a number: zeros stay zeros
        if va is not None and vb is not None and va[0] == vb[0] and va[2] == vb[2] and _shape(a) == _shape(b):
            return (va[0], self.union(va[1], vb[1]), va[2])
        for v in (va, vb):
            self.block(v, f"{what} combines it with a tensor of other channels")
        return None

    def flatten(self, node: fx.Node, arg, x, what: str):
        src, dst = _shape(arg), _shape(node)
        if x is None:
            return None
        if src == dst:
            return x
        if x[0] == "chan" and src is not None and dst == (src[0], math.prod(src[1:])):
            return ("flat", x[1], math.prod(src[2:]))
        self.block(x, f"{what} reshapes it other than flattening (batch, C, ...) to (batch, C*...)")
        return None

    def groups(self) -> list[Group]:
        consumers: dict[int, list[tuple[str, int]]] = {}
        for name, reads in self.reads.items():
            spaced = [r for r in reads if r is not None and r != "blocked"]
            for r in spaced:
                if len(spaced) != len(reads) or {(s[0], s[2]) for s in spaced} != {(spaced[0][0], spaced[0][2])}:
                    self.block(r, f"{name!r} is called on tensors of different channels")
            for r in spaced[1:]:
                self.union(spaced[0][1], r[1])
            if spaced:
                consumers.setdefault(self.find(spaced[0][1]), []).append((name, spaced[0][2]))
        order = self.order
        out = []
        for root in {self.find(i) for i in range(len(self.spaces))}:
            s = self.spaces[root]
            producers, followers = tuple(sorted(s.producers, key=order.get)), tuple(sorted(s.followers, key=order.get))
            own = {self.bn_of[p] for p in producers if p in self.bn_of}
            stages = tuple(self.bn_of.get(p, p) for p in producers) + tuple(
                f for f in followers if f not in own and self.gm.get_submodule(f).affine)
            out.append(Group(producers, followers, tuple(sorted(consumers.get(root, []), key=lambda c: order[c[0]])),
                             s.size, s.blocked, stages))
        return sorted(out, key=lambda g: order[g.producers[0]])


def coupled_groups(model: nn.Module, input_shape: tuple[int, ...]) -> list[Group]:
    """Every :class:`Group` of ``model``'s Conv / Linear output units, prunable or not, in module order.

    Args:
        model: the network (``torch.compile`` / DDP wrappers looked through).
        input_shape: one example's shape without the batch dimension, e.g. ``(1, 28, 28)``.

    Raises:
        SparsehaloError: the model cannot be traced or run on that input.
    """
    order = {n: i for i, (n, _) in enumerate(unwrap(model).named_modules())}
    analysis = _Analysis(trace(model, input_shape), order)
    analysis.run()
    return analysis.groups()
