"""The collector's refusals (HTTP-shaped), and the one place that classifies store errors."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rejection(Exception):
    """A report refused at the door. `reason` is the metric label; `message` is for the agent."""

    status: int
    reason: str
    message: str
    field: str | None = None


def store_errors(backend: str) -> tuple[type[Exception], ...]:
    """What the store raises when it cannot write: its disk is full, its server is down."""
    errors: list[type[Exception]] = [sqlite3.Error, OSError]
    if backend == "postgresql":
        import psycopg

        errors.append(psycopg.Error)
    return tuple(errors)


def store_unavailable(exc: BaseException) -> bool:
    """Whether the store may be failing as a whole (its server gone, its disk full: PEP 249's
    OperationalError and its kinds, or the OS's error), not over one report's content."""
    return isinstance(exc, OSError) or any(
        cls.__name__ == "OperationalError" for cls in type(exc).__mro__
    )
