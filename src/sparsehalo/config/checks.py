"""Range checks of config values, declared beside each field (``help_field(..., check=...)``).

A check is a callable ``check(value, key)`` that raises :class:`~sparsehalo.errors.ConfigError` naming
``key``; :func:`check_fields` walks a config (every section, every field) and runs each field's check,
so a wrong value fails when the config is read, before any data is loaded or anything is written.
Names (of models, penalties, methods, ...) are not checked here but by their registries
(:func:`sparsehalo.training.validate.validate`).

The bounds are generous: they reject what cannot be meant (a negative learning rate, ``nan``, a
sparsity of 1.5, 0 epochs, a million prune levels), never an unusual but valid choice.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Iterable

from ..errors import ConfigError

Check = Callable[[Any, str], None]

#: the most entries a list setting may hold (prune levels, milestones, module types, patterns)
MAX_ITEMS = 1000
#: run names: one path component of letters, digits, ``.``, ``_``, ``-`` (never ``..`` or hidden)
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")


def _number(value: Any, key: str) -> float:
    if isinstance(value, int):
        return value  # exact (an int of any size compares with the bounds without overflow)
    if not math.isfinite(value):
        raise ConfigError(f"config key {key!r} must be a finite number, got {value!r}")
    return value


def between(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    """A finite number in the interval (``None``: unbounded on that side; ``*_open``: the end excluded)."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    span = f"{left}{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}{right}"

    def check(value: Any, key: str) -> None:
        if value is None:
            return
        v = _number(value, key)
        if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and (v > hi or (hi_open and v == hi))):
            raise ConfigError(f"config key {key!r} must be in {span}, got {value!r}")

    return check


def one_of(*choices: str) -> Check:
    def check(value: Any, key: str) -> None:
        if value not in choices:
            raise ConfigError(f"config key {key!r} must be one of {', '.join(choices)}, got {value!r}")

    return check


def items(inner: Check | None = None, most: int = MAX_ITEMS) -> Check:
    """A list of at most ``most`` entries, each passing ``inner``."""

    def check(value: Any, key: str) -> None:
        if len(value) > most:
            raise ConfigError(f"config key {key!r} holds {len(value)} entries; at most {most}")
        for i, v in enumerate(value):
            if inner is not None:
                inner(v, f"{key}[{i}]")

    return check


def run_name(value: Any, key: str) -> None:
    """One safe path component: a run directory ``<out>/<name>-<hash>`` never leaves ``--out``."""
    if not NAME.fullmatch(value):
        raise ConfigError(f"config key {key!r} must be 1-200 letters, digits, '.', '_' or '-', not starting with "
                          f"'.' or '-' (it names a directory inside --out), got {value!r}")


def finite_values(value: Any, key: str) -> None:
    """Every number in a table (nested tables and lists included) is finite, and every value is one
    JSON can hold (TOML dates and times are refused: config.json and the hash could not be written)."""
    for sub, v in _leaves(value, key):
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"config key {sub!r} must be a finite number, got {v!r}")
        if not (v is None or isinstance(v, (bool, int, float, str))):
            raise ConfigError(f"config key {sub!r}: a {type(v).__name__} value is not allowed (numbers, strings, booleans, lists, tables)")


def _leaves(value: Any, key: str) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{key}[{i}]")
    else:
        yield key, value


def check_fields(obj: Any, prefix: str = "") -> None:
    """Run the ``check`` of every field of the dataclass ``obj`` and, recursively, of its sections.

    Raises:
        ConfigError: naming the first key whose value is out of its range.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_fields(value, f"{prefix}{f.name}.")
            continue
        check = f.metadata.get("check")
        if check is not None:
            check(value, prefix + f.name)
