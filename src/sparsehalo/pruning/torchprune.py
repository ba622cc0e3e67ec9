"""Interop with ``torch.nn.utils.prune``: a :class:`~sparsehalo.pruning.Mask` as torch's reparametrization, and back.

torch's pruning moves a parameter ``weight`` to ``weight_orig``, adds a ``weight_mask`` buffer and
recomputes ``weight = weight_orig * weight_mask`` before every forward.  Our masks are keyed by the
names of the plain model (``layer.weight``, never ``layer.weight_orig``; ``module.`` / ``_orig_mod.``
wrappers looked through), so a mask read from torch's buffers fits the model after ``prune.remove``
and a model never pruned by torch alike.

Tied tensors: one tensor registered under several names (``dec.weight = enc.weight``) gets torch's
reparametrization in *every* module that uses it, with the same mask, since torch masks per module and
an unmasked use would compute with the pruned entries.  Reading back, such a tensor is one mask under
its first name with the others as ``aliases``; a tensor masked in one use and not (or differently)
in another cannot be one mask and is refused.

This module builds plain ``{name: bool tensor}`` dicts; :class:`~sparsehalo.pruning.Mask` wraps them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..errors import CheckpointError, SparsehaloError
from ..selection import strip_wrapper_prefixes, unwrap

ORIG, MASK = "_orig", "_mask"


def _hooked(module: nn.Module) -> set[str]:
    """Names of the tensors of ``module`` that torch's pruning reparametrizes (its forward pre-hooks)."""
    return {h._tensor_name for h in module._forward_pre_hooks.values() if isinstance(h, torch_prune.BasePruningMethod)}


def _split(name: str) -> tuple[str, str]:
    owner, _, attr = name.rpartition(".")
    return owner, attr


def _plain_name(model: nn.Module, full: str) -> str:
    """``owner.attr`` for ``owner.attr_orig`` of a module torch reparametrizes, else ``full``."""
    owner, attr = _split(full)
    if attr.endswith(ORIG) and attr[: -len(ORIG)] in _hooked(model.get_submodule(owner)):
        return f"{owner}.{attr[: -len(ORIG)]}" if owner else attr[: -len(ORIG)]
    return full


def _uses(model: nn.Module) -> dict[int, list[str]]:
    """``{id(parameter): [every full name it is registered under]}`` in ``named_parameters`` order."""
    out: dict[int, list[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        out.setdefault(id(p), []).append(n)
    return out


def _resolve(params: Mapping[str, nn.Parameter], name: str, uses: Mapping[int, list[str]]) -> list[str]:
    """Every full name (``_orig`` spelling where torch pruned) of the tensor a mask key ``name`` names."""
    plain = name if name in params or f"{name}{ORIG}" in params else next(iter(strip_wrapper_prefixes({name: None})))
    for candidate in (plain, f"{plain}{ORIG}"):
        if candidate in params:
            return uses[id(params[candidate])]
    raise CheckpointError(f"mask names parameter(s) the model lacks: {name}")


def to_torch_prune(masks: Mapping[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Reparametrize every masked tensor of ``model`` with ``torch.nn.utils.prune.custom_from_mask``.

    Every module using a tied tensor is pruned with the same mask.  A tensor torch pruned before keeps
    its mask too (torch multiplies the masks).  Returns the plain names pruned, one per module use.

    Raises:
        CheckpointError: a mask names no parameter of ``model`` or has another shape.
    """
    plain_model = unwrap(model)
    uses = _uses(plain_model)
    params = dict(plain_model.named_parameters(remove_duplicate=False))
    targets, seen = [], set()
    for name, m in masks.items():
        for full in _resolve(params, name, uses):
            owner, attr = _split(_plain_name(plain_model, full))
            module = plain_model.get_submodule(owner)
            if (id(module), attr) in seen:  # one module registered under two names: pruned once
                continue
            seen.add((id(module), attr))
            tensor = getattr(module, attr)
            if tuple(tensor.shape) != tuple(m.shape):
                raise CheckpointError(f"mask for {name} has shape {tuple(m.shape)} but the parameter has shape {tuple(tensor.shape)}")
            targets.append((module, attr, m.to(tensor.device), f"{owner}.{attr}" if owner else attr))
    for module, attr, m, _ in targets:  # every name checked before anything is changed
        torch_prune.custom_from_mask(module, attr, m)
    return [t[3] for t in targets]


def from_torch_prune(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, tuple[str, ...]]]:
    """``({name: bool keep-mask}, aliases)`` read from the ``<attr>_mask`` buffers of ``model``'s pruned modules.

    Names are those of the plain model with ``_orig`` removed; a tied tensor is listed once, under
    its first name, with its other names in ``aliases``.

    Raises:
        SparsehaloError: a tied tensor masked in one of its uses but not, or differently, in another.
    """
    plain_model = unwrap(model)
    masked: dict[str, torch.Tensor] = {}  # plain name -> mask, for every pruned use
    for owner, module in plain_model.named_modules(remove_duplicate=False):
        for attr in sorted(_hooked(module)):
            buf = module._buffers.get(f"{attr}{MASK}")
            if buf is None or f"{attr}{ORIG}" not in module._parameters:
                continue  # a hook without its tensors (not made by torch's prune): nothing to read
            masked[f"{owner}.{attr}" if owner else attr] = buf.detach() != 0
    masks: dict[str, torch.Tensor] = {}
    aliases: dict[str, tuple[str, ...]] = {}
    for names in _uses(plain_model).values():
        plain = [_plain_name(plain_model, n) for n in names]
        pruned = [n for n in plain if n in masked]
        if not pruned:
            continue
        if len(pruned) < len(plain):
            bare = next(n for n in plain if n not in masked)
            raise SparsehaloError(f"tied tensor {pruned[0]} is pruned by torch.nn.utils.prune there but not as {bare}, so the "
                                  "model computes with both; prune every use of it (Mask.to_torch_prune does)")
        first = masked[pruned[0]]
        for other in pruned[1:]:
            if not torch.equal(first, masked[other].to(first.device)):
                raise SparsehaloError(f"tied tensor {pruned[0]} has different torch.nn.utils.prune masks as {pruned[0]} and as "
                                      f"{other}; one tensor can have only one mask")
        masks[pruned[0]] = first
        if len(pruned) > 1:
            aliases[pruned[0]] = tuple(pruned[1:])
    return masks, aliases
