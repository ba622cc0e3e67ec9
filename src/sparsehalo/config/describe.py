"""The reference of every config key: type, default and help, generated from the fields."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import fields
from typing import Any

from .. import penalties
from .penalty import PenaltyConfig
from .sections import Config


def _type_name(tp: Any) -> str:
    """``float``, ``list[str]``, ``float | None``, ``table`` for an annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    if tp is dict or origin is dict:
        return "table"
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _penalty_rows(penalty: str | None) -> list[tuple[str, str, Any, str]]:
    """One row per penalty setting; a key several penalties take is one row naming each one's default."""
    by_key: dict[str, list[tuple[str, dataclasses.Field, str]]] = {}
    for name in penalties.PENALTIES if penalty is None else [penalty]:
        hints = typing.get_type_hints(penalties.PENALTIES.get(name).Options)
        for f in penalties.PENALTIES.get(name).option_fields():
            by_key.setdefault(f.name, []).append((name, f, _type_name(hints[f.name])))
    rows = []
    for key, takers in by_key.items():
        defaults = [_default(f) for _, f, _ in takers]
        same = all(d == defaults[0] for d in defaults)
        help_ = takers[0][1].metadata["help"]
        if penalty is None and same:
            help_ += f" (penalties: {', '.join(n for n, _, _ in takers)})"
        elif penalty is None:
            help_ += f" (default by penalty: {', '.join(f'{n} {_default(f)!r}' for n, f, _ in takers)})"
        type_name = " | ".join(dict.fromkeys(t for _, _, t in takers))
        rows.append((f"penalty.{key}", type_name, defaults[0] if same else None, help_))
    return rows


def describe(penalty: str | None = None) -> list[tuple[str, str, Any, str]]:
    """Every config key with its type, default and help, in file order.

    The ``penalty`` section lists the settings of every penalty (each row naming the penalties that
    take the key and their defaults; the default column is None where they differ), or only those
    of ``penalty`` when it is given.

    Args:
        penalty: list only this penalty's settings (a registered name).

    Returns:
        ``[(key, type name, default, help)]``, e.g. ``("train.epochs", "int", 30, "epochs in all ...")``.

    Raises:
        ConfigError: for an unknown ``penalty``.
    """
    hints = typing.get_type_hints(Config)
    rows = []
    for f in fields(Config):
        section = hints[f.name]
        if not dataclasses.is_dataclass(section):
            rows.append((f.name, _type_name(section), _default(f), f.metadata["help"]))
            continue
        section_hints = typing.get_type_hints(section)
        for sf in fields(section):
            if section is PenaltyConfig and sf.name == "settings":
                rows += _penalty_rows(penalty)
            else:
                rows.append((f"{f.name}.{sf.name}", _type_name(section_hints[sf.name]), _default(sf), sf.metadata["help"]))
    return rows
