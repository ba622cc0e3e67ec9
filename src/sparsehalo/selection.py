"""Which parameters a penalty or a pruner acts on: one selection, shared by penalties, pruning, tables, export.

A selection is a ``{name: parameter}`` dict.  By default it holds every *weight matrix or kernel*:

- the ``weight`` of Linear-like modules (``isinstance(m, nn.Linear)``, so subclasses such as
  ``MultiheadAttention.out_proj`` count) and of Conv-like modules (``Conv1d/2d/3d``, transposed);
- the projections of ``nn.MultiheadAttention`` (``in_proj_weight`` or ``q/k/v_proj_weight``);
- biases only with ``biases=True``; embeddings (``nn.Embedding``/``EmbeddingBag``) only with
  ``embeddings=True``; norms never.

``types`` restricts the candidate modules by ``isinstance`` (classes or ``torch.nn`` class names).
Then ``include`` / ``exclude`` ``fnmatch`` patterns filter the full names.

Names are those of the *plain* model: wrappers (``torch.compile``'s ``_orig_mod``, DDP's / DataParallel's
``module``) are looked through (:func:`unwrap`), so masks, tables, checkpoints and exports of a wrapped
model fit the plain one.  A parameter shared by several modules (tied weights) is selected once, under
its first name (:func:`aliases` lists the others).  A layer reparametrized by ``torch.nn.utils.prune``
contributes ``weight_orig``; :func:`existing_masks` gives its mask and :func:`effective` its masked value.
"""

from __future__ import annotations

import warnings
from fnmatch import fnmatchcase
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from .errors import ConfigError, SparsehaloError

#: the config's default spelling of ``types``: it means the default selection (every weight matrix or
#: kernel), so that the hashes of runs made before the selection went by ``isinstance`` stay the same.
DEFAULT_TYPES = ("Conv2d", "Linear")
#: attribute names of ``nn.MultiheadAttention``'s projection weights
ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
ATTENTION_BIASES = ("in_proj_bias",)
#: tensors of dim >= 2 with at least this many entries that the selection leaves out are warned about
LARGE = 1024
WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside ``torch.compile`` / ``DistributedDataParallel`` / ``DataParallel`` wrappers."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    while True:
        inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if isinstance(inner, nn.Module):
            model = inner
        elif isinstance(model, (DistributedDataParallel, DataParallel)):
            model = model.module
        else:
            return model


def strip_wrapper_prefixes(state: Mapping[str, object]) -> dict[str, object]:
    """``state`` with the ``_orig_mod.`` / ``module.`` prefixes a wrapper adds removed from every key.

    A prefix is removed only when *every* key has it (so a submodule really named ``module`` stays).
    """
    out = dict(state)
    changed = True
    while changed and out:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    return out


def _classes(types: Iterable[str | type]) -> tuple[type, ...]:
    out = []
    for t in types:
        cls = getattr(nn, t, None) if isinstance(t, str) else t
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ConfigError(f"unknown module type {t!r} in a parameter selection (use torch.nn class names, e.g. Linear)")
        out.append(cls)
    return tuple(out)


def _is_default(types) -> bool:
    return types is None or types == "auto" or tuple(types) == DEFAULT_TYPES or tuple(types) == ("auto",)


def _candidates(module: nn.Module, biases: bool, embeddings: bool) -> list[str]:
    """Attribute names of ``module``'s own parameters that the default selection takes."""
    names: list[str] = []
    if isinstance(module, (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)):
        names.append("weight")
    elif isinstance(module, nn.MultiheadAttention):
        names += list(ATTENTION_WEIGHTS)
        if biases:
            names += list(ATTENTION_BIASES)
    elif embeddings and isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        names.append("weight")
    if biases and names and "weight" in names:
        names.append("bias")
    # torch.nn.utils.prune moves the parameter to <attr>_orig and makes <attr> a plain tensor
    return [f"{n}_orig" if f"{n}_orig" in module._parameters else n for n in names]


def select_parameters(
    model: nn.Module,
    types: Sequence[str | type] | None = None,
    biases: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    embeddings: bool = False,
) -> dict[str, nn.Parameter]:
    """The selected parameters of ``model`` (wrappers looked through), by first name, each tensor once.

    Args:
        model: the network (plain, compiled or DDP-wrapped).
        types: restrict the candidate modules to these classes (``isinstance``; classes or ``torch.nn``
            names); None (or the config default ``("Conv2d", "Linear")``) keeps every weight matrix or kernel.
        biases: also select the biases of the selected modules.
        include: if non-empty, keep only names matching one of these ``fnmatch`` patterns.
        exclude: drop names matching any of these patterns.
        embeddings: also select embedding tables.

    Returns:
        ``{name: parameter}`` in ``named_modules`` order; empty selections are allowed (the caller decides).
    """
    model = unwrap(model)
    wanted = None if _is_default(types) else _classes(types)
    first = {id(p): n for n, p in model.named_parameters()}  # first name of every (possibly shared) tensor
    chosen: dict[str, nn.Parameter] = {}
    for module in model.modules():
        if wanted is not None and not isinstance(module, wanted):
            continue
        attrs = _candidates(module, biases, embeddings) if wanted is None else _typed(module, biases)
        for attr in attrs:
            p = module._parameters.get(attr)
            if not isinstance(p, nn.Parameter) or id(p) not in first:
                continue
            name = first[id(p)]
            if include and not any(fnmatchcase(name, pat) for pat in include):
                continue
            if any(fnmatchcase(name, pat) for pat in exclude):
                continue
            chosen.setdefault(name, p)
    return chosen


