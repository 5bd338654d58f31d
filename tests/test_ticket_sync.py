"""Two-way sync with a desk that shows what people did (issue 19): a note, an assignment or a
status change acknowledges a call, a close does not; notes written in the desk reach the call's
history; the close and reopen loop ends by the group's `on_repeated_close`; and a desk-close
reopen is not a recurrence."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import pytest

from collector.config import GroupConfig
from collector.incidents.sync import TicketSync
from collector.sinks.contract import (
    ACKNOWLEDGING,
    DeskActivity,
    NewTicket,
    TicketReading,
    TicketRef,
)
from tests.helpers import FakeClock, Reporter
from tests.test_outbox import PRIORITY, RecordingSink, desk, feed

__all__ = ["desk"]  # the fixture, shared with the outbox tests

GROUP = "systems-administration"


class PeopleSink(RecordingSink):
    """A help desk in memory whose tickets have a history of what people did there."""

    def __init__(self, acknowledge_on: Iterable[str] = ACKNOWLEDGING) -> None:
        super().__init__()
        self.acknowledge_on = frozenset(acknowledge_on)
        self.activity: dict[str, list[DeskActivity]] = {}
        self.texts: list[tuple[str, str]] = []  # (operation, text) as the desk got them

    def open(self, ticket: NewTicket) -> TicketRef:
        ref = super().open(ticket)
        self.activity[ref.remote_id] = []
        return ref

    def comment(self, ref: TicketRef, text: str) -> None:
        super().comment(ref, text)
        self.texts.append(("comment", text))

    def reopen(self, ref: TicketRef, text: str) -> None:
        super().reopen(ref, text)
        self.texts.append(("reopen", text))

    def update(self, ref: TicketRef, *, priority: str, summary: str, text: str) -> None:
        super().update(ref, priority=priority, summary=summary, text=text)
        self.texts.append(("update", text))

    def read_ticket(self, ref: TicketRef) -> TicketReading:
        return TicketReading(self.status(ref), tuple(self.activity[ref.remote_id]))

    def person(self, kind: Any, at: float, text: str = "", author: str = "Ops User") -> None:
        """A person does something to the (only) ticket."""
        (ticket,) = self.activity
        self.activity[ticket].append(DeskActivity(at, kind, author, text))
        if kind == "close":
            self.tickets[ticket]["state"] = "closed"


def wire(desk: Any, sink: PeopleSink, **policy: Any) -> TicketSync:
    """Put `sink` behind the service's group, with `policy` on the group; return its sync."""
    service, _, worker = desk
    groups = dict(service.config.groups)
    groups[GROUP] = GroupConfig(sink="helpdesk", assign="Systems Administration", **policy)
    service.config = msgspec.structs.replace(service.config, groups=groups)
    service.incidents._groups = dict(groups)
    worker._sinks = {"helpdesk": sink}
    return TicketSync(worker._store, {"helpdesk": sink}, groups, {"helpdesk": PRIORITY.__getitem__})


def kinds(desk: Any, call_id: int = 1) -> list[str]:
    return [e.kind for e in desk[0].store.call_events(call_id)]


def test_a_note_in_the_desk_acknowledges_the_call_and_reaches_its_history(
    desk: Any, clock: FakeClock
) -> None:
    service, _, worker = desk
    sink = PeopleSink()
    sync = wire(desk, sink)
    feed(service, Reporter("web01", clock), 0.97)
    worker.deliver_due()
    opened = clock()
    sink.person("comment", opened + 5, "Looking at the disk now")
    clock.advance(30)
    sync.run_once(clock())
    assert kinds(desk) == ["opened", "desk_comment", "acknowledged"]
    note, ack = service.store.call_events(1)[1:]
    assert note.text == "Ops User in helpdesk: Looking at the disk now"
    assert note.at == opened + 5, "at the desk's own time"
    assert ack.text == "Acknowledged in helpdesk: a note by Ops User after 5 s"
    assert service.store.get_link(1, "helpdesk").acknowledged_at == opened + 5

    sync.run_once(clock())
    assert kinds(desk).count("desk_comment") == 1, "each note once"
    sink.person("comment", clock() + 1, "Freed 20 GiB", author="Ann Admin")
    clock.advance(30)
    sync.run_once(clock())
    assert service.store.call_events(1)[-1].text == "Ann Admin in helpdesk: Freed 20 GiB"
    assert kinds(desk).count("acknowledged") == 1
    assert [op for op, _ in sink.texts] == [], "nothing goes back to the desk for a note"


@pytest.mark.parametrize(
    ("acknowledge_on", "done", "acknowledged"),
    [
        pytest.param(ACKNOWLEDGING, "comment", True, id="a note counts by default"),
        pytest.param(ACKNOWLEDGING, "assign", True, id="an assignment counts by default"),
        pytest.param(ACKNOWLEDGING, "status", True, id="a status change counts by default"),
        pytest.param(ACKNOWLEDGING, "close", False, id="a close never counts"),
        pytest.param(("assign",), "comment", False, id="assign only: a note does not count"),
        pytest.param(("assign",), "assign", True, id="assign only: taking it counts"),
        pytest.param(("comment",), "status", False, id="comment only: a status does not"),
    ],
)
def test_what_acknowledges_a_call_is_the_desks_setting(
    desk: Any, clock: FakeClock, acknowledge_on: tuple[str, ...], done: str, acknowledged: bool
) -> None:
    service, _, worker = desk
    sink = PeopleSink(acknowledge_on)
    sync = wire(desk, sink)
    feed(service, Reporter("web01", clock), 0.97)
    worker.deliver_due()
    sink.person(done, clock() + 1, {"assign": "Ops User", "status": "In Progress"}.get(done, "x"))
    clock.advance(10)
    sync.run_once(clock())
    assert ("acknowledged" in kinds(desk)) is acknowledged
    assert (service.store.get_link(1, "helpdesk").acknowledged_at is not None) is acknowledged


