"""How the benchmark scripts print their results: one rich table, and the same rows as markdown for README."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def cell(value: float | None, fmt: str) -> str:
    """``value`` formatted, or ``-`` when it is missing (a percentile too few queries could report, a failed row)."""
    return "-" if value is None else format(value, fmt)


def times(value: float | None) -> str:
    """A ratio as ``2.31×``."""
    return "-" if value is None else f"{value:.2f}×"


def show(console: Console, title: str, columns: Sequence[str], rows: list[list[str]], markdown: bool = False) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*map(escape, row))  # names like int8[op_types=none] are not rich markup
    console.print(table)
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
        print("\n".join(lines))
