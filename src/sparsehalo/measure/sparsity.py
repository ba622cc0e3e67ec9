"""Sparsity with its denominator stated: the one place that counts non-zero entries.

Sparsity is counted from the weights themselves (exact zeros), never from a mask, and every table
says which entries it divides by.  ``natural_sparsity`` separately counts entries with ``|w| <= eps``
that a penalty drove close to, but not exactly to, zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import SparsehaloError
from ..selection import check_materialized, effective, prunable_parameters, unwrap


def count_nonzero(tensors: Iterable[torch.Tensor] | Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """``(total entries, non-zero entries)`` over ``tensors``: the one non-zero counter of the package.

    Exact zeros only (a value of 1e-30 is non-zero); a bool tensor counts its ``True`` entries, so a
    mask's kept entries are counted the same way as a weight's survivors.
    """
    ts = list(tensors.values() if isinstance(tensors, Mapping) else tensors)
    if not ts:
        return 0, 0
    with torch.no_grad():
        nonzero = int(torch.stack([t.detach().count_nonzero() for t in ts]).sum()) if ts else 0
    return sum(t.numel() for t in ts), nonzero


def _pct(x: float) -> str:
    """Percent with two decimals that never shows 0.00%/100.00% for a value that is not exactly so."""
    s = f"{100 * x:.2f}%"
    if s == "100.00%" and x < 1:
        return ">99.99%"
    if s == "0.00%" and x > 0:
        return "<0.01%"
    return s


@dataclass
class LayerSparsity:
    """Counts for one tensor.

    Attributes:
        name: full parameter name.
        total: number of entries.
        nonzero: entries that are not exactly zero.
        near_zero: entries with ``|w| <= eps``.
        shape: the tensor's shape.
    """

    name: str
    total: int
    nonzero: int
    near_zero: int
    shape: tuple[int, ...] = ()

    @property
    def sparsity(self) -> float:
        """Fraction of exact zeros."""
        return 1 - self.nonzero / self.total if self.total else 0.0

    @property
    def natural_sparsity(self) -> float:
        """Fraction with ``|w| <= eps``."""
        return self.near_zero / self.total if self.total else 0.0


@dataclass
class SparsityTable:
    """Per-layer and overall sparsity, with the denominator spelled out.

    Attributes:
        rows: one :class:`LayerSparsity` per tensor.
        eps: threshold used for ``near_zero``.
        denominator: what the overall sparsity divides by, e.g.
            ``"266,200 prunable weights (Conv2d and Linear weights, biases excluded)"``.
    """

    rows: list[LayerSparsity]
    eps: float
    denominator: str = field(default="")

    @property
    def total(self) -> int:
        return sum(r.total for r in self.rows)

    @property
    def nonzero(self) -> int:
        return sum(r.nonzero for r in self.rows)

    @property
    def sparsity(self) -> float:
        """Exact zeros / total over all rows."""
        total = self.total
        return 1 - self.nonzero / total if total else 0.0

    @property
    def natural_sparsity(self) -> float:
        """``|w| <= eps`` entries / total over all rows."""
        total = self.total
        return sum(r.near_zero for r in self.rows) / total if total else 0.0

    def __str__(self) -> str:
        head = ["layer", "shape", "total", "non-zero", "sparsity", f"|w|<={self.eps:g}"]
        body = [
            [r.name, "x".join(map(str, r.shape)), f"{r.total:,}", f"{r.nonzero:,}", _pct(r.sparsity),
             _pct(r.natural_sparsity)]
            for r in self.rows
        ]
        body.append(["all", "", f"{self.total:,}", f"{self.nonzero:,}", _pct(self.sparsity),
                     _pct(self.natural_sparsity)])
        widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]

        def fmt(line: list[str]) -> str:
            # Names and shapes read best left-aligned, numbers right-aligned.
            cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))]
            return "  ".join(cells).rstrip()

        rule = "  ".join("-" * w for w in widths)
        lines = [fmt(head), rule, *map(fmt, body[:-1]), rule, fmt(body[-1]), ""]
        lines.append(f"sparsity = zero entries / {self.denominator}")
        lines.append(f"|w|<={self.eps:g} = entries with magnitude at most {self.eps:g} (natural sparsity)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-friendly summary (plain ints, floats, strings, lists)."""
        return {
            "layers": [
                {
                    "name": r.name,
                    "shape": list(r.shape),
                    "total": r.total,
                    "nonzero": r.nonzero,
                    "near_zero": r.near_zero,
                    "sparsity": r.sparsity,
                    "natural_sparsity": r.natural_sparsity,
                }
                for r in self.rows
            ],
            "total": self.total,
            "nonzero": self.nonzero,
            "sparsity": self.sparsity,
            "natural_sparsity": self.natural_sparsity,
            "eps": self.eps,
            "denominator": self.denominator,
        }


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _kind(module: nn.Module) -> str:
    """The name of the nearest public ``torch.nn`` layer class of ``module`` (``Linear`` for a subclass such
    as attention's ``NonDynamicallyQuantizableLinear``), else its own class name."""
    for cls in type(module).__mro__:
        if cls is nn.Module:
            break
        if getattr(nn, cls.__name__, None) is cls:
            return cls.__name__
    return type(module).__name__