def _typed(module: nn.Module, biases: bool) -> list[str]:
    """The weight (and bias) of a module chosen by an explicit ``types`` list."""
    if isinstance(module, nn.MultiheadAttention):
        return list(ATTENTION_WEIGHTS) + (list(ATTENTION_BIASES) if biases else [])
    names = ["weight", "bias"] if biases else ["weight"]
    return [f"{n}_orig" if f"{n}_orig" in module._parameters else n for n in names]


def prunable_parameters(
    model: nn.Module,
    types: Sequence[str | type] | None = None,
    biases: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    embeddings: bool = False,
) -> dict[str, nn.Parameter]:
    """The parameters pruning, tables and export act on: :func:`select_parameters` (same arguments)."""
    return select_parameters(model, types, biases, include, exclude, embeddings)


def aliases(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """``{first name: (other names, ...)}`` of every parameter registered under more than one name."""
    model = unwrap(model)
    names: dict[int, list[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(n)
    return {ns[0]: tuple(ns[1:]) for ns in names.values() if len(ns) > 1}


def existing_masks(model: nn.Module, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """``{name: bool mask}`` for the selected ``<attr>_orig`` tensors of layers pruned by ``torch.nn.utils.prune``."""
    model = unwrap(model)
    out = {}
    for name in names:
        if name.endswith("_orig"):
            owner, _, attr = name.rpartition(".")
            module = model.get_submodule(owner) if owner else model
            buf = module._buffers.get(attr[: -len("_orig")] + "_mask")
            if buf is not None:
                out[name] = buf.detach() != 0
    return out


def effective(model: nn.Module, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The values the model computes with: ``weight_orig * weight_mask`` for reparametrized layers."""
    masks = existing_masks(model, params)
    return {n: (p.detach() * masks[n] if n in masks else p) for n, p in params.items()}


def check_materialized(params: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise a clear error for tensors on the ``meta`` device (they have a shape but no values)."""
    meta = [n for n, p in params.items() if p.is_meta]
    if meta:
        more = f" (and {len(meta) - 1} more)" if len(meta) > 1 else ""
        raise SparsehaloError(f"{what}: {meta[0]}{more} is on the meta device and has no values; materialize the "
                              "model first (model.to_empty(device=...), then load or initialize its weights)")


def summarize(model: nn.Module, chosen: Mapping[str, torch.Tensor], what: str = "penalized") -> str:
    """One line: how many tensors and entries are ``what``, how many are left out, and of which kind.

    Warns (``UserWarning``) naming every floating-point tensor of dim >= 2 with at least :data:`LARGE`
    entries that was left out, since that is most often a weight the user expected to be included.
    """
    model = unwrap(model)
    ids = {id(p) for p in chosen.values()}
    left = [(n, p) for n, p in model.named_parameters() if id(p) not in ids]
    n_in = sum(p.numel() for p in chosen.values())
    n_out = sum(p.numel() for _, p in left)
    large = [n for n, p in left if p.dim() >= 2 and p.is_floating_point() and p.numel() >= LARGE]
    if large:
        warnings.warn(f"left out of the {what} selection although large tensors of dim >= 2: {', '.join(large)} "
                      "(select them with types/include, or embeddings=True for embedding tables)", stacklevel=3)
    tied = sum(1 for n in chosen if n in aliases(model))
    return (f"{what}: {len(chosen)} tensors, {n_in:,} entries"
            + (f" ({tied} tied, counted once)" if tied else "")
            + f"; left out: {len(left)} tensors, {n_out:,} entries")


def check_partition(model: nn.Module, groups: Mapping[str, Iterable[torch.Tensor]]) -> None:
    """Assert that ``groups`` cover every parameter of ``model`` exactly once (tied tensors count once).

    Args:
        model: the network.
        groups: e.g. ``{"penalized": [...], "not penalized": [...]}``.

    Raises:
        AssertionError: naming a parameter that is in no group, in two groups, or not in the model.
    """
    names = {id(p): n for n, p in unwrap(model).named_parameters()}
    seen: dict[int, str] = {}
    for group, params in groups.items():
        for p in params:
            if id(p) not in names:
                raise AssertionError(f"group {group!r} holds a tensor that is not a parameter of the model")
            if id(p) in seen:
                raise AssertionError(f"parameter {names[id(p)]} is in both {seen[id(p)]!r} and {group!r}")
            seen[id(p)] = group
    left = [n for i, n in names.items() if i not in seen]
    if left:
        raise AssertionError(f"parameter(s) in no group: {', '.join(left)}")
