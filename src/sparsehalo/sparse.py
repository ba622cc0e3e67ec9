"""Sparse inference: pruned Linear layers that run a sparse kernel where it is measurably faster.

:func:`sparsify` returns a copy of a model whose Linear layers with at least ``min_sparsity`` zero
weights are replaced by :class:`SparseLinear`.  A :class:`SparseLinear` keeps the dense weight (same
state-dict keys as ``nn.Linear``) and sparse forms of it, and on the first call for each batch-size
bucket (the next power of two) times the dense ``F.linear`` against its sparse kernels on that very
input, then caches the fastest.  A sparse kernel is only chosen when it beats dense by a margin, so a
layer is never slower than dense beyond timing noise.  Every kernel returns what ``nn.Linear`` returns:
a new contiguous tensor of shape ``[*lead, out_features]`` for an input ``[*lead, in_features]``.

Kernels (all compute ``y = x W^T + b``; at batch 1 both CSR kernels are ``addmv(b, W_csr, x)``):

``csr``
    MKL sparse CSR on row-major operands: ``y^T = addmm(b, W_csr, x^T)`` with ``x^T`` made contiguous
    first and ``y^T`` transposed back; the two copies are timed with it (fc1 of LeNet-300-100 at 99%,
    batch 256: ~105 and ~40 us next to ~75 us of MKL).
``csr_colmajor``
    the same product on column-major operands (row-major ``x`` *is* a column-major ``x^T``, and the
    result is written through ``y.t()``): no copies, but MKL is slower per non-zero in this layout,
    which pays off for small layers and small batches.
``gather``
    ``x^T[col]`` (``index_select``) scaled by the values and summed into rows with ``index_add_``;
    second to CSR in every measurement so far, kept as the fallback wherever MKL does poorly.

Tried and dropped, measured on fc1 of LeNet-300-100 (784->300) at 99% sparsity, 1 thread, against
``csr`` (``benchmarks/sparse_inference.py --survey``; 2-core AMD EPYC): COO ``sparse.mm`` (~9x slower
at batch 1, ~1.3x at 256), ``x @ W^T`` with a sparse CSR right operand (~13x / ~5x), BSR with 2x2 or
4x4 blocks (2-5x: unstructured sparsity fills blocks poorly), a column-major ``x.t()`` with a
row-major result (PyTorch copies it first), blocked or NumPy transposes (slower than
``.contiguous()``), ``segment_reduce`` or ``cumsum`` reductions for the gather kernel (4x and
more), and ``torch.compile`` of the gather kernel (1-3 s to compile, then ~4x slower at batch 1 and
~1.2x at 256).  Conv2d layers are not converted: unfold + CSR beats ``F.conv2d`` at batch 1 on
LeNet-5-Caffe's convolutions (1.3-1.8x) but loses 1.8-3x at batch 256, where the unfold alone costs
about as much as the whole dense convolution; see ``benchmarks/README.md``.  A call that needs
autograd takes the dense path.

Under ``torch.compile`` (``fullgraph=True`` works) and ``torch.export`` nothing is timed and no data
pointer is read: a trace records :meth:`SparseLinear.traced_kernel`, the kernel already chosen for the
batch bucket (dense if never calibrated; for a symbolic batch size the one all calibrated buckets
above 1 agree on, else dense).  So calibrate eagerly first, then trace.  CSR enters the graph as the
operator ``sparsehalo::csr_linear``, registered on import (import ``sparsehalo`` before loading a
saved exported program).  ``.to()`` and ``load_state_dict`` make traces run dense until the next eager
call; an in-place weight edit is seen by eager calls only, so make one before tracing again.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SparsehaloError

#: ``timer({name: zero-argument callable}) -> {name: seconds}``; inject a fake one in tests.
Timer = Callable[[Mapping[str, Callable[[], torch.Tensor]]], dict[str, float]]

KERNELS = ("csr", "csr_colmajor", "gather")
#: MKL's sparse routines take these; other dtypes always run dense.
SPARSE_DTYPES = (torch.float32, torch.float64)


def _csr_linear(x: torch.Tensor, csr: torch.Tensor, bias: torch.Tensor | None, colmajor: bool) -> torch.Tensor:
    """``x W^T + b`` for a 2-D ``x`` and ``W`` in sparse CSR; a new contiguous ``[rows, out]`` tensor."""
    rows, n_out = x.shape[0], csr.shape[0]
    if rows == 1:
        y = torch.mv(csr, x[0]) if bias is None else torch.addmv(bias, csr, x[0])
        return y.unsqueeze(0)
    if colmajor:
        y = x.new_empty(rows, n_out)
        bias_col = x.new_zeros(n_out, 1) if bias is None else bias.unsqueeze(1)
        torch.addmm(bias_col, csr, x.contiguous().t(), out=y.t())
        return y
    xt = x.t().contiguous()
    # addmm adds the bias inside MKL's pass over the output; a separate add_ costs ~20% more.
    yt = torch.sparse.mm(csr, xt) if bias is None else torch.addmm(bias.unsqueeze(1), csr, xt)
    return yt.t().clone(memory_format=torch.contiguous_format)


def _gather_linear(x: torch.Tensor, col, val, row, bias: torch.Tensor | None, n_out: int) -> torch.Tensor:
    """``x W^T + b`` for a 2-D ``x``: ``y^T[row[k]] += val[k] x^T[col[k]]`` over the non-zeros ``k``."""
    xt = x.t().contiguous()
    gathered = xt.index_select(0, col).mul_(val.unsqueeze(1))
    yt = xt.new_zeros(n_out, x.shape[0]) if bias is None else bias.unsqueeze(1).expand(n_out, x.shape[0]).clone()
    # clone, not .contiguous(): at one row y^T.t() already counts as contiguous, with other strides.
    return yt.index_add_(0, row, gathered).t().clone(memory_format=torch.contiguous_format)


# The CSR kernels as one opaque operator on the plain CSR arrays, for traces, which cannot hold a sparse
# tensor; building it inside costs ~2 us, Library dispatch ~2 us (torch.library.custom_op: ~15 us).
_LIB = torch.library.Library("sparsehalo", "FRAGMENT")
_LIB.define("csr_linear(Tensor x, Tensor crow, Tensor col, Tensor val, Tensor? bias, bool colmajor) -> Tensor")


@torch.library.impl("sparsehalo::csr_linear", "CompositeExplicitAutograd", lib=_LIB)
def _csr_linear_op(x, crow, col, val, bias, colmajor):
    csr = torch.sparse_csr_tensor(crow, col, val, (crow.shape[0] - 1, x.shape[1]), check_invariants=False)
    return _csr_linear(x, csr, bias, colmajor)


@torch.library.register_fake("sparsehalo::csr_linear", lib=_LIB)
def _csr_linear_fake(x, crow, col, val, bias, colmajor):
    return x.new_empty(x.shape[0], crow.shape[0] - 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_kernels(
    candidates: Mapping[str, Callable[[], torch.Tensor]], *, repeats: int = 21, warmup: int = 3, budget_s: float = 0.1, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Fastest wall time of each candidate over interleaved rounds.

    Interleaving (a, b, c, a, b, c, ...) lets drifting load hit every candidate alike and keeps the
    caches as mixed as they are inside a model, where other layers run in between.  The minimum is
    used, not the median: on a shared machine, preemption only ever adds time, and it can hit more
    than half of the calls of a busy stretch.

    Args:
        candidates: ``{name: fn}``; each ``fn()`` runs one call.
        repeats: timed rounds, lowered (to no fewer than 5) to stay near ``budget_s``.
        warmup: untimed calls per candidate first (allocator and cache warm-up).
        budget_s: rough total time to spend on timed calls.
        device: synchronized around each call when it is a CUDA device.

    Returns:
        ``{name: seconds}``.
    """
    device = torch.device(device)
    first = {}
    for name, fn in candidates.items():
        for _ in range(warmup):
            fn()
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        first[name] = time.perf_counter() - t0
    per_round = sum(first.values()) or 1e-9
    rounds = max(5, min(repeats, int(budget_s / per_round)))
    best = {name: math.inf for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def bucket_of(rows: int) -> int:
    """The batch-size bucket of ``rows`` input rows: the next power of two (1, 2, 4, ...)."""
    return 1 << max(rows - 1, 0).bit_length()


class SparseLinear(nn.Module):
    """A Linear layer for inference that picks dense or a sparse kernel per batch-size bucket.

    The weight and bias are parameters (``requires_grad=False``) with the same names and shapes as in
    ``nn.Linear``, so state dicts are interchangeable.  The sparse forms are rebuilt, and the cached
    choices dropped, whenever the weight is modified in place or replaced (``load_state_dict``,
    ``.to()``).  The output has the shape, dtype and strides ``nn.Linear`` gives (contiguous).

    Args:
        weight: ``[out_features, in_features]``.
        bias: ``[out_features]`` or None.
        timer: measures candidate kernels, default :func:`time_kernels`.
        margin: a sparse kernel is chosen only if its time is below ``margin`` times the dense time.

    Attributes:
        choice: ``{bucket: kernel name}`` (``"dense"`` or one of :data:`KERNELS`), filled lazily.
        timings: ``{bucket: {kernel name: seconds}}`` measured for each choice.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, *, timer: Timer | None = None, margin: float = 0.9) -> None:
        super().__init__()
        if weight.dim() != 2:
            raise SparsehaloError(f"SparseLinear needs a 2-D weight, got shape {list(weight.shape)}")
        if not 0 < margin <= 1:
            raise SparsehaloError(f"margin must be in (0, 1], got {margin}")
        self.out_features, self.in_features = weight.shape
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        if bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.timer: Timer | None = timer
        self.margin = margin
        self.choice: dict[int, str] = {}
        self.timings: dict[int, dict[str, float]] = {}
        self._key: tuple | None = None
        self._refresh()

    @classmethod
    def from_linear(cls, linear: nn.Linear, **kwargs) -> SparseLinear:
        """A :class:`SparseLinear` with a copy of ``linear``'s weight and bias."""
        layer = cls(linear.weight, linear.bias, **kwargs)
        return layer.train(linear.training)

    # Sparse forms ------------------------------------------------------------------------------------
    def _state_key(self) -> tuple:
        # Read the parameter dict directly: nn.Module.__getattr__ costs ~0.5 us a call, which matters
        # next to a ~10 us batch-1 kernel.
        params = self._parameters
        w, b = params["weight"], params["bias"]
        if b is None:
            return (w.data_ptr(), w._version)
        return (w.data_ptr(), w._version, b.data_ptr(), b._version)

    def _refresh(self) -> None:
        """Rebuild the sparse forms from the dense weight and forget the timing-based choices."""
        self.choice.clear()
        self.timings.clear()
        self._build_sparse()

    def _build_sparse(self) -> None:
        w = self.weight.detach()
        self._sparse_ok = w.dtype in SPARSE_DTYPES and w.layout == torch.strided and w.numel() > 0
        self._csr = self._crow = self._col = self._val = self._row = None
        if self._sparse_ok:
            with warnings.catch_warnings():
                # "Sparse CSR tensor support is in beta": said once per process, and we test our use.
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                self._csr = w.to_sparse_csr()
            # Plain copies of the index arrays: tracing cannot hold views into a sparse tensor.
            self._crow = self._csr.crow_indices().clone()
            self._col = self._csr.col_indices().clone()
            self._val = self._csr.values().clone()
            self._row = torch.repeat_interleave(torch.arange(self.out_features, device=w.device), self._crow.diff())
        self._key = self._state_key()

    # Traces cannot compare data pointers: conversions and loads set _key to None, "rebuild before use".
    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._key = None if self._key != self._state_key() else self._key
        return self

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._key = None if self._key != self._state_key() else self._key

    # Sparse CSR tensors cannot be deep-copied or pickled: drop the derived forms and rebuild them on
    # arrival, keeping the measured choices.
    _DERIVED = ("_csr", "_crow", "_col", "_val", "_row", "_key")

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        for name in self._DERIVED:
            state.pop(name, None)
        return state

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        self._build_sparse()

    @property
    def nnz(self) -> int:
        """Number of non-zero weights."""
        return int(torch.count_nonzero(self.weight))

    # Kernels -----------------------------------------------------------------------------------------
    def run(self, x: torch.Tensor, kernel: str) -> torch.Tensor:
        """``y = x W^T + b`` with a given kernel (``"dense"`` or one of :data:`KERNELS`), no choosing.

        Raises:
            SparsehaloError: an unknown kernel, or a sparse kernel for an input it cannot take.
        """
        if kernel == "dense":
            return F.linear(x, self.weight, self.bias)
        if kernel not in KERNELS:
            raise SparsehaloError(f"unknown kernel {kernel!r}; choose dense, {', '.join(KERNELS)}")
        if self._key != self._state_key():
            self._refresh()
        if not self._sparse_usable(x):
            raise SparsehaloError(f"kernel {kernel!r} cannot take this input ({x.dtype} {list(x.shape)} on {x.device}) or weight")
        with torch.no_grad():
            return self._sparse(x, kernel)

    def _sparse(self, x: torch.Tensor, kernel: str, traced: bool = False) -> torch.Tensor:
        n_in, n_out = self.in_features, self.out_features
        if x.dim() != 2:
            return self._sparse(x.reshape(-1, n_in), kernel, traced).reshape(*x.shape[:-1], n_out)
        bias = self._parameters["bias"]
        if kernel == "gather":
            return _gather_linear(x, self._col, self._val, self._row, bias, n_out)
        if traced:
            return torch.ops.sparsehalo.csr_linear(x, self._crow, self._col, self._val, bias, kernel == "csr_colmajor")
        return _csr_linear(x, self._csr, bias, kernel == "csr_colmajor")

    def _sparse_usable(self, x: torch.Tensor) -> bool:
        if not self._sparse_ok:
            return False
        params = self._parameters
        w, b = params["weight"], params["bias"]
        if x.dtype is not w.dtype or x.layout is not torch.strided or x.device != w.device:
            return False
        if x.dim() == 0 or x.shape[-1] != self.in_features or x.numel() == 0:
            return False
        # Sparse kernels have no autograd here: anything that needs gradients goes dense.
        return not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)))

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> str:
        """Time dense against the sparse kernels on ``x``, cache and return the choice for its bucket.

        At one row ``csr_colmajor`` is ``csr`` and is not timed.

        Raises:
            SparsehaloError: if no sparse kernel can take ``x`` (see :meth:`forward` for when that is).
        """
        if self._key != self._state_key():
            self._refresh()
        if not self._sparse_usable(x):
            raise SparsehaloError(f"no sparse kernel can take this input ({x.dtype} {list(x.shape)} on {x.device})")
        rows = x.numel() // self.in_features
        names = KERNELS if rows > 1 else tuple(k for k in KERNELS if k != "csr_colmajor")
        w, b = self.weight, self.bias
        candidates = {"dense": lambda: F.linear(x, w, b)}
        for name in names:
            candidates[name] = lambda name=name: self._sparse(x, name)
        timer = self.timer or (lambda c: time_kernels(c, device=w.device))
        times = dict(timer(candidates))
        best = min(names, key=lambda n: times[n])
        bucket = bucket_of(rows)
        self.choice[bucket] = best if times[best] < self.margin * times["dense"] else "dense"
        self.timings[bucket] = times
        return self.choice[bucket]

    def traced_kernel(self, x: torch.Tensor) -> str:
        """The kernel a trace records for ``x`` (see the module docstring); times and inspects nothing.

        Dense also when no sparse kernel can take ``x`` or the layer changed since its last eager call.
        """
        if self._key is None or not self._sparse_usable(x):
            return "dense"
        rows = x.numel() // self.in_features
        if isinstance(rows, int):
            return self.choice.get(bucket_of(rows), "dense")
        agreed = {kernel for bucket, kernel in self.choice.items() if bucket > 1}
        return agreed.pop() if len(agreed) == 1 else "dense"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = self._parameters
        if torch.compiler.is_compiling():
            kernel = self.traced_kernel(x)
            return F.linear(x, params["weight"], params["bias"]) if kernel == "dense" else self._sparse(x, kernel, traced=True)
        if self._key != self._state_key():
            self._refresh()
        n_in = self.in_features
        rows = x.numel() // n_in if n_in else 1
        kernel = self.choice.get(1 << (rows - 1).bit_length()) if rows > 0 else "dense"
        # A cached dense choice skips the remaining checks: dense is right for any input, and this
        # way a layer that chose dense costs no more than nn.Linear (whose attribute lookups cost more).
        if kernel == "dense" or not self._sparse_usable(x):
            return F.linear(x, params["weight"], params["bias"])
        if kernel is None:
            kernel = self.calibrate(x)
            if kernel == "dense":
                return F.linear(x, params["weight"], params["bias"])
        return self._sparse(x, kernel)

    def extra_repr(self) -> str:
        density = self.nnz / max(self.weight.numel(), 1)
        chosen = ", ".join(f"{b}:{k}" for b, k in sorted(self.choice.items())) or "not calibrated"
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, density={density:.4f}, choice=[{chosen}]"


