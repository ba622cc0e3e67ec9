"""The model registry: constructors by name (``model.name`` in configs)."""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import ConfigError
from ..registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
register = MODELS.register


def names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODELS.names())


def build(name: str, **kwargs) -> nn.Module:
    """Build model ``name`` with constructor keyword arguments ``kwargs``.

    Raises:
        ConfigError: for an unknown name or a keyword the constructor does not take.
    """
    ctor = MODELS.get(name)
    try:
        return ctor(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
