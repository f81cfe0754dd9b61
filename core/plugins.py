"""One generic name -> implementation table for every kind of plugin, and the one list of plugin packages.

Model tasks, runtimes, compile backends, environments, workloads, rubric scorers
and techniques all register here the same way (after lm-evaluation-harness's
``Registry``): a duplicate name is a programming error and raises at import
time; an unknown name raises ``UnknownPluginError`` whose message suggests the
closest known names, so a typo in a spec becomes a one-line "did you mean"
instead of a KeyError.

Plugins are found by importing every module of the packages in
``PLUGIN_PACKAGES``; each module's ``@REGISTRY.register`` runs on import. A
registry loads them itself on its first lookup, so no caller (CLI, worker
process, MLflow model, test) has to remember to: adding a plugin is adding a
module to one of those packages. Plugin modules keep heavy imports (torch,
transformers, onnxruntime) inside functions, so loading every plugin stays
cheap and a missing optional package is an availability reason, not an
ImportError.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

# Every package whose modules register plugins, lowest floor first. The names are strings on purpose: the
# ground floor finds the plugins of the floors above without importing them statically.
PLUGIN_PACKAGES = (
    "ratchet.core.model_tasks",
    "ratchet.hardware.runtimes",
    "ratchet.hardware.backends",
    "ratchet.evals.workloads",
    "ratchet.evals.scorers",
    "ratchet.tasks.techniques",
)
_loaded = False


def load_plugins() -> None:
    """Import every module of every plugin package, once per process (modules starting with ``_`` are helpers)."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # before importing: a plugin module that looks a registry up must not start this again
    for name in PLUGIN_PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{name}.{info.name}")


class UnknownPluginError(ValueError, LookupError):
    """A spec names a plugin that is not registered (a ValueError, so pydantic reports it per field)."""


class Registry(Generic[T]):
    """A named table of plugins of one kind, filled by ``@registry.register``; lookups load the plugins first."""

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
        load_plugins()
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise UnknownPluginError(self.unknown_message(name))

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def unknown_message(self, name: str) -> str:
        load_plugins()
        return unknown_name_message(self.kind, name, self._items, self._aliases)

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        load_plugins()
        yield from sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._items or name in self._aliases

    def __len__(self) -> int:
        load_plugins()
        return len(self._items)


def unknown_name_message(kind: str, name: str, known: Iterable[str], aliases: Iterable[str] = ()) -> str:
    """``unknown <kind> 'x'; did you mean 'y'? (known: ...)`` for any closed set of names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, [*known, *aliases], n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (known: {', '.join(known) or 'none yet'})"
