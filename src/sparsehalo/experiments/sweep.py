"""A sweep: a grid of settings over ``--set`` overrides, one trial (run) per setting.

A setting (a *point*) maps config keys to values, ``{"penalty.xi": 5e-5, "penalty.psi": 1e-4}``;
it stays a dict beside every run made from it, so nothing ever has to read a setting back out of a
run's name.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .. import paths
from ..config import Config
from ..errors import ConfigError
from ..io import write_csv
from ..results import read_summary
from .choice import score, val_by_level

Point = dict[str, Any]


def grid(axes: Mapping[str, Sequence[Any]]) -> list[Point]:
    """Every combination of the axes' values, the last axis varying fastest.

    >>> grid({"penalty.xi": [1, 2], "penalty.psi": [3]})
    [{'penalty.xi': 1, 'penalty.psi': 3}, {'penalty.xi': 2, 'penalty.psi': 3}]

    Raises:
        ConfigError: when there is no axis or an axis has no value (the sweep would choose nothing).
    """
    if not axes or any(len(v) == 0 for v in axes.values()):
        raise ConfigError(f"sweep grid {dict(axes)!r} is empty: every axis needs at least one value")
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def overrides(point: Mapping[str, Any]) -> list[str]:
    """``--set`` overrides of a point: ``["penalty.xi=5e-05", 'schedule.name="step"', ...]`` (TOML values)."""
    return [f"{k}={_toml(v)}" for k, v in point.items()]


def _toml(value: Any) -> str:
    """A TOML literal of a bool, number, string or list of them (floats as ``repr``: ``5e-05``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_toml, value)) + "]"
    return repr(value)


def short_key(key: str) -> str:
    """``"penalty.xi"`` -> ``"xi"``: the field name without its section."""
    return key.rsplit(".", 1)[-1]


def setting_name(prefix: str, point: Mapping[str, Any]) -> str:
    """A run name for a point: ``<prefix>_xi5e-05_psi0.0001`` (numbers in ``:g`` form)."""
    return f"{prefix}_" + "_".join(f"{short_key(k)}{v:g}" for k, v in point.items())


@dataclass(frozen=True)
class Trial:
    """One point of a sweep and the run that scores it.

    Args:
        point: the setting.
        config: the full config of the run (the point applied).
        root: the directory the run directory sits in.
    """

    point: Point
    config: Config
    root: Path

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir(self.root)

    def summary(self) -> dict | None:
        """The run's summary, or None while it is unfinished."""
        return read_summary(self.run_dir) if paths.summary(self.run_dir).is_file() else None


def trials(points: Iterable[Point], make_config: Callable[[Point], Config], root: str | Path) -> list[Trial]:
    """One :class:`Trial` per point, its config from ``make_config(point)``, its run under ``root``."""
    return [Trial(dict(p), make_config(p), Path(root)) for p in points]


def outcomes(sweep: Iterable[Trial]) -> list[tuple[Point, dict | None]]:
    """``(point, summary or None)`` of every trial, in order: the input of :mod:`.choice`."""
    return [(t.point, t.summary()) for t in sweep]


def table(sweep: Iterable[Trial], levels: Sequence[str], chosen: Point | None, **fixed: Any) -> list[dict]:
    """Rows of a sweep table, one per finished trial.

    Each row holds ``fixed`` (e.g. model and method), the point by :func:`short_key`, the validation
    accuracy at each of ``levels`` (``val_acc_<percent>``), the :func:`~.choice.score`, whether the
    point is ``chosen``, and the run's ``epochs``.
    """
    rows = []
    for t in sweep:
        s = t.summary()
        if s is None:
            continue
        val = val_by_level(s)
        rows.append({**fixed, **{short_key(k): v for k, v in t.point.items()},
                     **{f"val_acc_{float(lv) * 100:g}": val.get(lv) for lv in levels},
                     "score": score(s, levels), "chosen": t.point == chosen, "epochs": s["epochs"]})
    return rows


def write_table(path: str | Path, rows: list[dict]) -> None:
    """Write :func:`table` rows as CSV (``\r\n`` line ends, as :func:`sparsehalo.io.write_csv`).

    Columns: the fixed keys and setting keys in order of first appearance (grids of different
    methods may have different keys; a row lacking one leaves its cell empty), then the validation
    accuracies, then score, chosen and epochs.
    """
    seen: list[str] = []
    for row in rows:
        seen += [k for k in row if k not in seen]
    tail = [c for c in ("score", "chosen", "epochs") if c in seen]
    val = [c for c in seen if c.startswith("val_acc_")]
    write_csv(path, rows, [c for c in seen if c not in tail and c not in val] + val + tail)
