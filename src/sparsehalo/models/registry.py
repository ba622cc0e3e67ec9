"""The model registry: constructors by name (``model.name`` in configs), or a user's factory by import
path (``"package.module:factory"``, see :mod:`sparsehalo.imports`)."""

from __future__ import annotations

from typing import Callable

from torch import nn

from .. import imports
from ..errors import ConfigError
from ..registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
register = MODELS.register


def names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODELS.names())


def build(name: str, optional: dict | None = None, **kwargs) -> nn.Module:
    """Build model ``name`` with constructor keyword arguments ``kwargs``.

    Args:
        name: a registered name, or an import path ``"package.module:factory"`` / ``"file.py:factory"``.
        optional: keywords passed only where the constructor takes them and ``kwargs`` lacks them
            (``num_classes`` from the dataset).
        kwargs: the constructor's keyword arguments.

    Raises:
        ConfigError: for an unknown name, a module or attribute not found, a keyword the constructor
            does not take, or a factory that returns something other than an ``nn.Module``.
    """
    if imports.is_import_path(name):
        model = imports.call(name, "model.name", kwargs, optional or {})
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model.name {name!r} returned {type(model).__name__}, not a torch.nn.Module")
        return model
    ctor = MODELS.get(name)
    kwargs = {**(optional or {}), **kwargs}
    try:
        return ctor(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
