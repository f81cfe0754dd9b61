"""``ratchet backends`` and ``ratchet env``: what can run on this machine, and the environments behind it."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ratchet.core.plugins import UnknownPluginError
from ratchet.core.profile import HardwareSpec
from ratchet.flows import exit_codes
from ratchet.hardware.backends import BACKENDS
from ratchet.hardware.compile import availability
from ratchet.hardware.environments import ENVIRONMENTS, EnvironmentBuildError, build


def backends(console: Console, hardware: HardwareSpec | None = None) -> int:
    """A table of every backend with its availability and reason on this machine (never builds anything)."""
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
    return exit_codes.MET


def env(args: argparse.Namespace, console: Console) -> int:
    if args.env_command == "list":
        table = Table(title="Isolated environments")
        for header in ("name", "built", "requirements", "why isolated"):
            table.add_column(header, overflow="fold")
        for name, environment in ENVIRONMENTS.items():
            table.add_row(name, "yes" if environment.is_built() else "no",
                          escape(" ".join(environment.all_requirements)), escape(environment.why))
        console.print(table)
        return exit_codes.MET
    try:
        names = [ENVIRONMENTS.canonical(n) for n in args.names] or ENVIRONMENTS.names()
    except UnknownPluginError as exc:
        console.print(f"ratchet: {escape(str(exc))}", soft_wrap=True)
        return exit_codes.INVALID
    failed = 0
    for name in names:
        try:
            python = build(ENVIRONMENTS.get(name), log=lambda line: console.print(escape(f"{name}: {line}"), soft_wrap=True),
                           force=args.force)
            console.print(f"[green]{escape(name)}[/]: {python}")
        except EnvironmentBuildError as exc:
            failed += 1
            console.print(f"[red]{escape(name)}[/]: {escape(str(exc))}", soft_wrap=True)
    return exit_codes.NOT_MET if failed else exit_codes.MET
