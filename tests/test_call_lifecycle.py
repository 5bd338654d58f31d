"""The call lifecycle, driven by an injected clock: no sleeps, every time rule exercised."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from collector.app import CollectorService
from collector.incidents.calls import fingerprint
from tests.helpers import FS_RULE, FakeClock, Reporter

MakeService = Callable[..., CollectorService]


def feed(
    service: CollectorService, reporter: Reporter, value: float, *, after: float = 0, **kw: Any
) -> None:
    """Report `value` as the root filesystem's use, `after` seconds on the reporter's clock."""
    if after:
        assert isinstance(reporter.clock, FakeClock)
        reporter.clock.advance(after)
    service.ingest(reporter.host, reporter.report({"fs_used_ratio": value}, **kw))


def calls(service: CollectorService, status: Any = None) -> list[Any]:
    return service.calls(status, None)


@pytest.fixture
def service(make_service: MakeService) -> CollectorService:
    """A collector with the default rules."""
    return make_service()


@pytest.fixture
def web(clock: FakeClock) -> Reporter:
    """web01, reporting on the test's clock."""
    return Reporter("web01", clock)


def events(service: CollectorService, call_id: int) -> list[str]:
    return [e.kind for e in service.store.call_events(call_id)]


def test_problem_opens_exactly_one_call_once_it_has_held_for_its_for(
    clock: FakeClock, web: Reporter, service: CollectorService
) -> None:
    feed(service, web, 0.90)
    feed(service, web, 0.91, after=240)
    assert calls(service) == [], "4 minutes is inside `for: 5m`: no call yet"
    feed(service, web, 0.92, after=60)
    for _ in range(5):
        feed(service, web, 0.92, after=60)
    (call,) = calls(service)
    assert call.status == "open"
    assert call.severity == "WARNING"
    assert call.group == "systems-administration"
    assert call.first_seen == clock.now - 600, "first seen is when the problem started"


def test_for_timer_opens_the_call_on_tick_without_a_new_report(
    clock: FakeClock, web: Reporter, service: CollectorService
) -> None:
    feed(service, web, 0.90)
    clock.advance(301)
    service.tick()
    assert len(calls(service, "open")) == 1


def test_a_problem_that_clears_before_for_never_opens_a_call(
    clock: FakeClock, web: Reporter, service: CollectorService
) -> None:
    feed(service, web, 0.97)
    feed(service, web, 0.50, after=120)
    feed(service, web, 0.50, after=600)
    service.tick()
    assert calls(service) == []


def test_call_text_names_host_rule_value_threshold_owner_and_first_seen(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([{**FS_RULE, "for": "0s", "runbook": "https://wiki/fs-full"}])
    feed(service, Reporter("web01", clock), 0.931)
    (call,) = calls(service)
    assert call.summary == "[web01] filesystem_full {mountpoint=/}: 93.1% (warning >= 85.0%)"
    for text in (
        "web01",
        "filesystem_full",
        "93.1%",
        ">= 85.0%",
        "systems-administration",
        "Systems Administration",
        "First seen:  2027-01-15 08:00:00 UTC",
        "https://wiki/fs-full",
    ):
        assert text in call.description


def test_severity_change_comments_and_changes_priority(
    make_service: MakeService, clock: FakeClock, web: Reporter
) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}])
    feed(service, web, 0.90)
    (call,) = calls(service)
    assert (call.severity, call.priority) == ("WARNING", "normal")
    feed(service, web, 0.97, after=60)
    (call,) = calls(service)
    assert (call.severity, call.priority) == ("CRITICAL", "high")
    assert "97.0% (critical >= 95.0%)" in call.summary
    assert events(service, call.id) == ["opened", "severity"]
    feed(service, web, 0.975, after=60)
    assert events(service, call.id) == ["opened", "severity"], "same severity: no new comment"


def test_recovery_needs_the_clear_threshold_then_resolves_with_a_note(
    make_service: MakeService, clock: FakeClock, web: Reporter
) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}])
    feed(service, web, 0.90)
    feed(service, web, 0.83, after=60)  # below warning, above clear: hysteresis keeps it open
    assert calls(service)[0].status == "open"
    feed(service, web, 0.70, after=60)
    (call,) = calls(service)
    assert call.status == "resolved"
    assert call.resolved_at == clock.now
    (note,) = [e.text for e in service.store.call_events(call.id) if e.kind == "resolved"]
    assert "below the clear threshold 80.0%" in note


