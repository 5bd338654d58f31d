"""Call texts that stay true: the description follows the call, silent hosts are named by the
time they went quiet, recoveries say when and after how long, every text links to the console,
and values read in human units (issue 19, section 2)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from checks.settings import ConfigError
from collector.app import CollectorService
from collector.config import collector_config_from_dict
from collector.incidents.calls import Problem
from collector.incidents.outbox import OutboxWorker
from collector.incidents.templates import CallTemplates
from collector.sinks.contract import NewTicket, RemoteStatus, TicketRef, keeps_description
from tests.helpers import FS_RULE, FakeClock, Reporter
from tests.helpers.sinks import outbox_worker

MakeService = Callable[..., CollectorService]
CONSOLE = "https://runwatch.example.org"
PRIORITY = {"CRITICAL": "P1", "WARNING": "P3", "UNKNOWN": "P3", "STALE": "P1"}


class DescribingDesk:
    """A help desk in memory that keeps descriptions, as Redmine does: it records every call."""

    name = "desk"
    keeps_description = True

    def __init__(self) -> None:
        self.log: list[tuple[str, dict[str, Any]]] = []

    def find(self, fingerprint: str) -> TicketRef | None:
        return None

    def open(self, ticket: NewTicket) -> TicketRef:
        self.log.append(("open", {"summary": ticket.summary, "description": ticket.description}))
        return TicketRef(f"T{len(self.log)}")

    def comment(self, ref: TicketRef, text: str) -> None:
        self.log.append(("comment", {"text": text}))

    def update(self, ref: TicketRef, **change: Any) -> None:
        self.log.append(("update", change))

    def resolve(self, ref: TicketRef, text: str, **change: Any) -> None:
        self.log.append(("resolve", {"text": text, **change}))

    def reopen(self, ref: TicketRef, text: str, **change: Any) -> None:
        self.log.append(("reopen", {"text": text, **change}))

    def status(self, ref: TicketRef) -> RemoteStatus:
        return RemoteStatus("new", "new")


@pytest.fixture
def desk(
    make_service: MakeService, clock: FakeClock
) -> Iterator[tuple[CollectorService, DescribingDesk, OutboxWorker]]:
    """A collector whose calls go to a describing desk, with `external_url` set."""
    service = make_service([{**FS_RULE, "for": "0s"}], external_url=CONSOLE)
    sink = DescribingDesk()
    assert keeps_description(sink)  # type: ignore[arg-type]
    service.incidents._external = {"helpdesk": PRIORITY.__getitem__}
    with outbox_worker(service, {"helpdesk": sink}, clock=clock) as worker:
        yield service, sink, worker


@pytest.fixture
def web(clock: FakeClock) -> Reporter:
    """web01, reporting on the test's clock."""
    return Reporter("web01", clock)


def feed(service: CollectorService, reporter: Reporter, value: float, after: float = 0) -> None:
    if after:
        assert isinstance(reporter.clock, FakeClock)
        reporter.clock.advance(after)
    service.ingest(reporter.host, reporter.report({"fs_used_ratio": value}))


def lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


def test_severity_change_rewrites_the_description_and_sends_it_with_the_update(
    desk: Any, web: Reporter
) -> None:
    service, sink, worker = desk
    feed(service, web, 0.88)
    (call,) = service.calls(None, None)
    link = f"Console: {CONSOLE}/calls/{call.id}"
    assert link in lines(call.description), "the console link is in the first text already"
    feed(service, web, 0.97, after=600)
    (call,) = service.calls(None, None)
    now = lines(call.description)
    assert "Severity: CRITICAL" in now
    assert "Value: 97.0%" in now
    assert "Threshold: >= 95.0%" in now
    assert "As of: 2027-01-15 08:10:00 UTC" in now
    assert "Severity: WARNING" not in now and "Value: 88.0%" not in now
    assert link in now
    worker.deliver_due()
    (kind, update) = sink.log[1]
    assert kind == "update"
    assert update["description"] == call.description, "the update carries the new text"
    assert update["text"].endswith(f"Console: {CONSOLE}/calls/{call.id}")
    assert "97.0% (critical >= 95.0%)" in update["summary"]


