"""What the tests of the Jira, ServiceNow and Zammad sinks against their fakes share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from collector.sinks.contract import NewTicket

FP = "5f0c1d2e3a4b5c6d7e8f"
T = TypeVar("T")


def new_ticket(fingerprint: str = FP, route: dict[str, str] | None = None) -> NewTicket:
    """A CRITICAL incident with no priority given (the sink's default applies)."""
    return NewTicket(
        fingerprint=fingerprint,
        summary="db1: /var 97% full",
        description="Used 97% of /var.\n\nRunbook: wiki/fs-full",
        severity="CRITICAL",
        priority="",
        route=route or {},
        host="db1",
        rule="filesystem_full",
    )


def ended_after(end: Callable[[T], object]) -> Iterator[list[T]]:
    """A list a test fills, each item handed to `end` after the test (a fixture's body)."""
    items: list[T] = []
    yield items
    for item in items:
        end(item)


@pytest.fixture
def made() -> Iterator[list[Any]]:
    """Sinks a test builds, closed after it."""
    yield from ended_after(lambda sink: sink.close())
