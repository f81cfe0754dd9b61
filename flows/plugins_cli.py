"""``ratchet backends`` and ``ratchet env``: what can run on this machine, and the environments behind it."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hardware.backends import BACKENDS
from hardware.compile import availability
from hardware.environments import ENVIRONMENTS, EnvironmentBuildError, build
from hardware.profile import HardwareSpec
from registry.plugins import UnknownPluginError, import_submodules

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _load_plugins() -> None:
    """Every module that may declare a backend or an environment."""
    for package in ("hardware.backends", "tasks.techniques"):
        import_submodules(package)


def backends(console: Console, hardware: HardwareSpec | None = None) -> int:
    """A table of every backend with its availability and reason on this machine (never builds anything)."""
    _load_plugins()
    table = Table(title="Compile backends on this machine")
    for header in ("target", "available", "environment", "reason / version"):
        table.add_column(header, overflow="fold")
    for name, backend_type in BACKENDS.items():
        backend = backend_type()
        available = availability(backend, backend_type.spec_type(), hardware or HardwareSpec(), build=False)
        env = backend_type.environment
        table.add_row(name, "[green]yes[/]" if available.ok else "[red]no[/]",
                      env.name if env else "(pipeline's own)", escape(available.reason))
    console.print(table)
    return EXIT_OK


def env(args: argparse.Namespace, console: Console) -> int:
    _load_plugins()
    if args.env_command == "list":
        table = Table(title="Isolated environments")
        for header in ("name", "built", "requirements", "why isolated"):
            table.add_column(header, overflow="fold")
        for name, environment in ENVIRONMENTS.items():
            table.add_row(name, "yes" if environment.is_built() else "no",
                          escape(" ".join(environment.all_requirements)), escape(environment.why))
        console.print(table)
        return EXIT_OK
    try:
        names = [ENVIRONMENTS.canonical(n) for n in args.names] or ENVIRONMENTS.names()
    except UnknownPluginError as exc:
        console.print(f"ratchet: {escape(str(exc))}", soft_wrap=True)
        return EXIT_INVALID
    failed = 0
    for name in names:
        try:
            python = build(ENVIRONMENTS.get(name), log=lambda line: console.print(escape(f"{name}: {line}"), soft_wrap=True),
                           force=args.force)
            console.print(f"[green]{escape(name)}[/]: {python}")
        except EnvironmentBuildError as exc:
            failed += 1
            console.print(f"[red]{escape(name)}[/]: {escape(str(exc))}", soft_wrap=True)
    return EXIT_FAILED if failed else EXIT_OK
