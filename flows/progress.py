"""Progress from deep inside a measurement up to whoever is watching (the CLI's bars).

The flow cannot take a callback as a parameter (parameters must serialise for
the Prefect UI), so the CLI installs a listener here and tasks report to it.
With no listener (a Prefect worker), reports are dropped.
"""

from __future__ import annotations

from collections.abc import Callable

Listener = Callable[[str, str, int, int, str | None], None]  # (variant, phase, done, total, note)
_listener: Listener | None = None


def set_listener(listener: Listener | None) -> None:
    global _listener
    _listener = listener


def reporter(variant: str) -> Callable[..., None]:
    """A ``(phase, done, total, note=None)`` callback tagged with the variant's name."""

    def report(phase: str, done: int, total: int, note: str | None = None) -> None:
        if _listener is not None:
            _listener(variant, phase, done, total, note)

    return report
