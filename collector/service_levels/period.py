"""The month a report covers, and spans of time within it."""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from runwatch import units

DAY = 86400.0

Span = tuple[float, float]  # [begin, end) in Unix time


class ReportError(ValueError):
    """The period or the group asked for does not exist, or has not begun."""


@dataclass(frozen=True, slots=True)
class Period:
    label: str  # 2026-11
    start: float  # Unix time, inclusive
    end: float  # Unix time, exclusive
    until: float | None = None  # a month still running is reported up to here

    @property
    def last(self) -> float:
        """Where the records read end: the period's end, or `until` for a running month."""
        return self.end if self.until is None else min(self.end, self.until)

    @property
    def days(self) -> int:
        return round((self.end - self.start) / DAY)

    @property
    def days_begun(self) -> int:
        """The days of the period that have begun by `last` (all of them once it is over)."""
        return min(self.days, max(1, math.ceil((self.last - self.start) / DAY)))


def parse_period(text: str) -> Period:
    """A calendar month in UTC, written YYYY-MM."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not match or not 1 <= int(match[2]) <= 12:
        raise ReportError(f"period {text!r} is not a month written YYYY-MM (e.g. 2026-11)")
    year, month = int(match[1]), int(match[2])
    start = datetime(year, month, 1, tzinfo=UTC).timestamp()
    days = calendar.monthrange(year, month)[1]
    return Period(f"{year:04d}-{month:02d}", start, start + days * DAY)


def refuse_future(period: Period, now: float) -> None:
    """Refuse a period that has not begun: its report would be empty, not good news."""
    if now < period.start:
        raise ReportError(
            f"period {period.label} has not begun: it starts {units.timestamp(period.start)}, "
            f"and it is {units.timestamp(now)}"
        )


def union(spans: Iterable[Span]) -> list[Span]:
    """The spans merged: sorted, none overlapping or touching, none empty."""
    out: list[Span] = []
    for begin, end in sorted(s for s in spans if s[1] > s[0]):
        if out and begin <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((begin, end))
    return out


def length(spans: Iterable[Span]) -> float:
    """The time the spans cover, overlaps counted once."""
    return sum(end - begin for begin, end in union(spans))


def intersect(spans: Iterable[Span], within: Iterable[Span]) -> list[Span]:
    """The parts of `spans` inside `within`."""
    outer = union(within)
    out = []
    for begin, end in union(spans):
        for low, high in outer:
            if low >= end:
                break
            if high > begin:
                out.append((max(begin, low), min(end, high)))
    return out
