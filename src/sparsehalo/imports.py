"""A user's own objects named by import path: ``"package.module:factory"`` or ``"path/to/file.py:factory"``.

Configs name registered things by their registry name and a user's own model or data by an import
path (``model.name``, ``data.name``).  The module part is imported with the current directory first on
``sys.path`` (as ``python -m`` would see it), or loaded from a ``.py`` file (relative to the current
directory); the part after ``:`` is an attribute path inside it (``"pkg.mod:Class.build"``).  What the
factory is handed comes from the config (``model.kwargs``, ``data.kwargs``) plus the keywords
:func:`call` offers it only where its signature takes them.

Naming code in a config runs that code: configs are trusted input.  Files written by this package
(checkpoints, sparse exports) are not, so nothing read from one is ever resolved here.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ConfigError


def is_import_path(name: str) -> bool:
    """Whether ``name`` names a user's factory (``"module:attr"``) rather than a registry entry."""
    return isinstance(name, str) and ":" in name


def _module(spec: str, what: str):
    if spec.endswith(".py"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError(f"{what}: file {spec!r} not found (relative paths start at {os.getcwd()})")
        name = "sparsehalo_user_" + "".join(c if c.isalnum() else "_" for c in str(path.resolve()))
        if name in sys.modules:
            return sys.modules[name]
        loader_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and (spec == exc.name or spec.startswith(exc.name + ".")):
            raise ConfigError(f"{what}: no module named {spec!r} (looked on sys.path and in {cwd})") from None
        raise ConfigError(f"{what}: importing {spec!r} failed: {exc}") from None
    finally:
        if added:
            sys.path.remove(cwd)


def resolve(path: str, what: str) -> Any:
    """The object ``"module:attr.attr"`` names.

    Args:
        path: the import path.
        what: the config key, for messages (``"model.name"``).

    Raises:
        ConfigError: for a malformed path, a module that is not found or fails to import (its first
            line), or a missing attribute.
    """
    spec, _, attrs = path.partition(":")
    if not spec or not attrs or ":" in attrs:
        raise ConfigError(f"{what} {path!r}: an import path is 'package.module:factory' or 'file.py:factory'")
    try:
        obj = _module(spec, what)
    except ConfigError:
        raise
    except Exception as exc:  # the user's module raised while importing
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"{what}: importing {spec!r} raised {type(exc).__name__}: {first}") from exc
    for part in attrs.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{what} {path!r}: {spec!r} has no attribute {attrs!r}") from None
    return obj


def accepts(factory: Callable, keyword: str) -> bool:
    """Whether ``factory`` takes ``keyword`` (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: offer nothing optional
        return False
    return any(p.kind is p.VAR_KEYWORD or (p.name == keyword and p.kind is not p.POSITIONAL_ONLY) for p in params)


def call(path: str, what: str, kwargs: Mapping[str, Any], offered: Mapping[str, Any] = ()) -> Any:
    """``resolve(path)(**kwargs, **offered)``, each offered keyword passed only where the factory takes it
    and ``kwargs`` does not already set it.

    Raises:
        ConfigError: from :func:`resolve`, for an object that is not callable, or for keywords its
            signature does not take.  The factory's own errors propagate unchanged.
    """
    factory = resolve(path, what)
    if not callable(factory):
        raise ConfigError(f"{what} {path!r} is not callable (got {type(factory).__name__})")
    args = dict(kwargs)
    for key, value in dict(offered).items():
        if key not in args and accepts(factory, key):
            args[key] = value
    try:
        inspect.signature(factory).bind(**args)
    except TypeError as exc:
        raise ConfigError(f"{what} {path!r}: {exc} (its keywords come from the config)") from None
    except ValueError:  # no signature to check against: the call itself will tell
        pass
    return factory(**args)
