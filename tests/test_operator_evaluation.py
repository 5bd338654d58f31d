"""Evaluation the way operators need it (issue 8), on an injected clock: staleness per check,
flapping, maintenance windows, dependencies and threshold overrides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from checks.schema import Report
from collector.app import CollectorService
from collector.incidents.calls import fingerprint
from tests.helpers import FS_RULE, FakeClock, Reporter
from tests.helpers.reports import measurement

MakeService = Callable[..., CollectorService]
FAST_FS = {**FS_RULE, "for": "0s"}


def feed(service: CollectorService, reporter: Reporter, value: float, **kw: Any) -> None:
    service.ingest(reporter.host, reporter.report({"fs_used_ratio": value}, **kw))


def labelled(report: Report, **labels: str) -> Report:
    return msgspec.structs.replace(report, labels=labels)


def open_calls(service: CollectorService) -> list[Any]:
    return service.calls("open", None)


def texts(service: CollectorService, call_id: int) -> list[str]:
    return [e.text for e in service.store.call_events(call_id)]


def kinds(service: CollectorService, call_id: int) -> list[str]:
    return [e.kind for e in service.store.call_events(call_id)]


# -- staleness per check ------------------------------------------------------------------------


def checks_report(reporter: Reporter, checks: dict[str, float]) -> Report:
    """One report from several checks, each with one measurement."""
    now = reporter.clock()
    return reporter.compose(
        [measurement(name, f"{name}_value", value, now) for name, value in checks.items()],
        [reporter.run(name) for name in checks],
    )


def first_report(service: CollectorService, clock: FakeClock) -> Reporter:
    """web01, after it sent `service` its first report, from its cpu and backup checks."""
    web = Reporter("web01", clock)
    service.ingest("web01", checks_report(web, {"cpu": 0.1, "backup": 1.0}))
    return web


def test_one_silent_check_opens_its_own_call_while_the_host_reports(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FAST_FS])
    web = first_report(service, clock)
    for _ in range(4):  # the backup check hangs; cpu goes on
        clock.advance(60)
        service.ingest("web01", checks_report(web, {"cpu": 0.1}))
        service.tick()
    (call,) = open_calls(service)
    assert call.rule == "check_stale"
    assert call.labels == {"check": "backup"}
    assert "check 'backup' has sent nothing for 4m" in call.summary
    assert "while the host still reports" in call.summary
    assert "no report since" not in call.summary, "not the words of a silent host"
    assert "One check on this host has stopped reporting" in call.description
    assert service.hosts()[0]["state"] == "UNKNOWN", "the host reports; one check is silent"

    clock.advance(60)
    service.ingest("web01", checks_report(web, {"cpu": 0.1, "backup": 1.0}))
    assert open_calls(service) == []
    assert "the check reports again" in texts(service, call.id)[-1]


def test_a_silent_host_gets_one_host_call_and_no_call_per_check(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FAST_FS])
    first_report(service, clock)
    for _ in range(5):
        clock.advance(60)
        service.tick()
    (call,) = open_calls(service)
    assert call.rule == "host_stale"
    assert "no report since" in call.summary


def test_a_check_silent_for_a_day_is_forgotten_and_its_call_resolved(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service(
        [FAST_FS],
        staleness={
            "after_intervals": 3,
            "owner": "systems-administration",
            "forget_checks_after": "2h",
        },
    )
    web = first_report(service, clock)
    for _ in range(130):
        clock.advance(60)
        service.ingest("web01", checks_report(web, {"cpu": 0.1}))
        service.tick()
    (call,) = service.calls(None, None)
    assert call.rule == "check_stale"
    assert call.status == "resolved"
    assert "forgotten" in texts(service, call.id)[-1]
    assert [c["check"] for c in service.hosts()[0]["checks"]] == ["cpu"]


# -- flapping -----------------------------------------------------------------------------------


def flapping_service(make_service: MakeService) -> CollectorService:
    return make_service([{**FAST_FS, "flapping": {"changes": 3, "window": "10m"}}])


def test_a_flapping_rule_keeps_one_call_open_and_resolves_after_a_stable_window(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = flapping_service(make_service)
    web = Reporter("web01", clock)
    for value in (0.9, 0.5, 0.9, 0.5, 0.97, 0.5, 0.9, 0.5):
        feed(service, web, value)
        clock.advance(60)
    (call,) = service.calls(None, None)
    assert call.status == "open", "flapping: the call stays open while the value is OK"
    assert call.severity == "CRITICAL", "the worst severity seen while flapping"
    notes = [t for t in texts(service, call.id) if "is flapping" in t]
    assert len(notes) == 1, "one note that it flaps, not one per change"
    (state,) = [s for k, s in service.fleet.states.items() if k[0] == "filesystem_full"]
    assert state.flapping
    assert (
        service.registry.get_sample_value(
            "runwatch_rule_flapping",
            {"host": "web01", "rule": "filesystem_full", "series": "mountpoint=/"},
        )
        == 1
    )
    assert service.registry.get_sample_value("runwatch_rules_flapping") == 1
    events_while_flapping = len(kinds(service, call.id))

    for _ in range(8):  # stable, but not yet for the whole window
        feed(service, web, 0.5)
        service.tick()
        clock.advance(60)
    assert service.store.get_call(call.id).status == "open"
    assert len(kinds(service, call.id)) == events_while_flapping, "no comment per report"
    for _ in range(3):
        feed(service, web, 0.5)
        service.tick()
        clock.advance(60)
    assert service.store.get_call(call.id).status == "resolved"
    assert "stable for 10 min after flapping" in texts(service, call.id)[-1]
    assert service.registry.get_sample_value("runwatch_rules_flapping") == 0
    assert len(service.calls(None, None)) == 1


def test_flapping_that_settles_on_a_problem_keeps_the_call_and_says_so(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = flapping_service(make_service)
    web = Reporter("web01", clock)
    for value in (0.9, 0.5, 0.9, 0.5, 0.9):
        feed(service, web, value)
        clock.advance(60)
    for _ in range(12):
        feed(service, web, 0.9)
        clock.advance(60)
    (call,) = service.calls(None, None)
    assert call.status == "open"
    assert "stopped flapping" in texts(service, call.id)[-1]
    (state,) = [s for k, s in service.fleet.states.items() if k[0] == "filesystem_full"]
    assert not state.flapping


def test_flapping_can_be_switched_off_for_a_rule(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service(
        [{**FAST_FS, "flapping": {"enabled": False}}],
        groups={
            "systems-administration": {"sink": "helpdesk", "assign": "SA", "reopen_within": "0s"}
        },
    )
    web = Reporter("web01", clock)
    for value in (0.9, 0.5) * 5:
        feed(service, web, value)
        clock.advance(60)
    assert len(service.calls(None, None)) == 5, "without flap detection every episode counts"


# -- maintenance windows ------------------------------------------------------------------------


def test_a_silenced_problem_opens_no_call_until_the_silence_ends(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FAST_FS])
    silence = service.add_silence(
        "alice", host="web*", rule="filesystem_*", duration=3600, reason="disk swap"
    )
    web = Reporter("web01", clock)
    feed(service, web, 0.97)
    assert open_calls(service) == []
    (problem,) = service.hosts()[0]["problems"]
    assert (problem["state"], problem["silenced"]) == ("CRITICAL", True), "tracked and shown"
    assert service.registry.get_sample_value("runwatch_maintenance_windows_active") == 1
    assert service.silences()[0]["created_by"] == "alice"
    assert service.silences()[0]["reason"] == "disk swap"
    for _ in range(59):
        clock.advance(60)
        feed(service, web, 0.97)
        service.tick()
    assert open_calls(service) == []
    clock.advance(61)
    service.tick()
    (call,) = open_calls(service)
    assert call.severity == "CRITICAL"
    assert call.first_seen == silence.starts_at, "first seen when it began, in the window"


def test_a_call_open_before_the_window_is_left_alone_then_resolved_after_it(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FAST_FS])
    web = Reporter("web01", clock)
    feed(service, web, 0.9)
    (call,) = open_calls(service)
    service.add_silence("bob", host="web01", rule="*", duration=600, reason="reboot")
    before = kinds(service, call.id)
    clock.advance(60)
    feed(service, web, 0.97)  # worse: no severity comment during the window
    clock.advance(60)
    feed(service, web, 0.5)  # better: no resolve during the window either
    for _ in range(7):  # to 9 minutes into the 10-minute window
        clock.advance(60)
        feed(service, web, 0.5)
        service.tick()
    assert kinds(service, call.id) == before
    assert service.store.get_call(call.id).status == "open"
    clock.advance(60)
    service.tick()
    assert service.store.get_call(call.id).status == "resolved"


def test_ending_a_silence_early_opens_the_held_back_call_at_once(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FAST_FS])
    silence = service.add_silence("carol", host="*", rule="*", duration=7200, reason="x")
    feed(service, Reporter("web01", clock), 0.9)
    assert open_calls(service) == []
    ended = service.end_silence(silence.id, "dave")
    assert ended is not None
    assert len(open_calls(service)) == 1
    assert service.store.list_silences(None)[0].ended_by == "dave"
    assert service.end_silence(silence.id, "dave") is None, "already over"


def test_weekly_window_from_the_config(make_service: MakeService, clock: FakeClock) -> None:
    # The clock starts on Friday 2027-01-15 08:00 UTC, i.e. 09:00 in Berlin.
    service = make_service(
        [FAST_FS],
        maintenance=[
            {
                "name": "friday-patching",
                "hosts": "web*",
                "rules": "*",
                "weekly": [{"days": ["fri"], "start": "08:30", "duration": "1h"}],
                "timezone": "Europe/Berlin",
                "reason": "weekly patching",
            }
        ],
    )
    web = Reporter("web01", clock)
    feed(service, web, 0.97)
    assert open_calls(service) == []
    (window,) = service.silences()
    assert window["active"] and window["source"] == "config"
    clock.advance(1799)
    service.tick()
    assert open_calls(service) == []
    clock.advance(2)
    service.tick()
    assert len(open_calls(service)) == 1
    other = Reporter("db01", clock)
    feed(service, other, 0.97)
    assert len(open_calls(service)) == 2


def test_silences_survive_a_restart(make_service: MakeService, clock: FakeClock) -> None:
    service = make_service([FAST_FS])
    service.add_silence("erin", host="web01", rule="*", duration=3600, reason="move")
    service.close()
    again = make_service([FAST_FS])
    feed(again, Reporter("web01", clock), 0.97)
    assert open_calls(again) == []


# -- dependencies -------------------------------------------------------------------------------


def test_children_of_a_silent_parent_go_into_its_call(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FAST_FS], parents={"web*": ["switch01"]})
    reporters = [Reporter(name, clock) for name in ("web01", "switch01", "web02")]
    for reporter in reporters:
        feed(service, reporter, 0.5)
    clock.advance(200)  # the switch fails: nobody behind it reports
    service.tick()
    (call,) = open_calls(service)
    assert call.host == "switch01"
    notes = texts(service, call.id)
    for child in ("web01", "web02"):
        assert any(t.startswith(f"{child} depends on switch01 and is silent too") for t in notes)
    clock.advance(60)
    service.tick()
    assert len(texts(service, call.id)) == len(notes), "noted once, not on every tick"
    web01 = next(h for h in service.hosts() if h["host"] == "web01")
    assert web01["state"] == "STALE"
    assert web01["problems"][0]["in_parent_call"] == call.id

    feed(service, reporters[0], 0.5)  # web01 is back first
    assert "web01 reports again" in texts(service, call.id)[-1]
    feed(service, reporters[1], 0.5)  # then the switch; web02 is still silent on its own
    assert service.store.get_call(call.id).status == "resolved"
    service.tick()
    (own,) = open_calls(service)
    assert (own.host, own.rule) == ("web02", "host_stale")


def test_a_critical_parent_takes_its_childrens_staleness(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FAST_FS], parents={"db01": ["san01"]})
    san, db = Reporter("san01", clock), Reporter("db01", clock)
    feed(service, db, 0.5)
    feed(service, san, 0.99)
    (san_call,) = open_calls(service)
    for _ in range(4):
        clock.advance(60)
        feed(service, san, 0.99)
        service.tick()
    assert [c.id for c in open_calls(service)] == [san_call.id]
    assert any(t.startswith("db01 depends on san01") for t in texts(service, san_call.id))


def test_a_host_without_a_failing_parent_gets_its_own_call(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FAST_FS], parents={"web*": ["switch01"]})
    switch, web = Reporter("switch01", clock), Reporter("web01", clock)
    feed(service, web, 0.5)
    for _ in range(4):
        feed(service, switch, 0.5)
        clock.advance(60)
        service.tick()
    (call,) = open_calls(service)
    assert (call.host, call.rule) == ("web01", "host_stale")


# -- overrides ----------------------------------------------------------------------------------

HOST_GROUPS = [
    {
        "name": "databases",
        "labels": {"role": "db*"},
        "thresholds": {"filesystem_full": {"warning": 0.92, "critical": 0.98, "clear": 0.9}},
    },
    {
        "name": "scratch",
        "hosts": ["*-tmp", "db9*"],
        "thresholds": {"filesystem_full": {"warning": 0.6, "critical": 0.7, "clear": 0.5}},
    },
]


@pytest.mark.parametrize(
    ("host", "labels", "reading"),
    [
        pytest.param("web01", {}, (0.90, "WARNING"), id="no group: the rule's thresholds"),
        pytest.param(
            "db01", {"role": "db-primary"}, (0.90, None), id="label group: higher warning"
        ),
        pytest.param(
            "db01", {"role": "db-primary"}, (0.99, "CRITICAL"), id="label group: critical"
        ),
        pytest.param("ci-tmp", {}, (0.65, "WARNING"), id="name group: lower warning"),
        pytest.param("db91", {"role": "db"}, (0.65, None), id="both match: the first group wins"),
    ],
)
def test_host_groups_carry_their_own_thresholds(
    make_service: MakeService,
    clock: FakeClock,
    host: str,
    labels: dict[str, str],
    reading: tuple[float, str | None],
) -> None:
    value, severity = reading
    service = make_service([FAST_FS], host_groups=HOST_GROUPS)
    reporter = Reporter(host, clock)
    service.ingest(host, labelled(reporter.report({"fs_used_ratio": value}), **labels))
    found = [c.severity for c in open_calls(service)]
    assert found == ([severity] if severity else [])


def test_explain_names_the_group_that_decides(make_service: MakeService, clock: FakeClock) -> None:
    service = make_service([FAST_FS], host_groups=HOST_GROUPS)
    db = Reporter("db91", clock)
    service.ingest("db91", labelled(db.report({"fs_used_ratio": 0.5}), role="db"))
    found = service.explain("db91", "filesystem_full")
    assert found is not None
    assert found["source"] == "host_groups -> 1 (databases)"
    assert found["effective_thresholds"]["warning"] == 0.92
    assert found["rule_thresholds"]["warning"] == 0.85
    assert [(g["name"], g["member"], g["applies"]) for g in found["host_groups"]] == [
        ("databases", True, True),
        ("scratch", True, False),
    ]
    assert "role=db matches 'db*'" in found["host_groups"][0]["why"]
    unknown = service.explain("web01", "filesystem_full")
    assert unknown is not None and unknown["source"] == "rule"
    assert service.explain("web01", "no_such_rule") is None


def test_a_labels_change_moves_the_host_between_groups(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FAST_FS], host_groups=HOST_GROUPS)
    db = Reporter("db01", clock)
    service.ingest("db01", labelled(db.report({"fs_used_ratio": 0.90}), role="db"))
    assert open_calls(service) == []
    clock.advance(60)
    service.ingest("db01", db.report({"fs_used_ratio": 0.90}))  # the role label was removed
    assert [c.severity for c in open_calls(service)] == ["WARNING"]


def test_fingerprints_of_builtin_rules_are_distinct() -> None:
    assert fingerprint("web01", "check_stale", {"check": "a"}) != fingerprint(
        "web01", "host_stale", {}
    )
