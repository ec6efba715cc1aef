"""Named things (task kinds, adapters, objective terms, data formats...) registered by one call.

A registry refuses duplicates and lists what it holds, so ``tunesmith list`` and error messages can
say what exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    help: str


class Registry:
    """A name -> object table for one kind of thing (``kind`` is used in messages)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, obj: Any, help: str = "") -> Any:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, obj, help)
        return obj

    def __call__(self, name: str, help: str = "") -> Callable[[Any], Any]:
        """Decorator form: ``@REG("name", "help")``."""
        return lambda obj: self.register(name, obj, help)

    def get(self, name: str, key: str = "") -> Any:
        if name not in self._entries:
            raise ConfigError(key, f"unknown {self.kind} {name!r}", f"choose one of {self.names()}")
        return self._entries[name].obj

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))


# ---------------------------------------------------------------------------------------------
# Registries that layers below a method's own look things up in by name (the recipe's config
# validation, the data pipeline). Each method module registers itself into one of these with one
# explicit call when its package is imported; ``tunesmith/__init__.py`` imports every built-in
# method package, so the tables are full whatever module a user imports first.

TASKS = Registry("task type")
"""Task kinds (:class:`tunesmith.tasks.base.TaskKind`): auto class, encoder, loss, metric."""

ADAPTERS = Registry("adapter method")
"""Recipe ``adapter.type`` name -> the method's config dataclass (its defaults: the paper's
preset); the dataclass's ``method`` names its implementation (:mod:`tunesmith.adapters`)."""

OBJECTIVES = Registry("objective term")
"""Recipe ``objectives[].name`` -> :class:`tunesmith.objectives.base.ObjectiveTerm` subclass."""

FORMATS = Registry("data format")
"""Recipe ``data.<split>.format`` name -> :class:`tunesmith.data.readers.DataFormat` (the reader
and the file extensions it is inferred from); one module per format family in
:mod:`tunesmith.data.formats`."""