def test_a_close_in_the_desk_is_no_acknowledgement_so_the_reopened_call_escalates(
    desk: Any, clock: FakeClock
) -> None:
    service, _, worker = desk
    sink = PeopleSink()
    sync = wire(desk, sink, respond_within=3600)
    feed(service, Reporter("web01", clock), 0.90)  # WARNING: P3
    worker.deliver_due()
    sink.person("close", clock() + 60)
    clock.advance(120)
    assert sync.run_once(clock()) == 1
    worker.deliver_due()
    assert sink.tickets["T1"]["state"] == "open"
    assert kinds(desk) == ["opened", "desk_reopened"]
    (op, text), *_ = sink.texts
    assert op == "reopen"
    assert "the problem persists" in text
    assert "resolves by itself once the problem clears" in text
    assert "If it is closed again while the problem persists" in text
    assert "(on_repeated_close: open_new)" in text

    clock.advance(3600)
    assert sync.run_once(clock()) == 1
    worker.deliver_due()
    assert kinds(desk)[-1] == "severity"
    assert sink.tickets["T1"]["priority"] == "P1", "escalated: nobody engaged"
    assert service.store.get_call(1).reopened == 0


def closed_twice(
    desk: Any, clock: FakeClock, **policy: Any
) -> tuple[PeopleSink, TicketSync, Reporter]:
    """A call whose ticket a person closes twice while the disk stays full, under `policy`."""
    service, _, worker = desk
    sink = PeopleSink()
    sync = wire(desk, sink, **policy)
    web = Reporter("web01", clock)
    feed(service, web, 0.97)
    worker.deliver_due()
    for _ in range(2):
        sink.person("close", clock() + 1)
        clock.advance(60)
        sync.run_once(clock())
        worker.deliver_due()
    return sink, sync, web


def test_a_second_close_keep_reopening(desk: Any, clock: FakeClock) -> None:
    sink, _, _ = closed_twice(desk, clock, on_repeated_close="keep_reopening")
    assert kinds(desk) == ["opened", "desk_reopened", "desk_reopened"]
    assert sink.tickets["T1"]["state"] == "open"
    assert "(on_repeated_close: keep_reopening)" in sink.texts[-1][1]


def test_a_second_close_open_new_leaves_the_ticket_closed_and_opens_a_new_call(
    desk: Any, clock: FakeClock
) -> None:
    service, _, worker = desk
    sink, sync, web = closed_twice(desk, clock, on_repeated_close="open_new", new_call_after=600)
    assert kinds(desk) == ["opened", "desk_reopened", "desk_closed"]
    assert sink.tickets["T1"]["state"] == "closed"
    op, text = sink.texts[-1]
    assert op == "comment", "the desk sees what happens next"
    assert "leaves this ticket closed" in text
    assert "a new call opens with a new ticket" in text
    assert sync.run_once(clock()) == 0, "no reopen"
    for _ in range(11):
        clock.advance(60)
        feed(service, web, 0.97)
        service.tick()
    old, new = sorted(service.calls(None, None), key=lambda c: c.id)
    assert (old.status, new.status) == ("resolved", "open")
    worker.deliver_due()
    assert sorted(sink.tickets) == ["T1", "T2"]


def test_a_second_close_leave_closed_keeps_the_call_open_here(desk: Any, clock: FakeClock) -> None:
    service, _, worker = desk
    sink, sync, web = closed_twice(
        desk, clock, on_repeated_close="leave_closed", respond_within=600
    )
    assert kinds(desk) == ["opened", "desk_reopened", "desk_closed"]
    assert "will not reopen it (on_repeated_close: leave_closed)" in sink.texts[-1][1]
    clock.advance(3600)
    assert sync.run_once(clock()) == 0, "neither reopened nor escalated"
    assert sink.tickets["T1"]["state"] == "closed"
    (call,) = service.calls("open", None)
    feed(service, web, 0.50)
    worker.deliver_due()
    assert service.store.get_call(call.id).status == "resolved"
    assert sink.log[-1] == ("resolve", "T1"), "the recovery is noted on the ticket"


def test_a_desk_close_reopen_is_not_a_recurrence(desk: Any, clock: FakeClock) -> None:
    service, _, worker = desk
    sink = PeopleSink()
    sync = wire(desk, sink)
    web = Reporter("web01", clock)
    feed(service, web, 0.97)
    worker.deliver_due()
    sink.person("close", clock() + 1)
    clock.advance(60)
    sync.run_once(clock())
    worker.deliver_due()
    assert service.store.get_call(1).reopened == 0
    feed(service, web, 0.50)  # a real recovery, then the problem comes back
    clock.advance(60)
    feed(service, web, 0.97)
    worker.deliver_due()
    assert kinds(desk) == ["opened", "desk_reopened", "resolved", "reopened"]
    assert service.store.get_call(1).reopened == 1
    # A new life: its first close in the desk reopens again (the count starts over).
    sink.person("close", clock() + 1)
    clock.advance(60)
    sync.run_once(clock())
    assert kinds(desk)[-1] == "desk_reopened"