@pytest.mark.parametrize(
    ("gap_seconds", "same_call"),
    [
        pytest.param(1800, True, id="recurs within the reopen window: same call reopened"),
        pytest.param(7200, False, id="recurs after the window: a new call"),
    ],
)
def test_recurrence_reopens_within_the_window_only(
    make_service: MakeService, clock: FakeClock, web: Reporter, gap_seconds: int, same_call: bool
) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}])
    feed(service, web, 0.90)
    feed(service, web, 0.50, after=60)
    first = calls(service)[0]
    assert first.status == "resolved"
    feed(service, web, 0.96, after=gap_seconds)
    open_calls = calls(service, "open")
    assert len(open_calls) == 1
    if same_call:
        assert open_calls[0].id == first.id
        assert open_calls[0].reopened == 1
        assert events(service, first.id)[-1] == "reopened"
        assert len(calls(service)) == 1
    else:
        assert open_calls[0].id != first.id
        assert len(calls(service)) == 2


def test_comment_only_recovery_policy_keeps_the_call_open_and_reuses_it(
    make_service: MakeService, clock: FakeClock, web: Reporter
) -> None:
    rule = {**FS_RULE, "for": "0s", "owner": "computer-operations"}
    service = make_service([rule])
    feed(service, web, 0.90)
    feed(service, web, 0.50, after=60)
    (call,) = calls(service)
    assert call.status == "open"
    assert events(service, call.id) == ["opened", "comment"]
    feed(service, web, 0.90, after=60)
    assert [c.id for c in calls(service)] == [call.id], "never a second open call for one key"


def test_one_call_per_host_rule_and_labels(make_service: MakeService, clock: FakeClock) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}])
    web, db = Reporter("web01", clock), Reporter("db01", clock)
    for _ in range(3):
        feed(service, web, 0.9, labels={"mountpoint": "/"})
        feed(service, web, 0.9, labels={"mountpoint": "/var"})
        feed(service, db, 0.9, labels={"mountpoint": "/"})
        clock.advance(60)
    open_calls = calls(service, "open")
    assert len(open_calls) == 3
    assert len({c.fingerprint for c in open_calls}) == 3
    assert fingerprint("web01", "filesystem_full", {"mountpoint": "/var"}) in {
        c.fingerprint for c in open_calls
    }


def test_silent_host_goes_stale_opens_a_call_and_reporting_again_resolves_it(
    clock: FakeClock, service: CollectorService
) -> None:
    web = Reporter("web01", clock, interval=60)
    feed(service, web, 0.5)
    clock.advance(170)
    service.tick()
    assert calls(service) == [], "under 3 intervals: not stale yet"
    clock.advance(20)
    service.tick()
    (call,) = calls(service)
    assert call.rule == "host_stale"
    assert call.severity == "STALE"
    assert "no report since 2027-01-15 08:00:00 UTC" in call.summary
    assert service.hosts()[0]["state"] == "STALE"
    clock.advance(60)
    service.tick()
    assert len(calls(service)) == 1, "still stale: still one call"
    feed(service, web, 0.5)
    assert calls(service)[0].status == "resolved"
    assert service.hosts()[0]["state"] == "OK"


def test_failing_check_makes_its_series_unknown_and_recovery_resolves(
    make_service: MakeService, clock: FakeClock, web: Reporter
) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}])
    feed(service, web, 0.5)
    clock.advance(60)
    service.ingest("web01", web.report(error="statvfs('/') timed out"))
    (call,) = calls(service)
    assert call.severity == "UNKNOWN"
    assert "statvfs('/') timed out" in call.summary
    feed(service, web, 0.5, after=60)
    assert calls(service)[0].status == "resolved"


def test_rule_can_ignore_unknown(
    make_service: MakeService, clock: FakeClock, web: Reporter
) -> None:
    service = make_service([{**FS_RULE, "for": "0s", "unknown": "ignore"}])
    feed(service, web, 0.5)
    service.ingest("web01", web.report(error="boom"))
    assert calls(service) == []


def test_series_that_is_no_longer_reported_resolves_its_call(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}])
    web = Reporter("web01", clock, interval=60)
    feed(service, web, 0.96, labels={"mountpoint": "/mnt/usb"})
    assert calls(service, "open")
    for _ in range(4):  # the host keeps reporting, the mount is gone
        feed(service, web, 0.5, labels={"mountpoint": "/"}, after=60)
        service.tick()
    (call,) = [c for c in calls(service) if c.labels == {"mountpoint": "/mnt/usb"}]
    assert call.status == "resolved"
    assert "no longer reported" in service.store.call_events(call.id)[-1].text