def _zero_fraction(w: torch.Tensor) -> float:
    return 1.0 - int(torch.count_nonzero(w)) / w.numel()


def sparsify(model: nn.Module, *, min_sparsity: float = 0.5, timer: Timer | None = None, margin: float = 0.9) -> nn.Module:
    """A copy of ``model`` with its pruned Linear layers replaced by :class:`SparseLinear`.

    Only layers of type exactly ``nn.Linear`` are replaced (subclasses such as attention output
    projections may be used by their parent through their weight directly).  The original model is
    not touched.

    Args:
        model: the network.
        min_sparsity: replace a Linear layer whose weight has at least this fraction of zeros.
        timer: passed to every :class:`SparseLinear` (default: real timing).
        margin: passed to every :class:`SparseLinear`.

    Returns:
        The copy; equal to a plain deep copy when no layer qualifies.

    Raises:
        SparsehaloError: ``min_sparsity`` outside ``[0, 1]``.
    """
    if isinstance(min_sparsity, bool) or not isinstance(min_sparsity, (int, float)) or not 0.0 <= min_sparsity <= 1.0:
        raise SparsehaloError(f"min_sparsity must be a number in [0, 1], got {min_sparsity!r}")
    new = copy.deepcopy(model)
    replaced: dict[int, SparseLinear] = {}  # a Linear shared by two parents becomes one SparseLinear
    for parent in list(new.modules()):
        # _modules, not named_children(): the latter skips a second reference to the same module.
        for child_name, child in list(parent._modules.items()):
            if type(child) is not nn.Linear or child.weight.numel() == 0:  # also skips None entries
                continue
            if id(child) not in replaced:
                if _zero_fraction(child.weight.detach()) < min_sparsity:
                    continue
                replaced[id(child)] = SparseLinear.from_linear(child, timer=timer, margin=margin)
            setattr(parent, child_name, replaced[id(child)])
    return new


def choices(model: nn.Module) -> dict[str, dict[int, str]]:
    """``{layer name: {bucket: kernel}}`` for every :class:`SparseLinear` in ``model``."""
    return {name: dict(m.choice) for name, m in model.named_modules() if isinstance(m, SparseLinear)}
