"""SLA and OLA arithmetic: availability in business hours from a service's state changes,
error budgets, and calls' response and resolution times against their targets, by hand; and
properties: maintenance never counts against availability, the counts add up."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.settings import Duration
from collector.services.calendar import BusinessCalendar, CalendarConfig
from collector.services.sla import Availability, availability, call_targets, deadline, state_spans
from collector.services.state import ServiceState
from collector.services.targets import OlaConfig, SlaConfig

HOUR = 3600.0
OP, MAINT, DEG, OUT = (int(s) for s in ServiceState)

OFFICE = BusinessCalendar.from_config(
    "office",
    CalendarConfig(
        timezone="Europe/Amsterdam",
        weekly={day: ["08:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
        holidays=[date(2026, 12, 25)],
    ),
)
ALWAYS = BusinessCalendar.always()
CALENDARS = {"office": OFFICE, "always": ALWAYS}


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


# The week of Monday 19 October 2026 (CEST, UTC+2): 45 business hours in the office calendar.
WEEK = (utc(2026, 10, 19), utc(2026, 10, 26))
CHANGES = [
    (utc(2026, 10, 20, 8), MAINT),  # Tue 10:00-12:00 local: a window covers the problem
    (utc(2026, 10, 20, 10), OP),
    (utc(2026, 10, 21, 12), DEG),  # Wed 14:00: one of two web servers down
    (utc(2026, 10, 21, 14), OUT),  # Wed 16:00: both down, overnight
    (utc(2026, 10, 22, 7, 30), OP),  # Thu 09:30: back
    (utc(2026, 10, 24, 10), OUT),  # Saturday 12:00-16:00: outside business hours
    (utc(2026, 10, 24, 14), OP),
]


def test_a_week_in_business_hours_by_hand() -> None:
    # Business hours: 45h, all counted. Maintenance Tue 2h (up). Degraded Wed 14-16h: 2h (up).
    # Outage Wed 16-17h and Thu 08-09:30: 2.5h; the Saturday outage is outside hours.
    found = availability(CHANGES, *WEEK, initial=OP, calendar=OFFICE, target_percent=95.0)

    assert found.maintenance_seconds == 2 * HOUR
    assert found.counted_seconds == 45 * HOUR
    assert found.degraded_seconds == 2 * HOUR
    assert found.outage_seconds == 2.5 * HOUR
    assert found.operational_seconds == 38.5 * HOUR
    assert (found.up_seconds, found.down_seconds) == (42.5 * HOUR, 2.5 * HOUR)
    assert found.unknown_seconds == 0
    assert found.percent == pytest.approx(42.5 / 45 * 100, rel=1e-12)  # 94.44 %
    assert found.met is False
    assert found.allowed_down_seconds == pytest.approx(0.05 * 45 * HOUR)  # 8,100 s
    assert found.budget_left_seconds == pytest.approx(8100 - 9000)  # 900 s over
    assert found.budget_left_percent == pytest.approx(-900 / 8100 * 100)


def test_degraded_can_count_as_down() -> None:
    found = availability(CHANGES, *WEEK, initial=OP, calendar=OFFICE, degraded_counts_as_up=False)

    assert (found.up_seconds, found.down_seconds) == (40.5 * HOUR, 4.5 * HOUR)
    assert found.percent == pytest.approx(40.5 / 45 * 100, rel=1e-12)
    assert found.met is None  # no target


def test_the_same_week_around_the_clock() -> None:
    # 168h. Outage Wed 16:00 to Thu 09:30 local (17.5h) and Saturday 4h.
    found = availability(CHANGES, *WEEK, initial=OP, calendar=ALWAYS, target_percent=99.5)

    assert found.counted_seconds == 168 * HOUR
    assert found.down_seconds == 21.5 * HOUR
    assert found.percent == pytest.approx(146.5 / 168 * 100, rel=1e-12)
    assert found.met is False


def test_a_maintenance_span_covers_the_problems_inside_business_hours() -> None:
    # A window Wed 15:00 to Thu 09:00 local covers 1h degraded, 1h + 1h of outage in hours.
    window = (utc(2026, 10, 21, 13), utc(2026, 10, 22, 7))

    found = availability(CHANGES, *WEEK, initial=OP, calendar=OFFICE, maintenance=[window])

    assert found.maintenance_seconds == 2 * HOUR + 3 * HOUR
    assert (found.degraded_seconds, found.outage_seconds) == (1 * HOUR, 0.5 * HOUR)
    assert (found.counted_seconds, found.down_seconds) == (45 * HOUR, 0.5 * HOUR)


def test_time_before_the_first_known_state_and_unwatched_time_are_not_counted() -> None:
    # Known from Wednesday 12:00 UTC; the collector did not run Thursday.
    watched = [(WEEK[0], utc(2026, 10, 22)), (utc(2026, 10, 23), WEEK[1])]

    found = availability(CHANGES[2:], *WEEK, initial=None, calendar=OFFICE, watched=watched)

    # Mon, Tue and Wed until 14:00 local (9 + 9 + 6 h) unknown, Thursday (9 h) unwatched.
    assert found.unknown_seconds == 33 * HOUR
    assert found.counted_seconds == 12 * HOUR  # Wed 14-17h (2h degraded, 1h out), Friday 9h
    assert found.down_seconds == 1 * HOUR


def test_nothing_counted_gives_no_percentage() -> None:
    weekend = (utc(2026, 10, 24), utc(2026, 10, 26))

    found = availability([], *weekend, initial=OUT, calendar=OFFICE, target_percent=99.0)

    assert (found.counted_seconds, found.percent, found.met) == (0, None, None)
    assert found.budget_left_seconds is None


def test_a_target_of_100_allows_no_downtime() -> None:
    found = availability([], *WEEK, initial=OP, calendar=OFFICE, target_percent=100.0)

    assert (found.percent, found.met, found.allowed_down_seconds) == (100.0, True, 0.0)
    assert (found.budget_left_seconds, found.budget_left_percent) == (0.0, None)


# Calls against an OLA in office hours: respond within 15 minutes, resolve within 4 hours.
OLA = OlaConfig(
    calendar="office",
    respond={"CRITICAL": Duration(15 * 60)},
    resolve={"CRITICAL": Duration(4 * HOUR)},
)


def test_a_call_late_by_the_clock_but_in_time_in_business_hours() -> None:
    # Opened Fri 15:00 CEST, resolved Mon 10:00 CET: 68 hours, of which 2h Friday + 2h Monday.
    opened, resolved = utc(2026, 10, 23, 13), utc(2026, 10, 26, 9)

    result = deadline(opened, resolved, 4 * HOUR, OFFICE, now=utc(2026, 11, 1))

    assert (result.taken_seconds, result.breached, result.done) == (4 * HOUR, False, True)
    assert result.due_at == utc(2026, 10, 26, 9)  # Mon 10:00 CET
    assert result.left_seconds == 0


def test_a_call_that_breaches_its_resolution_target_only_counted_in_business_time() -> None:
    # Opened Thu 13:00, resolved Fri 10:00 (CEST): 21 hours on the clock, 4h + 2h in hours.
    opened, acknowledged, resolved = (
        utc(2026, 10, 22, 11),
        utc(2026, 10, 22, 11, 10),
        utc(2026, 10, 23, 8),
    )

    [ola] = call_targets(
        group=OLA,
        group_name="ops",
        services={},
        calendars=CALENDARS,
        severity="CRITICAL",
        opened_at=opened,
        responded_at=acknowledged,
        resolved_at=resolved,
        now=utc(2026, 11, 1),
    )

    assert (ola.kind, ola.name, ola.calendar) == ("OLA", "ops", "office")
    assert ola.respond is not None and ola.resolve is not None
    assert (ola.respond.taken_seconds, ola.respond.breached) == (600, False)
    assert ola.resolve.taken_seconds == 6 * HOUR
    assert ola.resolve.breached
    assert ola.resolve.due_at == utc(2026, 10, 22, 15)  # Thu 17:00 CEST
    assert ola.resolve.left_seconds == -2 * HOUR
    assert ola.breached


def test_an_open_call_breaches_once_its_business_time_runs_out() -> None:
    opened = utc(2026, 10, 26, 7)  # Mon 08:00 CET

    before = deadline(opened, None, 4 * HOUR, OFFICE, now=utc(2026, 10, 26, 11))
    after = deadline(opened, None, 4 * HOUR, OFFICE, now=utc(2026, 10, 26, 11, 0, 1))

    assert (before.done, before.breached, after.breached) == (False, False, True)


def test_a_call_is_held_to_its_group_ola_and_each_service_sla() -> None:
    sla = SlaConfig(availability=99.5, respond={"critical": Duration(30 * 60)})
    opened = utc(2026, 10, 24, 10)  # Saturday: the OLA's office clock does not run

    found = call_targets(
        group=OLA,
        group_name="ops",
        services={"payroll": sla, "mail": None, "shop": SlaConfig(availability=99.0)},
        calendars=CALENDARS,
        severity="CRITICAL",
        opened_at=opened,
        responded_at=None,
        resolved_at=None,
        now=opened + 3600,
    )

    assert [(t.kind, t.name, t.calendar) for t in found] == [
        ("OLA", "ops", "office"),
        ("SLA", "payroll", "always"),
    ]
    ola, payroll = found
    assert ola.respond is not None and payroll.respond is not None
    assert ola.respond.due_at == utc(2026, 10, 26, 7, 15)  # Mon 08:15 CET
    assert not ola.respond.breached
    assert payroll.respond.due_at == opened + 1800
    assert payroll.respond.breached and payroll.resolve is None


def test_a_severity_without_a_time_has_no_target() -> None:
    assert (
        call_targets(
            group=OLA,
            group_name="ops",
            services={},
            calendars=CALENDARS,
            severity="WARNING",
            opened_at=0.0,
            responded_at=None,
            resolved_at=None,
            now=1.0,
        )
        == []
    )


def test_state_spans_cut_the_period_where_the_state_changes() -> None:
    assert state_spans([(5.0, DEG), (5.0, OUT), (8.0, OP), (20.0, DEG)], 0.0, 10.0, None) == [
        (0.0, 5.0, None),
        (5.0, 8.0, OUT),
        (8.0, 10.0, OP),
    ]


# -- properties ------------------------------------------------------------------------------

START, END = utc(2026, 10, 19), utc(2026, 11, 2)  # two weeks, across the change of clocks
moments = st.integers(min_value=int(START), max_value=int(END))
states = st.sampled_from([OP, DEG, OUT, MAINT])
timelines = st.lists(st.tuples(moments, states), max_size=12).map(sorted)
windows = st.lists(st.tuples(moments, moments).map(sorted).map(tuple), max_size=4)
calendars = st.sampled_from([OFFICE, ALWAYS])


@settings(max_examples=300, deadline=None)
@given(changes=timelines, initial=states, window=windows, calendar=calendars, up=st.booleans())
def test_maintenance_never_counts_against_availability(
    changes: list[tuple[int, int]],
    initial: int,
    window: list[tuple[int, int]],
    calendar: BusinessCalendar,
    up: bool,
) -> None:
    def found(maintenance: list[tuple[int, int]]) -> Availability:
        return availability(
            changes,
            START,
            END,
            initial=initial,
            calendar=calendar,
            maintenance=maintenance,
            degraded_counts_as_up=up,
        )

    without, with_window = found([]), found(window)

    assert with_window.counted_seconds == without.counted_seconds
    assert with_window.down_seconds <= without.down_seconds
    if without.percent is not None:
        assert with_window.percent is not None
        assert with_window.percent >= without.percent - 1e-9


@settings(max_examples=300, deadline=None)
@given(
    changes=timelines,
    initial=states,
    data=st.data(),
    calendar=calendars,
    up=st.booleans(),
)
def test_a_problem_a_window_covers_never_counts_against_availability(
    changes: list[tuple[int, int]],
    initial: int,
    data: st.DataObject,
    calendar: BusinessCalendar,
    up: bool,
) -> None:
    # The same history with some of its problems recorded as maintenance (a silence or window
    # covered them), as the service watch records them.
    covered = [
        (at, MAINT if s in (DEG, OUT) and data.draw(st.booleans()) else s) for at, s in changes
    ]
    covered_initial = MAINT if initial in (DEG, OUT) and data.draw(st.booleans()) else initial

    plain = availability(
        changes, START, END, initial=initial, calendar=calendar, degraded_counts_as_up=up
    )
    silenced = availability(
        covered, START, END, initial=covered_initial, calendar=calendar, degraded_counts_as_up=up
    )

    assert silenced.down_seconds <= plain.down_seconds
    if plain.percent is not None:
        assert silenced.percent is not None and silenced.percent >= plain.percent - 1e-9


WORSE = {OP: [OP, DEG, OUT], DEG: [DEG, OUT], OUT: [OUT]}


@settings(max_examples=150, deadline=None)
@given(
    changes=st.lists(st.tuples(moments, st.sampled_from([OP, DEG, OUT])), max_size=10).map(sorted),
    initial=st.sampled_from([OP, DEG, OUT]),
    data=st.data(),
    calendar=calendars,
    up=st.booleans(),
)
def test_a_worse_history_is_never_more_available(
    changes: list[tuple[int, int]],
    initial: int,
    data: st.DataObject,
    calendar: BusinessCalendar,
    up: bool,
) -> None:
    worse = [(at, data.draw(st.sampled_from(WORSE[s]))) for at, s in changes]
    worse_initial = data.draw(st.sampled_from(WORSE[initial]))

    better = availability(
        changes, START, END, initial=initial, calendar=calendar, degraded_counts_as_up=up
    )
    worsened = availability(
        worse, START, END, initial=worse_initial, calendar=calendar, degraded_counts_as_up=up
    )

    assert worsened.counted_seconds == better.counted_seconds
    assert worsened.down_seconds >= better.down_seconds
    if better.percent is not None:
        assert worsened.percent is not None and worsened.percent <= better.percent + 1e-9


@settings(max_examples=150, deadline=None)
@given(changes=timelines, initial=states, split=moments, calendar=calendars)
def test_the_seconds_of_two_halves_add_up_to_the_whole(
    changes: list[tuple[int, int]], initial: int, split: int, calendar: BusinessCalendar
) -> None:
    whole = availability(changes, START, END, initial=initial, calendar=calendar)
    first = availability(changes, START, split, initial=initial, calendar=calendar)
    at_split = next((s for at, s in reversed(changes) if at <= split), initial)
    second = availability(
        [c for c in changes if c[0] > split], split, END, initial=at_split, calendar=calendar
    )

    for key in ("counted_seconds", "down_seconds", "maintenance_seconds", "degraded_seconds"):
        assert getattr(first, key) + getattr(second, key) == pytest.approx(getattr(whole, key))
