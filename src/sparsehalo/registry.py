"""One registry for every kind of named thing (models, penalties, methods, datasets, schedules, ...).

A :class:`Registry` maps names to objects (classes or factory functions).  ``register(name)`` is a
decorator; ``get(name)`` raises a :class:`~sparsehalo.errors.ConfigError` that lists the known names,
so an unknown name in a config file is one clear line; ``names()`` feeds the command line's
``choices`` and help, so the CLI never repeats a registry's contents by hand.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named objects of one kind.

    Args:
        kind: what the entries are, for messages (``"model"``, ``"penalty"``, ...).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding an entry under ``name``; a name can be registered once."""

        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        """The entry ``name``.

        Raises:
            ConfigError: for an unknown name, listing the known ones.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def items(self):
        return self._entries.items()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
