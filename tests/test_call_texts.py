"""Call texts that stay true: the description follows the call, silent hosts are named by the
time they went quiet, recoveries say when and after how long, every text links to the console,
and values read in human units (issue 19, section 2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from collector.app import CollectorService
from collector.incidents.calls import Problem
from collector.incidents.templates import CallTemplates
from tests.helpers import FakeClock, Reporter

MakeService = Callable[..., CollectorService]
CONSOLE = "https://runwatch.example.org"


def feed(service: CollectorService, reporter: Reporter, value: float, after: float = 0) -> None:
    if after:
        assert isinstance(reporter.clock, FakeClock)
        reporter.clock.advance(after)
    service.ingest(reporter.host, reporter.report({"fs_used_ratio": value}))


def lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


def test_stale_host_names_its_last_report_and_its_subject_stays_true(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service(external_url=CONSOLE)
    web = Reporter("web01", clock, interval=60)
    feed(service, web, 0.5)
    clock.advance(190)
    service.tick()
    (call,) = service.calls(None, None)
    assert call.rule == "host_stale"
    assert call.summary == (
        "[web01] host_stale: STALE (no report since 2027-01-15 08:00:00 UTC (expected every 1 min))"
    )
    text = lines(call.description)
    assert "Rule: host_stale" in text, "no empty `(metric )`"
    assert "Last report: 2027-01-15 08:00:00 UTC" in text
    assert "First seen: 2027-01-15 08:03:10 UTC" in text, "when the staleness was detected"
    clock.advance(3600)
    service.tick()
    (later,) = service.calls(None, None)
    assert later.summary == call.summary, "the subject holds no duration that goes out of date"


def problem(**changes: Any) -> Problem:
    values: dict[str, Any] = {
        "host": "db01",
        "rule": "filesystem_free",
        "metric": "fs_free_bytes",
        "labels": {"mountpoint": "/srv/data"},
        "severity": "WARNING",
        "value": 9.5 * 2**30,
        "unit": "bytes",
        "threshold": 10 * 2**30,
        "direction": "below",
        "group": "systems-administration",
        "assign": "Systems Administration",
        "first_seen": 1_800_000_000.0,
    }
    values.update(changes)
    return Problem(**values)


def test_values_and_thresholds_read_in_human_units() -> None:
    templates = CallTemplates()
    bytes_problem = problem(recent=((1_800_000_000.0, 9.5 * 2**30),))
    assert templates.summary(bytes_problem) == (
        "[db01] filesystem_free {mountpoint=/srv/data}: 9.5 GiB (warning <= 10 GiB)"
    )
    text = lines(templates.description(bytes_problem))
    assert "Value: 9.5 GiB" in text
    assert "Threshold: <= 10 GiB" in text
    assert "2027-01-15 08:00:00 UTC 9.5 GiB" in text
    backup = problem(
        rule="backup_age",
        metric="backup_age_seconds",
        unit="seconds",
        labels={},
        value=4800.0,
        threshold=3600.0,
        direction="above",
    )
    assert templates.summary(backup) == "[db01] backup_age: 1 h 20 min (warning >= 1 h)"


@pytest.mark.parametrize(
    ("labels", "limit"),
    [
        pytest.param({"path": "/srv/" + "x" * 400}, 200, id="one long label value (RT)"),
        pytest.param(
            {"a": "y" * 150, "b": "z" * 150, "mountpoint": "/"}, 255, id="two long values (Redmine)"
        ),
    ],
)
def test_a_long_summary_keeps_host_rule_and_value_whole(labels: dict[str, str], limit: int) -> None:
    line = CallTemplates().summary(problem(labels=labels), limit)
    assert len(line) <= limit
    assert line.startswith("[db01] filesystem_free {")
    assert line.endswith(": 9.5 GiB (warning <= 10 GiB)"), "only label values are shortened"
    assert "…" in line
