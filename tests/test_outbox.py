"""The outbox: ordered per call, idempotent on open, retried with backoff, never dropped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from collector.app import CollectorService
from collector.incidents.outbox import OutboxWorker, RetryPolicy
from collector.sinks.contract import NewTicket, RemoteStatus, SinkError, TicketRef
from collector.store.postgresql import DEFAULT_LEASE_SECONDS
from tests.helpers import FS_RULE, FakeClock, Reporter
from tests.helpers.sinks import outbox_worker


class RecordingSink:
    """A help desk in memory that can be told to fail: a test double for the outbox logic."""

    name = "desk"

    def __init__(self) -> None:
        self.tickets: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[str, str]] = []
        self.failures: list[SinkError] = []

    def _maybe_fail(self) -> None:
        if self.failures:
            raise self.failures.pop(0)

    def find(self, fingerprint: str) -> TicketRef | None:
        self._maybe_fail()
        for key, ticket in self.tickets.items():
            if ticket["fingerprint"] == fingerprint and ticket["state"] in ("new", "open"):
                return TicketRef(key)
        return None

    def open(self, ticket: NewTicket) -> TicketRef:
        self._maybe_fail()
        key = f"T{len(self.tickets) + 1}"
        self.tickets[key] = {
            "fingerprint": ticket.fingerprint,
            "state": "new",
            "priority": ticket.priority,
            "route": ticket.route,
            "idempotency_key": ticket.idempotency_key,
        }
        self.log.append(("open", key))
        return TicketRef(key)

    def comment(self, ref: TicketRef, text: str) -> None:
        self._maybe_fail()
        self.log.append(("comment", ref.remote_id))

    def update(self, ref: TicketRef, *, priority: str, summary: str, text: str) -> None:
        self._maybe_fail()
        self.tickets[ref.remote_id]["priority"] = priority
        self.log.append(("update", ref.remote_id))

    def resolve(self, ref: TicketRef, text: str, *, close: bool) -> None:
        self._maybe_fail()
        self.tickets[ref.remote_id]["state"] = "closed" if close else "resolved"
        self.log.append(("resolve", ref.remote_id))

    def reopen(self, ref: TicketRef, text: str) -> None:
        self._maybe_fail()
        self.tickets[ref.remote_id]["state"] = "open"
        self.log.append(("reopen", ref.remote_id))

    def status(self, ref: TicketRef) -> RemoteStatus:
        state = self.tickets[ref.remote_id]["state"]
        return RemoteStatus(state, state)


PRIORITY = {"CRITICAL": "P1", "WARNING": "P3", "UNKNOWN": "P3", "STALE": "P1"}


@pytest.fixture
def desk(
    make_service: Callable[..., CollectorService], clock: FakeClock, tmp_path: Path
) -> Iterator[tuple[CollectorService, RecordingSink, OutboxWorker]]:
    service = make_service([{**FS_RULE, "for": "0s"}])
    sink = RecordingSink()
    # The group's sink is external: wire the incident layer to enqueue for it.
    service.incidents._external = {"helpdesk": PRIORITY.__getitem__}
    policy = RetryPolicy(base_seconds=10, max_seconds=100)
    with outbox_worker(service, {"helpdesk": sink}, clock=clock, policy=policy) as worker:
        yield service, sink, worker


def feed(service: CollectorService, reporter: Reporter, value: float) -> None:
    service.ingest(reporter.host, reporter.report({"fs_used_ratio": value}))


def test_lifecycle_reaches_the_help_desk_in_order(desk: Any, clock: FakeClock) -> None:
    service, sink, worker = desk
    web = Reporter("web01", clock)
    feed(service, web, 0.90)
    feed(service, web, 0.97)
    feed(service, web, 0.50)
    assert worker.deliver_due() == 3
    assert [kind for kind, _ in sink.log] == ["open", "update", "resolve"]
    (ticket,) = sink.tickets.values()
    assert ticket["priority"] == "P1"
    assert ticket["state"] == "resolved"
    clock.advance(60)
    feed(service, web, 0.97)
    worker.deliver_due()
    assert sink.log[-1] == ("reopen", "T1")
    assert len(sink.tickets) == 1


def test_an_open_sent_again_carries_the_same_idempotency_key(desk: Any, clock: FakeClock) -> None:
    service, sink, worker = desk
    web = Reporter("web01", clock)
    feed(service, web, 0.97)
    sink.failures = [SinkError("timeout", retryable=True)]
    sink.find = lambda fingerprint: None  # type: ignore[method-assign]  # a desk it can't search
    # As if the first attempt had reached the desk before the answer was lost.
    real_open = sink.open
    keys = []

    def open_and_note(ticket: NewTicket) -> TicketRef:
        keys.append(ticket.idempotency_key)
        return real_open(ticket)

    sink.open = open_and_note  # type: ignore[method-assign]
    assert worker.deliver_due() == 0
    clock.advance(3600)
    assert worker.deliver_due() == 1
    (op,) = service.store.list_ops("done", 10)
    (call,) = service.calls("open", None)
    assert keys == [f"{call.fingerprint}-{op.id}"] * 2, "one key for every delivery of it"


def test_retryable_failures_back_off_and_block_only_their_call(desk: Any, clock: FakeClock) -> None:
    service, sink, worker = desk
    web, db = Reporter("web01", clock), Reporter("db01", clock)
    feed(service, web, 0.90)
    sink.failures = [SinkError("503", retryable=True, status=503, retry_after=30)]
    assert worker.deliver_due() == 0, "web01's open failed"
    feed(service, web, 0.50)  # its resolve waits behind the failed open
    feed(service, db, 0.90)  # db01 is not held up by web01
    assert worker.deliver_due() == 1
    assert [k for k, _ in sink.log] == ["open"]
    clock.advance(29)
    assert worker.deliver_due() == 0, "Retry-After: 30 s is honoured"
    clock.advance(2)
    assert worker.deliver_due() == 2
    assert [k for k, _ in sink.log] == ["open", "open", "resolve"]
    ops = service.store.list_ops(None, 10)
    assert all(op.status == "done" for op in ops)


def test_final_failure_is_a_dead_letter_until_retried(desk: Any, clock: FakeClock) -> None:
    service, sink, worker = desk
    web = Reporter("web01", clock)
    feed(service, web, 0.90)
    sink.failures = [SinkError("422 unknown tracker", retryable=False, status=422)]
    worker.deliver_due()
    feed(service, web, 0.50)
    worker.deliver_due()
    (dead,) = service.store.list_ops("dead", 10)
    assert dead.op == "open"
    assert "unknown tracker" in (dead.last_error or "")
    assert sink.log == [], "the resolve waits behind the dead open"
    assert service.store.retry_dead(None, clock()) == 1
    assert worker.deliver_due() == 2
    assert [k for k, _ in sink.log] == ["open", "resolve"]


def test_a_crash_between_create_and_record_never_duplicates(desk: Any, clock: FakeClock) -> None:
    service, sink, worker = desk
    feed(service, Reporter("web01", clock), 0.90)
    (op,) = service.store.due_ops(clock(), 10)
    # The ticket was created, then the collector died before marking the op delivered.
    sink.open(NewTicket(**op.payload["ticket"]))
    clock.advance(DEFAULT_LEASE_SECONDS + 1)  # on PostgreSQL, the dead one's claim runs out
    worker.deliver_due()
    assert len(sink.tickets) == 1, "found by fingerprint, not created again"
    assert service.store.get_link(op.call_id, "helpdesk").remote_id == "T1"


def test_identical_comments_are_skipped(desk: Any, clock: FakeClock) -> None:
    service, sink, worker = desk
    feed(service, Reporter("web01", clock), 0.90)
    call = service.store.get_call(1)
    with service.store.transaction():
        for _ in range(3):
            service.incidents._event(call, "comment", "Still failing: 90.0%", clock())
    assert [e.kind for e in service.store.call_events(1)] == ["opened", "comment"]
    worker.deliver_due()
    assert [k for k, _ in sink.log] == ["open", "comment"]


def test_two_way_sync_acknowledges_reopens_and_escalates(desk: Any, clock: FakeClock) -> None:
    from collector.incidents.sync import TicketSync

    service, sink, worker = desk
    sync = TicketSync(
        worker._store, {"helpdesk": sink}, service.config.groups, {"helpdesk": PRIORITY.__getitem__}
    )
    feed(service, Reporter("web01", clock), 0.90)  # WARNING: priority P3
    worker.deliver_due()
    (ticket,) = sink.tickets.values()

    # Nobody touches it for longer than the group's respond_within (4h): escalate, once.
    clock.advance(4 * 3600 + 1)
    assert sync.run_once(clock()) == 1
    worker.deliver_due()
    assert ticket["priority"] == "P1"
    assert sync.run_once(clock()) == 0, "escalated once only"

    # Someone picks it up: acknowledged.
    ticket["state"] = "open"
    sync.run_once(clock())
    link = service.store.get_link(1, "helpdesk")
    assert link.acknowledged_at == clock()
    # The help desk closes it, but the disk is still full: runwatch reopens it and says why.
    ticket["state"] = "closed"
    clock.advance(60)
    assert sync.run_once(clock()) == 1
    worker.deliver_due()
    assert ticket["state"] == "open"
    kinds = [e.kind for e in service.store.call_events(1)]
    assert kinds == ["opened", "severity", "acknowledged", "desk_reopened"]
    assert "the problem persists" in service.store.call_events(1)[-1].text
    assert len(sink.tickets) == 1


def test_discarding_a_dead_letter_lets_the_call_move_on(desk: Any, clock: FakeClock) -> None:
    service, sink, worker = desk
    web = Reporter("web01", clock)
    feed(service, web, 0.90)
    worker.deliver_due()
    sink.failures = [SinkError("403 cannot change a closed incident", retryable=False, status=403)]
    feed(service, web, 0.97)  # the update is refused for good
    worker.deliver_due()
    feed(service, web, 0.50)  # the resolve waits behind it
    worker.deliver_due()
    (dead,) = service.store.list_ops("dead", 10)
    with service.store.transaction():
        assert service.store.discard_dead(dead.id, clock()) == 1
    assert worker.deliver_due() == 1
    assert sink.log[-1] == ("resolve", "T1")


def test_desk_closure_under_new_call_policy_opens_a_new_call_later(
    desk: Any, clock: FakeClock
) -> None:
    from collector.config import GroupConfig
    from collector.incidents.sync import TicketSync

    service, sink, worker = desk
    policy = GroupConfig(
        sink="helpdesk",
        assign="Systems Administration",
        on_desk_close="new_call",
        new_call_after=600,
    )  # type: ignore[arg-type]
    groups = {**service.config.groups, "systems-administration": policy}
    service.config = msgspec.structs.replace(service.config, groups=groups)
    service.incidents._groups = dict(groups)
    sync = TicketSync(worker._store, {"helpdesk": sink}, groups, {"helpdesk": PRIORITY.__getitem__})
    web = Reporter("web01", clock)
    feed(service, web, 0.90)
    worker.deliver_due()
    sink.tickets["T1"]["state"] = "closed"  # the help desk closes it; disk still full
    assert sync.run_once(clock()) == 1, "a comment, no reopen, under this policy"
    worker.deliver_due()
    assert sink.log[-1] == ("comment", "T1")
    assert sink.tickets["T1"]["state"] == "closed"
    for _ in range(5):
        clock.advance(60)
        feed(service, web, 0.90)
        service.tick()
    assert len(service.calls("open", None)) == 1, "not yet: new_call_after is 10 minutes"
    for _ in range(6):
        clock.advance(60)
        feed(service, web, 0.90)
        service.tick()
    old, new = sorted(service.calls(None, None), key=lambda c: c.id)
    assert old.status == "resolved"
    assert new.status == "open" and new.id != old.id
    worker.deliver_due()
    assert sorted(sink.tickets) == ["T1", "T2"]
    clock.advance(60)
    feed(service, web, 0.50)
    assert service.store.get_call(new.id).status == "resolved"