def test_direction_below(make_service: MakeService, clock: FakeClock, web: Reporter) -> None:
    rule = {
        "name": "free_space_low",
        "metric": "fs_free_ratio",
        "direction": "below",
        "warning": 0.15,
        "critical": 0.05,
        "clear": 0.20,
        "owner": "systems-administration",
    }
    service = make_service([rule])
    service.ingest("web01", web.report({"fs_free_ratio": 0.04}))
    (call,) = calls(service)
    assert call.severity == "CRITICAL"
    assert "(critical <= 5.0%)" in call.summary
    service.ingest("web01", web.report({"fs_free_ratio": 0.18}))
    assert calls(service)[0].status == "open", "0.18 has not passed clear (0.20)"
    service.ingest("web01", web.report({"fs_free_ratio": 0.30}))
    assert calls(service)[0].status == "resolved"


def test_duplicate_report_has_no_effect(
    make_service: MakeService, clock: FakeClock, web: Reporter
) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}])
    report = web.report({"fs_used_ratio": 0.97})
    assert service.ingest("web01", report).status == "accepted"
    feed(service, web, 0.5, after=60)  # resolves
    assert service.ingest("web01", report).status == "duplicate"
    (call,) = calls(service)
    assert call.status == "resolved", "the replayed old report changed nothing"


def test_state_and_calls_survive_a_collector_restart(
    make_service: MakeService, clock: FakeClock, web: Reporter, service: CollectorService
) -> None:
    feed(service, web, 0.90)
    clock.advance(200)
    service.close()
    restarted = make_service()
    feed(restarted, web, 0.90, after=101)
    (call,) = calls(restarted)
    assert call.first_seen == clock.now - 301, "`for` counted across the restart"
    restarted.close()
    again = make_service()
    feed(again, web, 0.50, after=60)
    (call,) = calls(again)
    assert call.status == "resolved", "the open call was found again after restart"


def test_the_checks_own_words_reach_the_call(
    make_service: MakeService, clock: FakeClock, web: Reporter
) -> None:
    rule = {
        "name": "plugin_critical",
        "metric": "plugin_status",
        "warning": 1,
        "critical": 2,
        "owner": "systems-administration",
    }
    service = make_service([rule])
    service.ingest(
        "web01",
        web.report(
            {"plugin_status": 2},
            labels={"service": "mysql"},
            check="mysql",
            output="MYSQL CRITICAL - replication lag 920 seconds",
        ),
    )
    (call,) = calls(service)
    assert "Detail:      MYSQL CRITICAL - replication lag 920 seconds" in call.description
    assert service.hosts()[0]["checks"][0]["output"].startswith("MYSQL CRITICAL")


def test_call_text_carries_dashboard_link_and_recent_measurements(
    make_service: MakeService, clock: FakeClock, web: Reporter
) -> None:
    service = make_service(
        [FS_RULE], dashboard_url="https://grafana.example/d/rw?var-host={{ host }}"
    )
    for value in (0.86, 0.88, 0.90, 0.91, 0.92, 0.93):
        feed(service, web, value)
        clock.advance(60)
    (call,) = calls(service)
    assert "Dashboard:   https://grafana.example/d/rw?var-host=web01" in call.description
    recent = call.description.split("Recent measurements:\n", 1)[1].splitlines()
    assert [line.split()[-1] for line in recent] == [
        "86.0%",
        "88.0%",
        "90.0%",
        "91.0%",
        "92.0%",
        "93.0%",
    ]


def test_custom_templates_shape_the_call(make_service: MakeService, clock: FakeClock) -> None:
    service = make_service(
        [{**FS_RULE, "for": "0s"}],
        templates={
            "summary": "{{ assign }}: {{ host }} {{ labels.mountpoint }} at {{ value_text }}",
            "description": "{{ rule }} on {{ host }} since {{ first_seen_text }}",
        },
    )
    feed(service, Reporter("web01", clock), 0.91)
    (call,) = calls(service)
    assert call.summary == "Systems Administration: web01 / at 91.0%"
    assert call.description == "filesystem_full on web01 since 2027-01-15 08:00:00 UTC"


@pytest.mark.parametrize(
    ("path", "template"),
    [
        pytest.param("templates -> summary", "{{ host ", id="unclosed tag in summary"),
        pytest.param("dashboard_url", "https://g/{% if %}", id="bad dashboard template"),
    ],
)
def test_template_mistakes_are_refused_at_load(tmp_path: Any, path: str, template: str) -> None:
    from checks.settings import ConfigError
    from tests.helpers import collector_config

    extra: Any = template  # the setting at `path`, nested as in collector.yaml
    for key in reversed(path.split(" -> ")):
        extra = {key: extra}
    with pytest.raises(ConfigError) as error:
        collector_config(tmp_path, None, **extra)
    assert error.value.path == path
    assert "template error at line 1" in error.value.message
