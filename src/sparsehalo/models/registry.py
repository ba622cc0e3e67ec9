"""The model registry (one dict, no if/elif on names)."""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import ConfigError

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable:
    """Class/function decorator adding a model constructor under ``name``."""

    def deco(fn):
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = fn
        return fn

    return deco


def names() -> list[str]:
    return sorted(MODELS)


def build(name: str, **kwargs) -> nn.Module:
    """Build model ``name`` with constructor keyword arguments ``kwargs``.

    Raises:
        ConfigError: for an unknown name or a keyword the constructor does not take.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(names())}")
    try:
        return MODELS[name](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
