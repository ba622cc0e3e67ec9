"""Configs from files and the command line: TOML with ``extends``, ``--set key=value`` overrides, and the
configs shipped with the package, found by name (``sparsehalo train mnist_lenet300_halo``)."""

from __future__ import annotations

import copy
import difflib
import tomllib
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .sections import Config
from .checks import check_fields
from .values import from_section


def from_dict(data: dict) -> Config:
    """Build a :class:`Config` from nested dicts, rejecting unknown keys, wrong types and values out of
    their range (:func:`.checks.check_fields`)."""
    config = from_section(Config, data)
    check_fields(config)
    return config


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``key.sub=value``; the value is read as a TOML value, else taken as a string."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value (e.g. train.epochs=15)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    if "\n" in raw or "\r" in raw:
        raise ConfigError(f"override {key!r}: the value spans several lines")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    except RecursionError:
        raise ConfigError(f"override {key!r}: the value is nested too deeply") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``--set`` overrides to a nested dict (a deep copy is returned)."""
    data = copy.deepcopy(data)
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[path[-1]] = value
    return data


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


#: the longest ``extends`` chain and the largest config file accepted
MAX_EXTENDS = 32
MAX_BYTES = 1 << 20


def read_toml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a TOML config; ``extends = "other.toml"`` (relative to the file) is read first and
    overridden key by key, so a method's config states only what differs from its base.  Chains of
    more than :data:`MAX_EXTENDS` files, files over :data:`MAX_BYTES` and nesting too deep to parse
    are refused."""
    path = Path(path)
    if len(_seen) >= MAX_EXTENDS:
        raise ConfigError(f"config file {str(path)!r}: more than {MAX_EXTENDS} files in its extends chain")
    if path.is_file() and path.stat().st_size > MAX_BYTES:
        raise ConfigError(f"config file {str(path)!r} is larger than {MAX_BYTES:,} bytes")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    if path.resolve() in _seen:
        raise ConfigError(f"config file {str(path)!r} extends itself")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config file {str(path)!r} is nested too deeply") from None
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{str(path)!r}: extends must be a file name")
        data = _deep_merge(read_toml(path.parent / parent, _seen + (path.resolve(),)), data)
    return data


def bundled_dir() -> Path | None:
    """The folder of the configs shipped with the package: ``sparsehalo/configs`` (in a source tree a link to
    the checkout's ``configs/``; where links are not checked out, that folder itself), None if absent."""
    package = Path(__file__).resolve().parent.parent
    candidates = [package / "configs"] + ([package.parent.parent / "configs"] if package.parent.name == "src" else [])
    return next((d for d in candidates if d.is_dir()), None)


def bundled_configs() -> list[str]:
    """The names of the bundled configs (file names without ``.toml``), sorted."""
    folder = bundled_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder is not None else []


def resolve_config(path: str | Path) -> Path:
    """The config file ``path`` names: an existing file as it is; else a bare name (no folder; ``.toml``
    optional) of a bundled config; else ``path`` unchanged (:func:`read_toml` says it is not found).

    Raises:
        ConfigError: a bare name that is neither a file nor a bundled config (the message lists them).
    """
    text = str(path)
    if Path(path).is_file() or not text or "/" in text or "\\" in text or text.startswith("."):
        return Path(path)
    name = text.removesuffix(".toml")
    folder = bundled_dir()
    if folder is not None and (folder / f"{name}.toml").is_file():
        return folder / f"{name}.toml"
    names = bundled_configs()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"config {text!r} is neither a file nor a bundled config{hint}; bundled configs: "
                      + (", ".join(names) if names else "none (this installation has none)"))


def load(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a TOML config file, or a bundled config by name (:func:`resolve_config`), or defaults when
    ``path`` is None, and apply overrides."""
    data: dict = {}
    if path is not None:
        path = resolve_config(path)
        data = read_toml(path)
        data.setdefault("name", Path(path).stem)
    return from_dict(apply_overrides(data, list(overrides)))
