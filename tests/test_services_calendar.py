"""Business-hours calendars: hand-computed business seconds and due times, across a change of
daylight saving time, weekends and holidays; and properties of the arithmetic."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.services.calendar import BusinessCalendar, CalendarConfig

HOUR = 3600.0

OFFICE = BusinessCalendar.from_config(
    "office",
    CalendarConfig(
        timezone="Europe/Amsterdam",
        weekly={day: ["08:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},  # type: ignore[misc]
        holidays=[date(2026, 12, 25)],
    ),
)


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


# 2026: summer time ends Sunday 25 October (03:00 CEST -> 02:00 CET) and begins Sunday 29 March
# (02:00 CET -> 03:00 CEST). Christmas, a holiday here, is a Friday.
BUSINESS_SECONDS = [
    pytest.param(
        utc(2026, 10, 23, 14),
        utc(2026, 10, 26, 8),
        2 * HOUR,
        id="Fri 16:00 CEST to Mon 09:00 CET: one hour each side of the DST weekend",
    ),
    pytest.param(
        utc(2026, 3, 27, 15),
        utc(2026, 3, 30, 7),
        2 * HOUR,
        id="Fri 16:00 CET to Mon 09:00 CEST: across the spring change",
    ),
    pytest.param(
        utc(2026, 12, 24, 11),
        utc(2026, 12, 28, 9),
        7 * HOUR,
        id="Thu 12:00 to Mon 10:00 over Christmas (a holiday) and the weekend: 5h + 2h",
    ),
    pytest.param(
        utc(2026, 10, 24, 6),
        utc(2026, 10, 25, 20),
        0.0,
        id="within a weekend: none",
    ),
    pytest.param(
        utc(2026, 10, 26, 5),
        utc(2026, 10, 26, 7, 30),
        0.5 * HOUR,
        id="starts before hours (06:00 CET), ends 08:30: half an hour",
    ),
    pytest.param(
        utc(2026, 10, 26, 15),
        utc(2026, 10, 26, 23),
        1 * HOUR,
        id="starts at 16:00, ends after hours: one hour",
    ),
    pytest.param(
        utc(2026, 10, 19, 0),
        utc(2026, 10, 26, 0),
        45 * HOUR,
        id="a whole week: 5 x 9h",
    ),
    pytest.param(
        utc(2026, 12, 21, 0),
        utc(2026, 12, 28, 0),
        36 * HOUR,
        id="Christmas week: 4 x 9h",
    ),
    pytest.param(utc(2026, 10, 26, 10), utc(2026, 10, 26, 10), 0.0, id="empty span"),
    pytest.param(utc(2026, 10, 26, 12), utc(2026, 10, 26, 10), 0.0, id="backwards span"),
]


@pytest.mark.parametrize(("start", "end", "seconds"), BUSINESS_SECONDS)
def test_business_seconds_by_hand(start: float, end: float, seconds: float) -> None:
    assert OFFICE.business_seconds(start, end) == seconds


def test_spans_are_the_business_hours_as_instants_across_dst() -> None:
    spans = OFFICE.spans(utc(2026, 10, 23, 0), utc(2026, 10, 27, 0))

    assert spans == [
        (utc(2026, 10, 23, 6), utc(2026, 10, 23, 15)),  # Friday, CEST (+2)
        (utc(2026, 10, 26, 7), utc(2026, 10, 26, 16)),  # Monday, CET (+1)
    ]


DUE = [
    pytest.param(
        utc(2026, 10, 23, 14),
        2 * HOUR,
        utc(2026, 10, 26, 8),
        id="Fri 16:00 CEST + 2h: Mon 09:00 CET",
    ),
    pytest.param(
        utc(2026, 3, 27, 15),
        2 * HOUR,
        utc(2026, 3, 30, 7),
        id="Fri 16:00 CET + 2h: Mon 09:00 CEST",
    ),
    pytest.param(
        utc(2026, 12, 24, 15),
        4 * HOUR,
        utc(2026, 12, 28, 10),
        id="Thu 24 Dec 16:00 + 4h: over Christmas to Mon 11:00",
    ),
    pytest.param(
        utc(2026, 10, 24, 10),
        15 * 60.0,
        utc(2026, 10, 26, 7, 15),
        id="opened on Saturday + 15m: Mon 08:15",
    ),
    pytest.param(
        utc(2026, 10, 26, 9),
        7 * HOUR,
        utc(2026, 10, 26, 16),
        id="Mon 10:00 + 7h: ends exactly at 17:00",
    ),
    pytest.param(utc(2026, 10, 24, 10), 0.0, utc(2026, 10, 24, 10), id="no time: at once"),
]


@pytest.mark.parametrize(("start", "seconds", "due"), DUE)
def test_due_time_by_hand(start: float, seconds: float, due: float) -> None:
    assert OFFICE.add_business_seconds(start, seconds) == due


def test_contains_follows_the_local_clock() -> None:
    assert OFFICE.contains(utc(2026, 10, 23, 6))  # Fri 08:00 CEST
    assert not OFFICE.contains(utc(2026, 10, 23, 15))  # Fri 17:00 CEST: the end is out
    assert not OFFICE.contains(utc(2026, 10, 26, 6, 30))  # Mon 07:30 CET
    assert OFFICE.contains(utc(2026, 10, 26, 7))  # Mon 08:00 CET
    assert not OFFICE.contains(utc(2026, 12, 25, 10))  # Christmas
    assert not OFFICE.contains(utc(2026, 10, 25, 10))  # Sunday


def test_a_whole_day_across_the_change_is_23_or_25_hours() -> None:
    sundays = BusinessCalendar.from_config(
        "sundays", CalendarConfig(timezone="Europe/Amsterdam", weekly={"sun": ["00:00-24:00"]})
    )

    assert sundays.business_seconds(utc(2026, 10, 20), utc(2026, 10, 30)) == 25 * HOUR
    assert sundays.business_seconds(utc(2026, 3, 25), utc(2026, 4, 1)) == 23 * HOUR


def test_always_counts_every_second() -> None:
    always = BusinessCalendar.always()

    assert always.business_seconds(100.0, 250.5) == 150.5
    assert always.add_business_seconds(100.0, 60.0) == 160.0
    assert always.contains(0.0)
    assert always.spans(1.0, 2.0) == [(1.0, 2.0)]


# Two years around now, with a whole second resolution.
instants = st.integers(min_value=int(utc(2026, 1, 1)), max_value=int(utc(2027, 12, 31)))
amounts = st.integers(min_value=0, max_value=int(200 * HOUR))


@settings(max_examples=150, deadline=None)
@given(a=instants, b=instants, c=instants)
def test_business_seconds_adds_up_when_a_span_is_split(a: int, b: int, c: int) -> None:
    start, middle, end = sorted((a, b, c))

    whole = OFFICE.business_seconds(start, end)

    assert whole == OFFICE.business_seconds(start, middle) + OFFICE.business_seconds(middle, end)
    assert 0 <= whole <= end - start


@settings(max_examples=150, deadline=None)
@given(a=instants, b=instants, more=st.integers(min_value=0, max_value=10**6))
def test_business_seconds_grow_with_the_span(a: int, b: int, more: int) -> None:
    start, end = sorted((a, b))

    assert OFFICE.business_seconds(start, end + more) >= OFFICE.business_seconds(start, end)
    assert OFFICE.business_seconds(start - more, end) >= OFFICE.business_seconds(start, end)


@settings(max_examples=150, deadline=None)
@given(start=instants, seconds=amounts)
def test_the_due_time_is_where_the_business_seconds_are_spent(start: int, seconds: int) -> None:
    due = OFFICE.add_business_seconds(start, seconds)

    assert OFFICE.business_seconds(start, due) == seconds
    if seconds:
        # No earlier instant has spent them all: the last second before it was business time.
        assert OFFICE.contains(due - 0.5)


@settings(max_examples=150, deadline=None)
@given(ts=instants)
def test_contains_agrees_with_spans(ts: int) -> None:
    assert OFFICE.contains(ts) == (OFFICE.business_seconds(ts, ts + 1) == 1)


def test_hours_the_clocks_skip_or_repeat_count_as_they_pass() -> None:
    night = BusinessCalendar.from_config(
        "night", CalendarConfig(timezone="Europe/Amsterdam", weekly={"sun": ["02:00-03:00"]})
    )

    # 29 March: 02:00 to 03:00 does not happen. 25 October: it happens twice.
    assert night.business_seconds(utc(2026, 3, 28), utc(2026, 3, 30)) == 0
    assert night.business_seconds(utc(2026, 10, 24), utc(2026, 10, 26)) == 2 * HOUR
    assert night.business_seconds(utc(2026, 10, 10), utc(2026, 10, 12)) == 1 * HOUR


def test_a_target_a_sparse_calendar_never_reaches_is_due_never() -> None:
    minute = BusinessCalendar.from_config(
        "minute", CalendarConfig(timezone="UTC", weekly={"mon": ["08:00-08:01"]})
    )

    assert minute.add_business_seconds(utc(2026, 1, 1), 60.0 * 53) < utc(2027, 1, 15)
    assert minute.add_business_seconds(utc(2026, 1, 1), 7 * 86400.0) == math.inf


ZONES = ["Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    """A calendar in a zone with daylight saving (Lord Howe's shifts by half an hour), random
    non-overlapping hours on some days, and some holidays."""
    weekly: dict[str, list[str]] = {}
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        cuts = sorted(set(draw(st.lists(st.integers(0, 96), max_size=6))))
        pairs = [(a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if a < b]
        weekly[day] = [
            f"{a // 4:02d}:{a % 4 * 15:02d}-{b // 4:02d}:{b % 4 * 15:02d}" for a, b in pairs
        ]
    if not any(weekly.values()):
        weekly["wed"] = ["09:00-10:00"]
    holidays = draw(st.lists(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=20))
    zone = draw(st.sampled_from(ZONES))
    return BusinessCalendar.from_config(
        "random", CalendarConfig(timezone=zone, weekly=weekly, holidays=holidays)
    )


@settings(max_examples=100, deadline=None)
@given(calendar=calendars(), a=instants, b=instants, c=instants, spend=amounts)
def test_any_calendar_adds_up_and_its_due_times_spend_exactly(
    calendar: BusinessCalendar, a: int, b: int, c: int, spend: int
) -> None:
    start, middle, end = sorted((a, b, c))

    whole = calendar.business_seconds(start, end)

    assert whole == calendar.business_seconds(start, middle) + calendar.business_seconds(
        middle, end
    )
    assert 0 <= whole <= end - start
    assert calendar.contains(middle) == (calendar.business_seconds(middle, middle + 1) == 1)
    due = calendar.add_business_seconds(start, spend)
    if due != math.inf:
        assert calendar.business_seconds(start, due) == spend
