"""One generic name -> implementation table for every kind of plugin.

Techniques, runtimes, compile backends and rubric scorers all register here the
same way (after lm-evaluation-harness's ``Registry``): a duplicate name is a
programming error and raises at import time; an unknown name raises
``UnknownPluginError`` whose message suggests the closest known names, so a typo
in a spec becomes a one-line "did you mean" instead of a KeyError.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


class Availability(NamedTuple):
    """Whether a plugin can run on this machine, and why not when it cannot (never raised, always returned)."""

    ok: bool
    reason: str = ""


class UnknownPluginError(ValueError, LookupError):
    """A spec names a plugin that is not registered (a ValueError, so pydantic reports it per field)."""


class Registry(Generic[T]):
    """A named table of plugins of one kind, filled by ``@registry.register``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator adding ``obj`` under ``name`` (and its aliases); duplicates raise."""

        def add(obj: T) -> T:
            for key in (name, *aliases):
                if key in self._items or key in self._aliases:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._items[name] = obj
            self._aliases.update({alias: name for alias in aliases})
            return obj

        return add

    def canonical(self, name: str) -> str:
        """The registered name behind ``name`` (resolving aliases), or a did-you-mean error."""
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise UnknownPluginError(self.unknown_message(name))

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def unknown_message(self, name: str) -> str:
        return unknown_name_message(self.kind, name, self._items, self._aliases)

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        yield from sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def __len__(self) -> int:
        return len(self._items)


def unknown_name_message(kind: str, name: str, known: Iterable[str], aliases: Iterable[str] = ()) -> str:
    """``unknown <kind> 'x'; did you mean 'y'? (known: ...)`` for any closed set of names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, [*known, *aliases], n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (known: {', '.join(known) or 'none yet'})"


def import_submodules(package_name: str) -> None:
    """Import every module of a plugin package so their ``@register`` decorators run.

    This is what makes "adding a plugin = adding one module" true: nobody keeps
    a list of modules to import.
    """
    package = importlib.import_module(package_name)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")
