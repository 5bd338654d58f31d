"""Business-hours calendars: a weekly timetable in a time zone, with holidays, and its arithmetic.

The `calendars:` section of the collector config names them; `always` (around the clock) is built
in. SLA and OLA targets count time in one of them: `BusinessCalendar.business_seconds` is how much
of a stretch of time falls in business hours, `add_business_seconds` when a target falls due.
Times are Unix seconds; local times are turned into instants with zoneinfo, day by day, so a day
with a daylight-saving change has its true length (08:00-17:00 is 9 hours on either side; a
day of 00:00-24:00 is 23 or 25 hours).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from checks.settings import ConfigError, field_error

ALWAYS = "always"  # the built-in calendar: every second counts
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CalendarName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]*$", max_length=100)]
Span = tuple[float, float]  # [begin, end) in Unix time

_RANGE = re.compile(
    r"^(?P<h1>[01][0-9]|2[0-3]):(?P<m1>[0-5][0-9])-(?P<h2>[01][0-9]|2[0-4]):(?P<m2>[0-5][0-9])$"
)
# add_business_seconds looks this far ahead at most: a calendar has hours every week, but a
# target can ask for more than a sparse calendar gives in years.
_MAX_DAYS = 3660


class CalendarConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Business hours: per weekday a list of "HH:MM-HH:MM" ranges, in a time zone, less the
    holidays (whole local days)."""

    timezone: str = "UTC"
    weekly: dict[str, list[str]] = {}  # mon .. sun
    holidays: list[date] = []

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise field_error(
                "timezone",
                f"unknown time zone {self.timezone!r} (use a name such as Europe/Amsterdam)",
            ) from None
        for day in self.weekly:
            if day not in WEEKDAYS:
                raise field_error("weekly", f"unknown day {day!r} (days: {', '.join(WEEKDAYS)})")
        if not any(self.weekly.values()):
            raise field_error(
                "weekly",
                "has no business hours on any day: give at least one range such as "
                'mon: ["08:00-17:00"] (or use the built-in calendar `always`)',
            )


