"""Who is told of what: notification rules by group, event and severity, and quiet hours in a
time zone (WARNING waits for the morning; CRITICAL does not). The outbox entries are checked in
both stores; nothing here is sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.app import CollectorService
from collector.notify.config import QuietHours
from collector.store.records import OutboxOp
from tests.helpers import FS_RULE, FakeClock, Reporter

RULE = {**FS_RULE, "for": "0s", "match": {"mountpoint": "/"}}
OTHER = {
    **RULE,
    "name": "data_full",
    "owner": "computer-operations",
    "match": {"mountpoint": "/data"},
}
BERLIN = ZoneInfo("Europe/Berlin")


def hook(name: str) -> dict[str, Any]:
    return {"type": "apprise", "url": f"json://127.0.0.1:9/{name}"}


def make(
    make_service: Callable[..., CollectorService], rules: list[dict[str, Any]]
) -> CollectorService:
    channels = {name: hook(name) for rule in rules for name in rule["channels"]}
    return make_service([RULE, OTHER], notifications={"channels": channels, "rules": rules})


def feed(
    service: CollectorService, host: str, clock: FakeClock, value: float, mount: str = "/"
) -> None:
    reporter = Reporter(host, clock)
    reporter.seq = int(clock() - 1_700_000_000)  # increasing across calls, as an agent's
    service.ingest(host, reporter.report({"fs_used_ratio": value}, labels={"mountpoint": mount}))


def queued(service: CollectorService) -> list[OutboxOp]:
    return sorted(service.store.list_ops(None, 100), key=lambda op: op.id)


def what(service: CollectorService) -> list[tuple[str, str, str]]:
    """(channel, event, host) of every queued notification, in order."""
    return [
        (op.sink.removeprefix("notify:"), op.payload["event"], op.payload["call"]["host"])
        for op in queued(service)
        if op.sink.startswith("notify:")
    ]


def test_rules_choose_channels_by_group_and_event(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make(
        make_service,
        [
            {"groups": ["systems-administration"], "channels": ["sys"]},
            {"groups": ["computer-operations"], "channels": ["ops"], "events": ["open", "resolve"]},
            {"channels": ["everyone"], "events": ["resolve"]},
        ],
    )
    feed(service, "web01", clock, 0.90)
    feed(service, "db01", clock, 0.90, mount="/data")
    clock.advance(60)
    feed(service, "web01", clock, 0.97)
    feed(service, "db01", clock, 0.97, mount="/data")  # a severity change ops does not want
    clock.advance(60)
    feed(service, "web01", clock, 0.50)
    # computer-operations keeps a recovered call open (on_recovery: comment): no resolve yet.
    feed(service, "db01", clock, 0.50, mount="/data")
    assert what(service) == [
        ("sys", "open", "web01"),
        ("ops", "open", "db01"),
        ("sys", "severity", "web01"),
        ("sys", "resolve", "web01"),
        ("everyone", "resolve", "web01"),
    ]
    (db01,) = [c for c in service.calls(None, None) if c.host == "db01"]
    service.by_hand.resolve_call(db01.id, "alice", "checked the disk")
    assert what(service)[-2:] == [("ops", "resolve", "db01"), ("everyone", "resolve", "db01")]


def test_two_rules_naming_one_channel_send_one_message(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make(
        make_service,
        [{"channels": ["sys"]}, {"groups": ["systems-administration"], "channels": ["sys"]}],
    )
    feed(service, "web01", clock, 0.97)
    assert what(service) == [("sys", "open", "web01")]


def test_a_severity_limit_and_the_updates_that_follow_what_was_told(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make(make_service, [{"channels": ["pager"], "severities": ["CRITICAL"]}])
    feed(service, "web01", clock, 0.90)  # WARNING: not for the pager
    feed(service, "db01", clock, 0.90)
    assert what(service) == []
    clock.advance(60)
    feed(service, "web01", clock, 0.97)  # now CRITICAL: the pager hears of it
    clock.advance(60)
    feed(service, "web01", clock, 0.90)  # back to WARNING: told, since it was told before
    clock.advance(60)
    feed(service, "web01", clock, 0.50)
    feed(service, "db01", clock, 0.50)  # never CRITICAL: its resolve is not for the pager
    assert what(service) == [
        ("pager", "severity", "web01"),
        ("pager", "severity", "web01"),
        ("pager", "resolve", "web01"),
    ]
    first = queued(service)[0].payload
    assert (first["was"], first["call"]["severity"]) == ("WARNING", "CRITICAL")


def at_berlin(clock: FakeClock, day: int, hour: int, minute: int = 0) -> None:
    clock.now = datetime(2027, 1, day, hour, minute, tzinfo=BERLIN).timestamp()


def test_quiet_hours_hold_a_warning_until_the_morning_but_not_a_critical(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    quiet = {"start": "22:00", "end": "07:30", "timezone": "Europe/Berlin"}
    service = make(make_service, [{"channels": ["sys"], "quiet_hours": quiet}])
    at_berlin(clock, 15, 23, 10)
    feed(service, "web01", clock, 0.90)  # WARNING at 23:10: waits
    feed(service, "db01", clock, 0.90)
    morning = datetime(2027, 1, 16, 7, 30, tzinfo=BERLIN).timestamp()
    assert [op.next_attempt_at for op in queued(service)] == [morning, morning]
    assert service.store.due_ops(clock(), 10) == []

    at_berlin(clock, 16, 3, 0)
    feed(service, "web01", clock, 0.97)  # CRITICAL at 03:00: goes now, and what waited first
    due = service.store.due_ops(clock(), 10)
    assert [(op.payload["call"]["host"], op.payload["event"]) for op in due] == [
        ("web01", "open")
    ], "in order: the open before the severity change"
    web_ops = [op for op in queued(service) if op.payload["call"]["host"] == "web01"]
    assert [op.next_attempt_at for op in web_ops] == [clock(), clock()]
    db_op = next(op for op in queued(service) if op.payload["call"]["host"] == "db01")
    assert db_op.next_attempt_at == morning, "db01 is still only a WARNING"

    at_berlin(clock, 16, 8, 0)
    feed(service, "db01", clock, 0.50)  # resolved by day: goes at once, after its open
    assert service.store.due_ops(clock(), 10)[-1].payload["call"]["host"] == "db01"


@pytest.mark.parametrize(
    ("local", "severity", "released"),
    [
        ((15, 21, 59), "WARNING", (15, 21, 59)),  # before the quiet period
        ((15, 22, 0), "WARNING", (16, 7, 0)),  # its start: the next morning
        ((16, 6, 59), "STALE", (16, 7, 0)),  # after midnight: this morning
        ((16, 7, 0), "WARNING", (16, 7, 0)),  # its end
        ((15, 23, 0), "CRITICAL", (15, 23, 0)),  # urgent: at once
        # The night the clocks go forward (28 March 2027): 07:00 is still 07:00 local.
        ((27, 23, 0), "WARNING", (28, 7, 0)),
    ],
)
def test_the_end_of_the_quiet_period_in_local_time(
    local: tuple[int, int, int], severity: str, released: tuple[int, int, int]
) -> None:
    quiet = QuietHours(start="22:00", end="07:00", timezone="Europe/Berlin")
    month = 3 if local[0] >= 27 else 1
    now = datetime(2027, month, *local, tzinfo=BERLIN).timestamp()
    expected = datetime(2027, month, *released, tzinfo=BERLIN).timestamp()
    assert quiet.release_at(severity, now) == expected


def test_quiet_hours_within_a_day_and_their_urgent_list() -> None:
    lunch = QuietHours(start="12:00", end="13:30", urgent=["CRITICAL", "STALE"])
    noon = datetime(2027, 1, 15, 12, 15, tzinfo=ZoneInfo("UTC")).timestamp()
    assert lunch.release_at("WARNING", noon) == noon + 75 * 60
    assert lunch.release_at("STALE", noon) == noon
    assert lunch.release_at("WARNING", noon + 2 * 3600) == noon + 2 * 3600


def test_an_escalation_by_the_sync_is_told_with_the_ticket_link(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    from collector.incidents.sync import TicketSync
    from collector.notify.delivery import Notifications
    from collector.notify.plan import NotificationPlanner
    from tests.helpers.sinks import outbox_worker
    from tests.test_outbox import PRIORITY, RecordingSink

    service = make(make_service, [{"channels": ["lead"], "events": ["escalation"]}])
    sink = RecordingSink()
    service.incidents._external = {"helpdesk": PRIORITY.__getitem__}
    with outbox_worker(service, {"helpdesk": sink}, clock=clock) as worker:
        feed(service, "web01", clock, 0.90)
        worker.deliver_due()  # the ticket; nothing for `lead`, which wants escalations only
        assert what(service) == []
        planner = NotificationPlanner(
            service.config.notifications,
            worker._store,
            ticket_sinks={"systems-administration": "helpdesk"},
        )
        sync = TicketSync(
            worker._store,
            {"helpdesk": sink},
            service.config.groups,
            {"helpdesk": PRIORITY.__getitem__},
            notifications=planner,
        )
        clock.advance(4 * 3600 + 1)  # nobody acknowledged it within respond_within (4 h)
        sync.run_once(clock())
        assert what(service) == [("lead", "escalation", "web01")]
        (op,) = [op for op in queued(service) if op.sink == "notify:lead"]
        message = Notifications({}, console_url="https://rw.example.org").message(op, worker._store)
        assert "Not acknowledged within 4 h" in message.body
        assert message.subject.endswith("WARNING, not acknowledged: escalated")
        assert "Ticket:    T1" in message.body
        assert "Console:   https://rw.example.org/calls/" in message.body
        sync.run_once(clock())
        assert len(what(service)) == 1, "escalated, and told, once"


def test_notifications_in_the_outbox_metrics_and_a_held_one_is_not_late(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    quiet = {"start": "22:00", "end": "07:30", "timezone": "Europe/Berlin"}
    service = make(make_service, [{"channels": ["sys"], "quiet_hours": quiet}])

    def sample(name: str) -> float | None:
        return service.registry.get_sample_value(f"runwatch_outbox_{name}", {"sink": "notify:sys"})

    assert (sample("pending"), sample("oldest_pending_age_seconds")) == (0, 0)
    at_berlin(clock, 15, 23, 10)
    feed(service, "web01", clock, 0.90)  # held until 07:30
    clock.advance(3 * 3600)
    assert sample("pending") == 1
    assert sample("oldest_pending_age_seconds") == 0, "waiting for the morning is not late"
    at_berlin(clock, 16, 7, 45)
    assert sample("oldest_pending_age_seconds") == 15 * 60, "due since 07:30, not sent"
    assert sample("dead_letters") == 0
