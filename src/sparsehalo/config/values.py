"""Reading typed values: a dataclass from a table, each value checked against its annotation.

:func:`from_section` reads every config section and every ``Options`` (the methods', the
penalties'), so unknown keys and wrong types give the same one-line errors everywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import field, fields
from typing import Any

from ..errors import ConfigError


def help_field(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING,
               check: Any = None) -> Any:
    """A config field with its help text (``factory`` for mutable defaults) and its range check
    (:mod:`.checks`: ``check(value, key)`` raises a one-line error; run by :func:`.checks.check_fields`)."""
    meta = {"help": help} if check is None else {"help": help, "check": check}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def check_value(value: Any, tp: Any, key: str) -> Any:
    """Validate (and lightly coerce: an int where a float is due) ``value`` against the annotation ``tp``.

    Raises:
        ConfigError: naming ``key``, for a value of another type.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return check_value(value, a, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} needs a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [check_value(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} needs a table, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} needs true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r} needs an integer, got {value!r}")
        if not -(2**63) <= value < 2**63:  # TOML's integers are 64-bit; no setting needs more
            raise ConfigError(f"config key {key!r}: {str(value)[:20]}... is too large for an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r} needs a number, got {value!r}")
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(f"config key {key!r}: {str(value)[:20]}... is too large for a number") from None
        return value + 0.0  # -0.0 -> 0.0: equal configs get equal hashes
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r} needs a string, got {value!r}")
        return value
    raise ConfigError(f"config key {key!r}: unsupported type {tp}")


def from_section(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from the table ``data``, rejecting unknown keys and wrong types.

    Used for every config section and for the methods' ``Options``.

    Args:
        cls: a dataclass; a field whose type is a dataclass is read recursively (through the type's
            own ``from_dict(value, prefix)`` where it has one).
        data: the table.
        prefix: the keys' prefix in messages (``"method.options."``).

    Raises:
        ConfigError: for an unknown key (with the closest known one), or a value of the wrong type.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or 'root'!r} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else f"; known: {', '.join(known)}"
            raise ConfigError(f"unknown config key {prefix + key!r}{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            reader = getattr(tp, "from_dict", None)
            kwargs[key] = reader(value, f"{prefix}{key}.") if reader else from_section(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = check_value(value, tp, prefix + key)
    return cls(**kwargs)


#: the name :mod:`sparsehalo.methods.base` uses (the same function)