def parse_ranges(ranges: list[str]) -> tuple[tuple[int, int], ...]:
    """One day's "HH:MM-HH:MM" ranges as (start, end) seconds after local midnight, sorted.

    Raises ValueError naming the range: a malformed one, one that ends before it begins (a
    night shift is two ranges, on two days), and ranges that overlap.
    """
    out: list[tuple[int, int]] = []
    for text in ranges:
        match = _RANGE.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"{text!r} is not a range of local times such as 08:00-17:00")
        start = int(match["h1"]) * 3600 + int(match["m1"]) * 60
        end = int(match["h2"]) * 3600 + int(match["m2"]) * 60
        if end > 86400:
            raise ValueError(f"{text!r} ends after 24:00")
        if end <= start:
            raise ValueError(
                f"{text!r} ends before it begins: a range lies within one day "
                "(write a night shift as 17:00-24:00 on one day and 00:00-08:00 on the next)"
            )
        out.append((start, end))
    out.sort()
    for (a1, b1), (a2, b2) in itertools.pairwise(out):
        if a2 < b1:
            raise ValueError(
                f"{_hhmm(a1)}-{_hhmm(b1)} and {_hhmm(a2)}-{_hhmm(b2)} overlap: give each hour once"
            )
    return tuple(out)


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """When business hours are. `zone` None is the calendar `always`: every second counts."""

    name: str
    zone: ZoneInfo | None = None
    weekly: tuple[tuple[tuple[int, int], ...], ...] = ((),) * 7  # Monday first
    holidays: frozenset[date] = frozenset()

    @classmethod
    def always(cls) -> BusinessCalendar:
        return cls(ALWAYS)

    @classmethod
    def from_config(cls, name: str, config: CalendarConfig) -> BusinessCalendar:
        weekly = tuple(parse_ranges(config.weekly.get(day, [])) for day in WEEKDAYS)
        return cls(name, ZoneInfo(config.timezone), weekly, frozenset(config.holidays))

    @property
    def is_always(self) -> bool:
        return self.zone is None

    def _instant(self, day: date, seconds: int) -> float:
        day += timedelta(days=seconds // 86400)
        seconds %= 86400
        local = datetime(day.year, day.month, day.day, seconds // 3600, seconds % 3600 // 60)
        return local.replace(tzinfo=self.zone).timestamp()

    def _local_date(self, ts: float) -> date:
        return datetime.fromtimestamp(ts, self.zone).date()

    def day_spans(self, day: date) -> list[Span]:
        """The business hours of one local day, as instants."""
        if day in self.holidays:
            return []
        return [
            (self._instant(day, a), self._instant(day, b)) for a, b in self.weekly[day.weekday()]
        ]

    def spans(self, start_ts: float, end_ts: float) -> list[Span]:
        """The business hours in [start_ts, end_ts), as instants, in order; touching ones
        joined."""
        if end_ts <= start_ts:
            return []
        if self.zone is None:
            return [(start_ts, end_ts)]
        out: list[Span] = []
        day = self._local_date(start_ts) - timedelta(days=1)
        last = self._local_date(end_ts)
        while day <= last:
            for day_start, day_end in self.day_spans(day):
                a, b = max(day_start, start_ts), min(day_end, end_ts)
                if a >= b:
                    continue
                if out and out[-1][1] >= a:
                    out[-1] = (out[-1][0], max(out[-1][1], b))
                else:
                    out.append((a, b))
            day += timedelta(days=1)
        return out

    def business_seconds(self, start_ts: float, end_ts: float) -> float:
        """How many seconds of [start_ts, end_ts) are business hours (0 if end <= start)."""
        return sum(b - a for a, b in self.spans(start_ts, end_ts))

    def contains(self, ts: float) -> bool:
        """Whether the instant falls in business hours."""
        if self.zone is None:
            return True
        day = self._local_date(ts)
        return any(
            a <= ts < b for d in (day - timedelta(days=1), day) for a, b in self.day_spans(d)
        )

    def add_business_seconds(self, start_ts: float, seconds: float) -> float:
        """The instant by which `seconds` of business time have passed since `start_ts` (a due
        time). Time outside business hours does not count: a target of 2h set at 16:00 on a
        Friday, with hours 08:00-17:00 on weekdays, falls due at 09:00 on Monday. Infinity when
        the calendar does not give that much within ten years."""
        if seconds <= 0 or self.zone is None:
            return start_ts + max(seconds, 0.0)
        left = float(seconds)
        day = self._local_date(start_ts) - timedelta(days=1)
        for _ in range(_MAX_DAYS):
            for day_start, b in self.day_spans(day):
                a = max(day_start, start_ts)
                if a >= b:
                    continue
                if b - a >= left:
                    return a + left
                left -= b - a
            day += timedelta(days=1)
        return math.inf


def build_calendars(configs: Mapping[str, CalendarConfig]) -> dict[str, BusinessCalendar]:
    """Every calendar by name, `always` included."""
    out = {ALWAYS: BusinessCalendar.always()}
    for name, config in configs.items():
        out[name] = BusinessCalendar.from_config(name, config)
    return out


def check_calendars(configs: Mapping[str, CalendarConfig], source: str | None) -> None:
    """Check each calendar's ranges (a key alone cannot: the ranges of one day together)."""
    for name, config in configs.items():
        if name == ALWAYS:
            raise ConfigError(
                f"calendars -> {name}",
                "`always` is built in (around the clock): give yours another name",
                source=source,
            )
        for day, ranges in config.weekly.items():
            for i, text in enumerate(ranges, start=1):
                try:
                    parse_ranges([text])
                except ValueError as exc:
                    raise ConfigError(
                        f"calendars -> {name} -> weekly -> {day} -> {i}", str(exc), source=source
                    ) from None
            try:
                parse_ranges(ranges)
            except ValueError as exc:
                raise ConfigError(
                    f"calendars -> {name} -> weekly -> {day}", str(exc), source=source
                ) from None


def calendar_problem(name: str, known: Mapping[str, object]) -> str | None:
    """What is wrong with a reference to a calendar, or None."""
    if name == ALWAYS or name in known:
        return None
    names = ", ".join(sorted({ALWAYS, *known}))
    return f"unknown calendar {name!r} (calendars: {names})"
