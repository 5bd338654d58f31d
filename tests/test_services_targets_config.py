"""SLA and OLA targets and business-hours calendars in the collector config: good ones load,
typed; bad ones are refused at load with their key path."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from checks.settings import ConfigError
from collector.config import load_collector_config
from tests.helpers.cases import cases
from tests.test_config_errors import EXIT_USAGE, validate, write

BASE = """\
listen: "127.0.0.1:9330"
sinks:
  helpdesk: {type: builtin}
groups:
  ops: {sink: helpdesk, assign: Operations}
"""

OFFICE = """\
calendars:
  office:
    timezone: Europe/Amsterdam
    weekly: {mon: ["08:00-17:00"], tue: ["08:00-12:00", "13:00-17:00"]}
    holidays: [2026-12-25]
"""


def config(
    calendars: str = OFFICE, sla: str = "{availability: 99.5}", group: str = ""
) -> dict[str, str]:
    groups = f"groups:\n  ops: {{sink: helpdesk, assign: Operations{group}}}\n"
    return {
        "collector.yaml": BASE.replace(
            "groups:\n  ops: {sink: helpdesk, assign: Operations}\n", groups
        )
        + calendars
        + "services:\n  payroll:\n    owner: ops\n    components: [{hosts: [pay1]}]\n"
        + f"    sla: {sla}\n"
    }


def test_targets_and_calendars_load_typed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        config(
            sla="{availability: 99.5, calendar: office, degraded: down, "
            "respond: {CRITICAL: 15m, warning: 4h}, resolve: {CRITICAL: 4h}}",
            group=", respond_within: 2h, ola: {calendar: office, respond: {CRITICAL: 30m}, "
            "resolve: {CRITICAL: 1d}}",
        ),
    )

    loaded = load_collector_config(path)

    sla = loaded.services["payroll"].sla
    assert sla is not None
    assert (sla.availability, sla.calendar, sla.period, sla.degraded_counts_as_up) == (
        99.5,
        "office",
        "month",
        False,
    )
    assert sla.respond_seconds("CRITICAL") == 900
    assert sla.respond_seconds("WARNING") == 4 * 3600  # severities in any case
    assert sla.resolve_seconds("WARNING") is None
    ola = loaded.groups["ops"].ola
    assert ola is not None
    assert (ola.calendar, ola.respond_seconds("CRITICAL"), ola.resolve_seconds("CRITICAL")) == (
        "office",
        1800,
        86400,
    )
    assert float(loaded.groups["ops"].respond_within) == 7200  # still the escalation
    office = loaded.calendars["office"]
    assert office.timezone == "Europe/Amsterdam"
    assert office.holidays == [date(2026, 12, 25)]
    assert office.weekly["tue"] == ["08:00-12:00", "13:00-17:00"]


def test_without_targets_nothing_changes(tmp_path: Path) -> None:
    path = write(tmp_path, {"collector.yaml": BASE})

    loaded = load_collector_config(path)

    assert loaded.calendars == {}
    assert loaded.groups["ops"].ola is None


def calendar(body: str) -> str:
    return f"calendars:\n  office: {body}\n"


BAD = cases(
    {
        "availability above 100": (
            config(sla="{availability: 100.5}"),
            "services -> payroll -> sla -> availability",
            ["above 0 and at most 100", "100.5"],
        ),
        "availability 0": (
            config(sla="{availability: 0}"),
            "services -> payroll -> sla -> availability",
            ["above 0"],
        ),
        "availability negative": (
            config(sla="{availability: -1}"),
            "services -> payroll -> sla -> availability",
            ["above 0"],
        ),
        "a calendar with no hours on any day": (
            config(calendars=calendar("{timezone: UTC, weekly: {mon: [], sat: []}}")),
            "calendars -> office -> weekly",
            ["no business hours on any day"],
        ),
        "a calendar with no weekly key": (
            config(calendars=calendar("{timezone: UTC}")),
            "calendars -> office -> weekly",
            ["no business hours"],
        ),
        "an unknown calendar in an SLA": (
            config(sla="{availability: 99, calendar: ofice}"),
            "services -> payroll -> sla -> calendar",
            ["unknown calendar 'ofice'", "calendars: always, office"],
        ),
        "an unknown calendar in an OLA": (
            config(group=", ola: {calendar: night}"),
            "groups -> ops -> ola -> calendar",
            ["unknown calendar 'night'"],
        ),
        "a range across midnight": (
            config(calendars=calendar('{weekly: {mon: ["17:00-08:00"]}}')),
            "calendars -> office -> weekly -> mon -> 1",
            ["ends before it begins", "00:00-08:00 on the next"],
        ),
        "a range that is not a range": (
            config(calendars=calendar('{weekly: {mon: ["8-17"]}}')),
            "calendars -> office -> weekly -> mon -> 1",
            ["'8-17' is not a range of local times"],
        ),
        "an hour past 24": (
            config(calendars=calendar('{weekly: {mon: ["08:00-24:30"]}}')),
            "calendars -> office -> weekly -> mon -> 1",
            ["ends after 24:00"],
        ),
        "overlapping ranges": (
            config(calendars=calendar('{weekly: {fri: ["08:00-12:00", "11:00-17:00"]}}')),
            "calendars -> office -> weekly -> fri",
            ["08:00-12:00 and 11:00-17:00 overlap"],
        ),
        "an unknown weekday": (
            config(calendars=calendar('{weekly: {monday: ["08:00-17:00"]}}')),
            "calendars -> office -> weekly",
            ["unknown day 'monday'", "mon, tue"],
        ),
        "a bad time zone": (
            config(
                calendars=calendar('{timezone: Europe/Amsterdan, weekly: {mon: ["08:00-17:00"]}}')
            ),
            "calendars -> office -> timezone",
            ["unknown time zone 'Europe/Amsterdan'"],
        ),
        "a holiday that is no date": (
            config(calendars=calendar('{weekly: {mon: ["08:00-17:00"]}, holidays: [christmas]}')),
            "calendars -> office -> holidays -> 1",
            [],
        ),
        "a calendar named always": (
            config(calendars="calendars:\n  always: {weekly: {mon: ['08:00-17:00']}}\n"),
            "calendars -> always",
            ["built in"],
        ),
        "an unknown severity in an SLA": (
            config(sla="{respond: {CRITCAL: 15m}}"),
            "services -> payroll -> sla -> respond -> CRITCAL",
            ["unknown severity 'CRITCAL'", "CRITICAL, WARNING, UNKNOWN, STALE"],
        ),
        "an unknown severity in an OLA": (
            config(group=", ola: {resolve: {OK: 1h}}"),
            "groups -> ops -> ola -> resolve -> OK",
            ["unknown severity 'OK'"],
        ),
        "a severity given twice": (
            config(sla="{respond: {CRITICAL: 15m, critical: 1h}}"),
            "services -> payroll -> sla -> respond -> critical",
            ["given twice"],
        ),
        "a target of no time": (
            config(sla="{resolve: {WARNING: 0s}}"),
            "services -> payroll -> sla -> resolve -> WARNING",
            ["more than 0s"],
        ),
        "a target that is no duration": (
            config(sla="{resolve: {WARNING: soon}}"),
            "services -> payroll -> sla -> resolve -> WARNING",
            ["expected a duration"],
        ),
        "a period other than a month": (
            config(sla="{availability: 99, period: year}"),
            "services -> payroll -> sla -> period",
            ["'year': only `month`"],
        ),
        "an unknown key in an SLA": (
            config(sla="{availabilty: 99}"),
            "services -> payroll -> sla -> availabilty",
            ["unknown key"],
        ),
    }
)


@pytest.mark.parametrize(("files", "key_path", "words"), BAD)
def test_bad_targets_are_refused_with_their_key_path(
    tmp_path: Path, files: dict[str, str], key_path: str, words: list[str]
) -> None:
    path = write(tmp_path, files)

    with pytest.raises(ConfigError) as raised:
        load_collector_config(path)

    assert raised.value.path == key_path, raised.value
    assert raised.value.source == str(path)
    for word in words:
        assert word in raised.value.message


def test_validate_names_the_bad_range_and_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, config(calendars=calendar('{weekly: {mon: ["17:00-08:00"]}}')))
    line = path.read_text().splitlines().index('  office: {weekly: {mon: ["17:00-08:00"]}}') + 1

    result = validate(path)

    assert result.returncode == EXIT_USAGE, result.stderr
    assert f"{path}: calendars -> office -> weekly -> mon -> 1: '17:00-08:00' ends before" in (
        result.stderr
    )
    assert f"(line {line})" in result.stderr