def _describe(model: nn.Module, names: list[str]) -> str:
    """Say which kind of tensors ``names`` are, e.g. ``"Conv2d and Linear weights, biases excluded"``."""
    modules = dict(unwrap(model).named_modules())
    types: list[str] = []
    attrs: set[str] = set()
    for name in names:
        owner, _, attr = name.rpartition(".")
        module = modules.get(owner)
        if module is None:
            return f"{len(names)} selected tensors"
        kind = _kind(module)
        if kind not in types:
            types.append(kind)
        attr = attr.removesuffix("_orig")  # a layer reparametrized by torch.nn.utils.prune
        attrs.add("weight" if attr.endswith("weight") else "bias" if attr.endswith("bias") else attr)
    if attrs == {"weight"}:
        return f"{_join(types)} weights, biases excluded"
    if attrs == {"weight", "bias"}:
        return f"{_join(types)} weights and biases"
    return f"{_join(types)} parameters ({', '.join(sorted(attrs))})"


def sparsity_table(
    model: nn.Module, params: Mapping[str, torch.Tensor] | None = None, eps: float = 1e-3, label: str | None = None
) -> SparsityTable:
    """Measure exact-zero and near-zero counts of ``params``.

    Args:
        model: the network (used for the default selection and to describe the denominator).
        params: ``{name: tensor}``; default :func:`~sparsehalo.pruning.prunable_parameters`.
        eps: threshold for ``near_zero``.
        label: what the entries are called in the denominator (default "prunable weights" for the
            default selection, else "selected entries").

    Raises:
        SparsehaloError: if the selection is empty.
    """
    default = params is None
    if params is None:
        params = prunable_parameters(model)
    if not params:
        raise SparsehaloError("no parameters selected for the sparsity table")
    check_materialized(params, "sparsity table")
    rows = []
    with torch.no_grad():
        for name, t in effective(model, params).items():
            # One host transfer per tensor for both counts.
            nonzero, near = torch.stack([t.count_nonzero(), (t.abs() <= eps).sum()]).tolist()
            rows.append(LayerSparsity(name, t.numel(), int(nonzero), int(near), tuple(t.shape)))
    total = sum(r.total for r in rows)
    kind = label or ("prunable weights" if default else "selected entries")
    return SparsityTable(rows, eps, f"{total:,} {kind} ({_describe(model, list(params))})")


def natural_sparsity(params: Iterable[torch.Tensor] | Mapping[str, torch.Tensor], eps: float = 1e-3) -> float:
    """Fraction of entries with ``|w| <= eps`` over all given tensors.

    Raises:
        SparsehaloError: if there are no entries.
    """
    tensors = list(params.values() if isinstance(params, Mapping) else params)
    total = sum(t.numel() for t in tensors)
    if not total:
        raise SparsehaloError("natural_sparsity got no entries")
    with torch.no_grad():
        near = sum(int((t.abs() <= eps).sum()) for t in tensors)
    return near / total
