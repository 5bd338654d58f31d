"""How the CLI prints a list: a table for people, plain and stable text for scripts, or JSON.

On a terminal a list is a rich table, with its states in colour (CRITICAL red, WARNING yellow,
and so on); rich fits it to the terminal's width. Piped or redirected, it is plain text: a
header line and a line a row, columns padded to their widest cell and two spaces apart, never
cut or wrapped, no escape codes, so `grep`, `awk` and `cut` see the same columns every time.
`NO_COLOR` (set, not empty) keeps a terminal plain too; `--json` prints the rows as the collector
answered them.

Values and times are the callers' to format, with runwatch/units.py.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from runwatch.cli.common import EXIT_OK

# The colour of each state a list can show (rich style names).
STATE_STYLES = {
    "OK": "green",
    "WARNING": "yellow",
    "CRITICAL": "bold red",
    "UNKNOWN": "magenta",
    "STALE": "bold blue",
    "RETIRED": "dim",
    "open": "bold",
    "resolved": "dim",
    "dead": "red",
    "pending": "yellow",
    "done": "green",
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its heading, the text of a row's cell, and how to show it."""

    title: str
    cell: Callable[[dict[str, Any]], str]
    right: bool = False  # numbers: aligned on the right
    coloured: bool = False  # a state: coloured on a terminal by STATE_STYLES


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (stdout) is a terminal that may have colour: not piped, no NO_COLOR,
    and not TERM=dumb."""
    stream = stream or sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # replaced by an object without a file, or closed
        return False
    return tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def print_json(value: Any) -> int:
    """Print a value as indented JSON, as every --json does."""
    print(json.dumps(value, indent=2))
    return EXIT_OK


def table_text(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """The plain table: header and rows, each column as wide as its widest cell (the last one
    unpadded), two spaces apart; a cell's line breaks become spaces."""
    cells = [[c.title.upper() for c in columns]]
    cells += [[_one_line(c.cell(row)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = []
    for line in cells:
        parts = []
        for i, (text, column) in enumerate(zip(line, columns, strict=True)):
            last = i == len(columns) - 1
            if column.right:
                parts.append(text.rjust(widths[i]))
            else:
                parts.append(text if last else text.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) if "\n" in str(text) or "\t" in str(text) else str(text)


def print_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    *,
    empty: str,
    title: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """A list as a table: coloured on a terminal, plain text otherwise; `empty` when no row."""
    stream = stream or sys.stdout
    print(table(rows, columns, empty=empty, title=title, terminal=is_terminal(stream)), file=stream)


def table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    *,
    empty: str,
    title: str | None = None,
    terminal: bool = False,
) -> str:
    """The text of a table (print_table), for a terminal or plain; no final line break."""
    if not rows:
        return f"{title}\n{empty}" if title else empty
    if not terminal:
        text = table_text(rows, columns)
        return f"{title}\n{text}" if title else text
    return render_rich(rows, columns, title).rstrip("\n")


def render_rich(
    rows: Sequence[dict[str, Any]], columns: Sequence[Column], title: str | None = None
) -> str:
    """The table as a terminal shows it: rich's, with colour codes, as wide as the terminal."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=None,
        header_style="bold",
        pad_edge=False,
        padding=(0, 2, 0, 0),
    )
    for column in columns:
        table.add_column(
            column.title.upper(),
            justify="right" if column.right else "left",
            overflow="fold",
        )
    for row in rows:
        texts = []
        for column in columns:
            value = _one_line(column.cell(row))
            style = STATE_STYLES.get(value, "") if column.coloured else ""
            texts.append(Text(value, style=style))
        table.add_row(*texts)
    console = Console(force_terminal=True, highlight=False, soft_wrap=False)
    with console.capture() as captured:
        console.print(table)
    return captured.get()


def colour(text: str, state: str, terminal: bool) -> str:
    """`text` in the colour of `state` on a terminal; as is otherwise."""
    style = STATE_STYLES.get(state)
    if not style or not terminal:
        return text
    from rich.console import Console
    from rich.text import Text

    console = Console(force_terminal=True, highlight=False, soft_wrap=True)
    with console.capture() as captured:
        console.print(Text(text, style=style), end="")
    return captured.get()