def test_recovery_note_and_description_say_when_it_recovered_and_after_how_long(
    desk: Any, web: Reporter
) -> None:
    service, sink, worker = desk
    feed(service, web, 0.97)
    feed(service, web, 0.50, after=80 * 60)
    (call,) = service.calls(None, None)
    assert call.status == "resolved"
    (note,) = [e.text for e in service.store.call_events(call.id) if e.kind == "resolved"]
    assert note.startswith(
        "Recovered at 2027-01-15 09:20:00 UTC, after 1 h 20 min: fs_used_ratio is 50.0%, "
        "below the clear threshold 80.0%."
    )
    assert note.endswith(f"Console: {CONSOLE}/calls/{call.id}")
    now = lines(call.description)
    assert now[0].startswith("Recovered: 2027-01-15 09:20:00 UTC, after 1 h 20 min")
    assert "Severity: OK (was CRITICAL)" in now
    assert "Value: 50.0%" in now
    assert "First seen: 2027-01-15 08:00:00 UTC" in now, "not the time of recovery"
    worker.deliver_due()
    (kind, resolve) = sink.log[-1]
    assert kind == "resolve"
    assert (resolve["text"], resolve["description"]) == (note, call.description)


def test_a_reopened_call_counts_its_duration_from_the_reopening(desk: Any, web: Reporter) -> None:
    service, _, _ = desk
    feed(service, web, 0.97)
    feed(service, web, 0.50, after=600)
    feed(service, web, 0.97, after=1200)  # within reopen_within: the same call again
    feed(service, web, 0.50, after=300)
    (call,) = service.calls(None, None)
    assert call.reopened == 1
    notes = [e.text for e in service.store.call_events(call.id) if e.kind == "resolved"]
    assert "after 10 min:" in notes[0]
    assert "after 5 min:" in notes[1]


def test_a_reopened_ticket_gets_the_current_description_back(desk: Any, web: Reporter) -> None:
    service, sink, worker = desk
    feed(service, web, 0.97)
    feed(service, web, 0.50, after=600)
    feed(service, web, 0.90, after=600)  # within reopen_within: the same call again
    worker.deliver_due()
    (kind, reopen) = sink.log[-1]
    assert kind == "reopen"
    (call,) = service.calls(None, None)
    assert reopen["description"] == call.description, "not the text of its recovery"
    now = lines(call.description)
    assert "Severity: WARNING" in now and "Value: 90.0%" in now
    assert not any(line.startswith("Recovered:") for line in now)


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
    assert "Last report: 2027-01-15 08:00:00 UTC (silent for 3 min 10 s when this was written)" in (
        text
    )
    assert "First seen: 2027-01-15 08:03:10 UTC" in text, "when the staleness was detected"
    assert f"Console: {CONSOLE}/calls/{call.id}" in text
    clock.advance(3600)
    service.tick()
    (later,) = service.calls(None, None)
    assert later.summary == call.summary, "the subject holds no duration that goes out of date"


def test_without_external_url_no_console_link(make_service: MakeService, clock: FakeClock) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}])
    feed(service, Reporter("web01", clock), 0.97)
    (call,) = service.calls(None, None)
    assert "Console:" not in call.description


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


def test_a_call_summary_fits_its_desk_subject_limit(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}])
    service.incidents._subject_limits = {"helpdesk": 120}
    web = Reporter("web01", clock)
    service.ingest("web01", web.report({"fs_used_ratio": 0.97}, labels={"mountpoint": "/" * 300}))
    (call,) = service.calls(None, None)
    assert len(call.summary) <= 120
    assert call.summary.endswith(": 97.0% (critical >= 95.0%)")


REDMINE_SINK = {"type": "redmine", "url": "http://127.0.0.1:9", "project": "monitoring"}


def redmine_config(tmp_path: Any, **sink: Any) -> Any:
    return collector_config_from_dict(
        {
            "data_dir": str(tmp_path),
            "sinks": {"desk": {**REDMINE_SINK, "api_key": {"env": "KEY"}, **sink}},
            "groups": {"ops": {"sink": "desk", "assign": "Operations"}},
        }
    )


def test_redmine_tracker_is_a_setting_with_a_support_default(tmp_path: Any) -> None:
    assert redmine_config(tmp_path).sinks["desk"].tracker == "Support"
    assert redmine_config(tmp_path, tracker="Incident").sinks["desk"].tracker == "Incident"
    with pytest.raises(ConfigError, match=r"sinks -> desk -> tracker.*must name a Redmine tracker"):
        redmine_config(tmp_path, tracker=" ")


def test_a_recovered_host_shows_its_report_time_without_a_silence(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service()
    web = Reporter("web01", clock, interval=60)
    feed(service, web, 0.5)
    clock.advance(190)
    service.tick()
    feed(service, web, 0.5, after=600)
    (call,) = service.calls(None, None)
    assert call.status == "resolved"
    text = lines(call.description)
    assert "Last report: 2027-01-15 08:13:10 UTC" in text, "no 'silent for 0 s'"
    assert "Severity: OK (was STALE)" in text
