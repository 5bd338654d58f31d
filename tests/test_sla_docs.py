"""The examples of docs/configuration/services.md on calendars, SLAs and OLAs load as written,
and the page's worked numbers are what the code computes."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from collector.config import load_collector_config
from collector.services.calendar import build_calendars
from collector.services.sla import availability, deadline
from collector.services.state import ServiceState

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration" / "services.md"
ZONE = ZoneInfo("Europe/Amsterdam")
HOUR = 3600.0


def example(name: str) -> dict[str, object]:
    """The YAML block after `<!-- example: name -->` in the page."""
    found = re.search(rf"<!-- example: {name} -->\n```yaml\n(.*?)```", PAGE.read_text(), re.S)
    assert found, f"no example {name!r} in {PAGE.name}"
    data = yaml.safe_load(found.group(1))
    assert isinstance(data, dict)
    return data


def local(*args: int) -> float:
    return datetime(*args, tzinfo=ZONE).timestamp()  # type: ignore[misc]


def test_the_examples_load_together(tmp_path: Path) -> None:
    data = {
        "data_dir": str(tmp_path / "data"),
        "sinks": {"helpdesk": {"type": "builtin"}},
        **example("calendars"),
        **example("sla"),
        **example("ola"),
    }
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")

    config = load_collector_config(path)

    sla = config.services["payroll"].sla
    ola = config.groups["systems-administration"].ola
    assert sla is not None and ola is not None
    assert (sla.availability, sla.calendar, ola.calendar) == (99.5, "office", "office")
    office = build_calendars(config.calendars)["office"]
    # "resolve: {CRITICAL: 4h} for a call opened on Friday at 16:00 falls due on Monday at 11:00"
    assert office.add_business_seconds(local(2026, 10, 23, 16), 4 * HOUR) == local(2026, 10, 26, 11)
    assert ola.resolve_seconds("CRITICAL") == 4 * HOUR


def test_the_worked_week_gives_the_page_s_numbers(tmp_path: Path) -> None:
    calendars = example("calendars")["calendars"]
    path = tmp_path / "collector.yaml"
    path.write_text(
        yaml.safe_dump({"data_dir": str(tmp_path), "calendars": calendars}), encoding="utf-8"
    )
    every = build_calendars(load_collector_config(path).calendars)
    changes = [
        (local(2026, 10, 20, 10), ServiceState.MAINTENANCE),
        (local(2026, 10, 20, 12), ServiceState.OPERATIONAL),
        (local(2026, 10, 21, 14), ServiceState.DEGRADED),
        (local(2026, 10, 21, 16), ServiceState.OUTAGE),
        (local(2026, 10, 22, 9, 30), ServiceState.OPERATIONAL),
        (local(2026, 10, 24, 12), ServiceState.OUTAGE),
        (local(2026, 10, 24, 16), ServiceState.OPERATIONAL),
    ]
    week = (local(2026, 10, 19), local(2026, 10, 26))
    text = " ".join(PAGE.read_text().split())

    office = availability(
        [(at, int(s)) for at, s in changes],
        *week,
        initial=int(ServiceState.OPERATIONAL),
        calendar=every["office"],
        target_percent=95.0,
    )
    always = availability(
        [(at, int(s)) for at, s in changes],
        *week,
        initial=int(ServiceState.OPERATIONAL),
        calendar=every["always"],
    )

    assert (office.counted_seconds, office.up_seconds) == (45 * HOUR, 42.5 * HOUR)
    assert office.percent is not None and always.percent is not None
    assert f"**{office.percent:.2f} %**" in text
    assert office.allowed_down_seconds == pytest.approx(8100)
    assert office.down_seconds == 9000
    assert office.budget_left_seconds == pytest.approx(-900)
    assert "allows 2 h 15 min of downtime (8,100 s); it had 2 h 30 min (9,000 s)" in text
    assert "missed by 900 s" in text
    assert week[1] - week[0] == 169 * HOUR
    assert always.counted_seconds == 169 * HOUR and always.down_seconds == 21.5 * HOUR
    assert (
        "counts 169 h (the clocks went back an hour) with 21 h 30 min down: "
        f"{always.percent:.2f} %" in text
    )

    late = deadline(
        local(2026, 10, 22, 13), local(2026, 10, 23, 10), 4 * HOUR, every["office"], now=week[1]
    )
    in_time = deadline(
        local(2026, 10, 23, 15),
        local(2026, 10, 26, 10),
        4 * HOUR,
        every["office"],
        now=week[1] + 7 * 86400,
    )
    assert (late.taken_seconds, late.breached, late.due_at) == (
        6 * HOUR,
        True,
        local(2026, 10, 22, 17),
    )
    assert (local(2026, 10, 23, 10) - local(2026, 10, 22, 13)) == 21 * HOUR
    assert (in_time.taken_seconds, in_time.breached) == (4 * HOUR, False)
    assert local(2026, 10, 26, 10) - local(2026, 10, 23, 15) == 68 * HOUR
