"""Where dataset files are looked for: the data directory variable, the cache, the search order.

A dataset named ``NAME`` is searched for in, by priority:

1. an explicit ``data_dir`` and ``data_dir/NAME``, and nowhere else (asking for a directory never
   silently loads a different copy); otherwise
2. ``$SPARSEHALO_DATA_DIR`` and ``$SPARSEHALO_DATA_DIR/NAME`` when the variable is set,
3. the download cache ``<cache root>/NAME``,
4. the copy shipped with the package, when the spec has one (MNIST).

A directory counts as holding the dataset only when every required file is there, so a partial
folder is passed over.  Specs are duck-typed (``name``, ``file_choices``, ``vendored_dir``, see
:mod:`sparsehalo.data.specs`); this module imports nothing from the package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, Sequence

DATA_DIR_ENV = "SPARSEHALO_DATA_DIR"

FileChoices = Sequence[Sequence[str]]
"""Per required file, the names accepted for it, preferred first (e.g. ``[("x", "x.gz")]``)."""


class Locatable(Protocol):
    """What a spec offers for locating its files (every spec in :mod:`sparsehalo.data.specs`)."""

    name: str

    @property
    def file_choices(self) -> FileChoices: ...

    @property
    def vendored_dir(self) -> Path | None: ...


def data_root() -> Path | None:
    """Return ``$SPARSEHALO_DATA_DIR`` as a path, or None when it is unset or empty."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """Return the download cache root: ``$XDG_CACHE_HOME/sparsehalo`` or ``~/.cache/sparsehalo``."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "sparsehalo"


def search_dirs(name: str, data_dir: str | os.PathLike | None = None, vendored_dir: Path | None = None) -> list[Path]:
    """Directories searched for the files of dataset ``name``, in priority order.

    Args:
        name: dataset name, also the sub-directory looked for under each root.
        data_dir: explicit directory; when given it is the only root searched.
        vendored_dir: a copy shipped with the package, searched last (only without ``data_dir``).

    Returns:
        ``[data_dir, data_dir/name]`` when ``data_dir`` is given, else ``[$SPARSEHALO_DATA_DIR,
        $SPARSEHALO_DATA_DIR/name]`` (when set), the cache ``<cache_root>/name``, then ``vendored_dir``.
    """
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        return [root, root / name]
    dirs: list[Path] = []
    env = data_root()
    if env is not None:
        dirs += [env, env / name]
    dirs.append(cache_root() / name)
    if vendored_dir is not None:
        dirs.append(vendored_dir)
    return dirs


def dataset_dirs(spec: Locatable, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """:func:`search_dirs` for ``spec`` (its name and its vendored copy)."""
    return search_dirs(spec.name, data_dir, spec.vendored_dir)


def files_in(directory: Path, choices: FileChoices) -> list[Path] | None:
    """The path of every required file in ``directory`` (first accepted name wins), or None if one is missing."""
    found = []
    for names in choices:
        for name in names:
            candidate = directory / name
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            return None
    return found


def locate(choices: FileChoices, dirs: Sequence[Path]) -> list[Path] | None:
    """The required files from the first of ``dirs`` that holds all of them, or None."""
    for directory in dirs:
        found = files_in(directory, choices)
        if found is not None:
            return found
    return None


def find_dataset(spec: Locatable, data_dir: str | os.PathLike | None = None) -> list[Path] | None:
    """The files of ``spec`` from the first searched directory holding all of them, or None."""
    return locate(spec.file_choices, dataset_dirs(spec, data_dir))


def not_found_message(name: str, expected: str, dirs: Sequence[Path], download: str | None = None) -> str:
    """One-line explanation of where dataset ``name`` was looked for and how to provide it.

    Args:
        name: the dataset asked for.
        expected: the files looked for, as the user should read them.
        dirs: the directories searched.
        download: dataset that ``sparsehalo download`` can fetch instead (None: no such hint).
    """
    where = ", ".join(str(d) for d in dirs)
    fetch = f", or run 'sparsehalo download {download}' (download=True)" if download else ""
    return (
        f"dataset '{name}' not found: expected {expected} in one of: {where}; "
        f"fix: pass --data-dir DIR, set {DATA_DIR_ENV}=DIR{fetch}"
    )
