"""The ``penalty`` section: flat in files, the chosen penalty's own settings checked against its ``Options``.

In a file the section reads ``[penalty] name = "halo"  xi = 1e-4  psi = 1e-4  types = ["Linear"]``:
the selection (``types``, ``biases``, ``include``, ``exclude``) and the scales' optimizer settings
(``scale_lr``, ``scale_momentum``) are the section's own keys; every other key is a setting of the
penalty ``name`` and must be a field of that penalty's ``Options`` (:mod:`sparsehalo.penalties`).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, fields
from typing import Any, Mapping

from .. import penalties
from ..errors import ConfigError
from .checks import between, finite_values, items
from .values import check_value, from_section, help_field as _field


#: The penalty settings every ``config.json`` has carried, ``null`` when unset, in this order, since
#: before settings were per penalty.  They are always written (so old files stay the same); any other
#: setting (SCAD's ``a``) is written only when given, so no old hash changes.
FLAT_PENALTY_KEYS = ("xi", "psi", "lambda_init", "hyper", "budget", "eps", "scale_weight_decay")


@dataclass
class PenaltyConfig:
    """Which penalty, its own settings, which parameters it acts on, and how its scales are optimized.

    ``settings`` holds only the settings that were given, by their names in the penalty's
    ``Options`` (MCP's ``gamma`` also read as its old name ``psi``); the others take the penalty's
    own defaults.  In files and in :meth:`to_dict` they sit flat beside ``name``.
    """

    name: str = _field("none", "the penalty: a name of the penalty registry (sparsehalo.penalties.PENALTIES); "
                       "its own settings sit beside it in this section")
    settings: dict = _field(help="the penalty's own settings (flat in files)", factory=dict, check=finite_values)
    scale_lr: float | None = _field(None, "learning rate of the penalty's trainable scales (unset: the network's)",
                                    check=between(0, None, lo_open=True))
    scale_momentum: float | None = _field(None, "momentum of the penalty's trainable scales (unset: the network's)",
                                          check=between(0, 1, hi_open=True))
    types: list[str] = _field(help="module types whose parameters are penalized", factory=lambda: ["Conv2d", "Linear"], check=items())
    biases: bool = _field(False, "penalize biases as well as weights")
    include: list[str] = _field(help="fnmatch patterns: if given, only matching parameter names are penalized", factory=list,
                                check=items())
    exclude: list[str] = _field(help="fnmatch patterns of parameter names left alone", factory=list, check=items())

    def __post_init__(self):
        self.settings = penalty_settings(self.name, self.settings)

    def options(self) -> dict[str, Any]:
        """Keyword arguments for the penalty class (only the settings that were given)."""
        return dict(self.settings)

    def selection(self) -> dict[str, Any]:
        """Keyword arguments choosing the parameters (:meth:`~sparsehalo.penalties.Penalty.for_model`)."""
        return {"types": tuple(self.types), "biases": self.biases, "include": tuple(self.include), "exclude": tuple(self.exclude)}

    def to_dict(self) -> dict[str, Any]:
        """The flat section as files and ``config.json`` hold it (settings under their stored keys)."""
        stored = {_stored_key(self.name, k): v for k, v in self.settings.items()}
        out: dict[str, Any] = {"name": self.name}
        out.update({k: stored.pop(k, None) for k in FLAT_PENALTY_KEYS})
        out.update(stored)
        out.update(scale_lr=self.scale_lr, scale_momentum=self.scale_momentum, types=list(self.types),
                   biases=self.biases, include=list(self.include), exclude=list(self.exclude))
        return out

    @classmethod
    def from_dict(cls, data: Any, prefix: str = "penalty.") -> "PenaltyConfig":
        """Read the flat section: the section's own keys, and the penalty's settings beside them."""
        if not isinstance(data, dict):
            raise ConfigError(f"config section {prefix.rstrip('.')!r} must be a table, got {data!r}")
        own = {f.name for f in fields(cls)} - {"settings"}
        base = from_section(cls, {k: v for k, v in data.items() if k in own}, prefix)
        return dataclasses.replace(base, settings={k: v for k, v in data.items() if k not in own})


def _setting_fields(name: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in penalties.PENALTIES.get(name).option_fields()}


def _stored_key(penalty: str, key: str) -> str:
    return _setting_fields(penalty)[key].metadata.get("stored_as", key)


def penalty_settings(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Check the settings ``given`` for penalty ``name`` against its ``Options``.

    A ``null`` value means "not given" (``config.json`` writes unset settings so).

    Returns:
        ``{setting: value}`` of the given settings, by their names in ``Options``, values checked
        (and ints read as floats where a float is due).

    Raises:
        ConfigError: for an unknown penalty, a setting it does not take (naming the penalty and the
            settings it takes), a setting given under both its names with different values, or a
            value of the wrong type.
    """
    cls = penalties.PENALTIES.get(name)
    known = _setting_fields(name)
    old_names = {f.metadata["stored_as"]: k for k, f in known.items() if "stored_as" in f.metadata}
    hints = typing.get_type_hints(cls.Options)
    out: dict[str, Any] = {}
    for key, value in given.items():
        setting = key if key in known else old_names.get(key)
        if setting is None:
            if value is None and key in FLAT_PENALTY_KEYS:
                continue
            _unknown_setting(name, key, value)
        if value is None:
            continue
        value = check_value(value, hints[setting], f"penalty.{key}")
        if setting in out and out[setting] != value:
            old = known[setting].metadata["stored_as"]
            raise ConfigError(f"penalty {name!r}: {setting!r} and its old name {old!r} are both given, with different values; give one")
        out[setting] = value
    return out


def _unknown_setting(name: str, key: str, value: Any) -> typing.NoReturn:
    """Raise for ``key``, which penalty ``name`` does not take: a wrong value first, then which
    penalties take the key, or the closest key this one does take."""
    takers = [n for n in penalties.PENALTIES if n != name and key in _setting_fields(n)]
    takes = ", ".join(_setting_fields(name)) or "no settings"
    if takers:
        check_value(value, typing.get_type_hints(penalties.PENALTIES.get(takers[0]).Options)[key], f"penalty.{key}")
        raise ConfigError(f"penalty {name!r} has no setting {key!r} (a setting of {', '.join(takers)}); {name} takes: {takes}")
    own = [f.name for f in fields(PenaltyConfig) if f.name != "settings"]
    close = difflib.get_close_matches(key, [*_setting_fields(name), *own], n=1)
    hint = f" (did you mean 'penalty.{close[0]}'?)" if close else ""
    raise ConfigError(f"unknown config key 'penalty.{key}'{hint}; penalty {name!r} takes: {takes}")
