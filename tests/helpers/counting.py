"""Count what a store sends its database: statements, rows written and the bytes of their
values. For tests that check how work grows with the fleet (linear, not quadratic), on both
backends: the store's connection is wrapped, nothing else changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

WRITES = ("INSERT", "UPDATE", "DELETE")


@dataclass
class Counts:
    """What went to the database while counting."""

    statements: int = 0  # every statement, reads too (one per row of an executemany)
    reads: int = 0  # SELECTs
    writes: int = 0  # rows of INSERT, UPDATE and DELETE statements, as sent
    written_bytes: int = 0  # the size of the values those statements carried
    read_rows: int = 0  # rows fetched
    read_bytes: int = 0  # the size of their values
    by_kind: dict[str, int] = field(default_factory=dict)  # first word -> statements


def _size(value: Any) -> int:
    """About how many bytes a value takes on the wire: text and bytes by length, numbers 8,
    lists by their items, JSON by its text."""
    if isinstance(value, list | tuple):
        return sum(_size(item) for item in value)
    if hasattr(value, "obj"):  # psycopg's Jsonb wrapper
        value = value.obj
    if isinstance(value, dict):
        value = json.dumps(value)
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    return 0 if value is None else 8


class _Counting:
    """Wraps a DB-API connection or cursor, counting each statement it is given."""

    def __init__(self, inner: Any, counts: Counts) -> None:
        self._inner = inner
        self._counts = counts

    def _count(self, query: Any, rows: list[Any]) -> None:
        text = query.decode() if isinstance(query, bytes) else str(query)
        kind = text.lstrip().split(None, 1)[0].upper() if text.strip() else ""
        counts = self._counts
        counts.statements += max(1, len(rows))
        counts.by_kind[kind] = counts.by_kind.get(kind, 0) + max(1, len(rows))
        if kind == "SELECT":
            counts.reads += 1
        elif kind in WRITES:
            for params in rows:
                # A bulk write unnests one array per column: a row per element.
                arrays = [p for p in (params or ()) if isinstance(p, list)]
                counts.writes += len(arrays[0]) if arrays else 1
                counts.written_bytes += _size(params)

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        self._count(query, [args[0] if args else kwargs.get("params")])
        return _Fetched(self._inner.execute(query, *args, **kwargs), self._counts)

    def executemany(self, query: Any, rows: Any, *args: Any, **kwargs: Any) -> Any:
        rows = list(rows)
        self._count(query, rows)
        return self._inner.executemany(query, rows, *args, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return _Counting(self._inner.cursor(*args, **kwargs), self._counts)

    def __enter__(self) -> Any:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._inner.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Fetched:
    """A cursor that counts the rows fetched from it."""

    def __init__(self, inner: Any, counts: Counts) -> None:
        self._inner = inner
        self._counts = counts

    def _rows(self, rows: list[Any]) -> list[Any]:
        self._counts.read_rows += len(rows)
        self._counts.read_bytes += sum(_size(list(row)) for row in rows)
        return rows

    def fetchone(self) -> Any:
        row = self._inner.fetchone()
        if row is not None:
            self._rows([row])
        return row

    def fetchall(self) -> list[Any]:
        return self._rows(list(self._inner.fetchall()))

    def __iter__(self) -> Iterator[Any]:
        for row in self._inner:
            self._rows([row])
            yield row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextmanager
def counting(store: Any) -> Iterator[Counts]:
    """Count every statement `store` sends its database within the block."""
    counts = Counts()
    inner = store._db
    store._db = _Counting(inner, counts)
    try:
        yield counts
    finally:
        store._db = inner
