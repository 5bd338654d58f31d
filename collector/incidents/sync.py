"""Two-way sync: what the help desk did with open calls, and what runwatch does about it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.config import GroupConfig
from collector.incidents.calls import Call, CallEvent
from collector.incidents.manager import CallTimings
from collector.notify.plan import NotificationPlanner
from collector.sinks.contract import (
    ACKNOWLEDGING,
    ActivityReader,
    DeskActivity,
    RemoteStatus,
    Sink,
    SinkError,
    TicketReading,
    TicketRef,
)
from collector.store.protocols import Store
from collector.store.records import CallLink, OutboxOp
from runwatch import units

log = logging.getLogger(__name__)

_CLOSED = ("resolved", "closed")
# Events that start a problem's life, and those that are a close in the desk within one.
_LIFE_STARTS = ("opened", "reopened")
_DESK_CLOSES = ("desk_reopened", "desk_closed")


@dataclass(frozen=True, slots=True)
class _Event:
    """One entry for the call's history and, with `op`, the outbox operation that carries it."""

    kind: str
    text: str
    at: float
    op: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


class TicketSync:
    """Read every open call's ticket, then, per the owner group's policy:

    - bring the notes people wrote in the help desk into the call's history;
    - record when the call was acknowledged: a person engaged with the ticket (a note, an
      assignment, a status change, as the sink's `acknowledge_on` says); a close is not one;
    - if the help desk resolved or closed it while the problem persists, reopen it with a
      comment that says why and what happens next, or, per `on_desk_close` and
      `on_repeated_close`, leave it closed;
    - if nobody acknowledged it within the group's `respond_within`, escalate once: a comment
      and the priority of a CRITICAL call.

    Runs in the outbox worker's thread and touches only the store: its actions go out
    through the outbox like every other call operation.
    """

    def __init__(
        self,
        store: Store,
        sinks: Mapping[str, Sink],
        groups: Mapping[str, GroupConfig],
        priorities: Mapping[str, Callable[[str], str]],
        *,
        timings: CallTimings | None = None,
        on_error: Callable[[str], None] | None = None,
        notifications: NotificationPlanner | None = None,
    ) -> None:
        self._store = store
        self._notifications = notifications
        self._timings = timings or CallTimings()
        self._on_error = on_error or (lambda sink: None)
        self._sinks = sinks
        self._groups = groups
        self._priorities = priorities

    def run_once(self, now: float) -> int:
        """Check every open call's ticket once; return how many operations were queued."""
        actions = 0
        for link in self._store.open_links():
            sink = self._sinks.get(link.sink)
            call = self._store.get_call(link.call_id)
            if sink is None or call is None or call.status != "open":
                continue
            if self._store.has_undelivered(link.call_id, link.sink):
                continue  # our own change is still on its way; judge after it lands
            try:
                reading = _read(sink, TicketRef(link.remote_id, link.url))
            except SinkError as exc:
                self._on_error(link.sink)
                log.warning(
                    "cannot read %s ticket %s (call %d): %s",
                    link.sink,
                    link.remote_id,
                    link.call_id,
                    exc,
                )
                continue
            actions += self._follow(sink, link, call, reading, now)
        return actions

    def _follow(
        self, sink: Sink, link: CallLink, call: Call, reading: TicketReading, now: float
    ) -> int:
        """Record what the desk did to one call's ticket and queue runwatch's answer."""
        group = self._groups.get(call.group)
        remote = reading.status
        history = self._store.call_events(call.id)
        link.checked_at = now
        events = _desk_comments(link.sink, reading.activity, history)
        events += self._acknowledge(sink, link, call, reading, now)
        remote_state = remote.state
        escalation = ""
        if remote.state in _CLOSED and link.remote_state not in _CLOSED:
            closed = _desk_closed(link, call, group, remote, history, now)
            events.append(closed)
            remote_state = "open" if closed.kind == "desk_reopened" else remote.state
        if (
            group is not None
            and link.acknowledged_at is None
            and link.escalated_at is None
            and remote_state not in _CLOSED  # left closed by policy: nobody to escalate to
            and now - call.opened_at > float(group.respond_within)
        ):
            link.escalated_at = now
            text = (
                f"Not acknowledged within {units.duration(float(group.respond_within))} "
                f"({group.assign}): escalated to high priority. {call.summary}"
            )
            priority = self._priorities[link.sink]("CRITICAL")
            payload = {"priority": priority, "summary": call.summary, "text": text}
            events.append(_Event("severity", text, now, "update", payload))
            escalation = text
        link.remote_state = remote_state
        actions = 0
        with self._store.transaction():
            if (
                escalation
                and self._notifications is not None
                # Its escalation levels tell people (collector/notify/escalation.py).
                and not self._notifications.escalates(call.group)
            ):
                self._notifications.notify(call, "escalation", escalation, now)
            self._store.save_link(link)
            for event in events:
                self._store.add_call_event(CallEvent(call.id, event.at, event.kind, event.text))  # type: ignore[arg-type]
                if event.op is not None:
                    self._store.enqueue(
                        OutboxOp(0, call.id, link.sink, event.op, event.payload, now)
                    )
                    actions += 1
        for event in events:
            log.info("call %d: %s", call.id, event.text)
        return actions

    def _acknowledge(
        self, sink: Sink, link: CallLink, call: Call, reading: TicketReading, now: float
    ) -> list[_Event]:
        """Record the acknowledgement: the first thing a person did that counts for this sink."""
        if link.acknowledged_at is not None:
            return []
        counted = getattr(sink, "acknowledge_on", frozenset(ACKNOWLEDGING))
        if isinstance(sink, ActivityReader):
            engaged = next((a for a in reading.activity if a.kind in counted), None)
            if engaged is None:
                return []
            at = min(max(engaged.at, call.opened_at), now)
            what = _engagement(engaged)
        elif (
            "status" in counted
            and reading.status.state == "open"
            and link.remote_state
            in (
                None,
                "new",
            )
        ):
            # A desk whose history is not read: only a move out of "new" by someone else
            # shows (runwatch's own reopen leaves the link "open", not "new").
            at, what = now, f"status {reading.status.raw}"
        else:
            return []
        link.acknowledged_at = at
        self._timings.acknowledged(call.group, at - call.opened_at)
        text = f"Acknowledged in {link.sink}: {what} after {units.duration(at - call.opened_at)}"
        return [_Event("acknowledged", text, at)]


def _read(sink: Sink, ref: TicketRef) -> TicketReading:
    """The ticket's status, and what people did to it where the sink can tell."""
    if isinstance(sink, ActivityReader):
        return sink.read_ticket(ref)
    return TicketReading(sink.status(ref))


def _engagement(activity: DeskActivity) -> str:
    """What a person did, in a few words: `a note by Ops User`."""
    if activity.kind == "comment":
        return f"a note by {activity.author}"
    if activity.kind == "assign":
        return f"assigned to {activity.text} by {activity.author}"
    return f"status {activity.text} set by {activity.author}"


def _desk_comments(
    sink: str, activity: Iterable[DeskActivity], history: list[CallEvent]
) -> list[_Event]:
    """People's notes in the desk not yet in the call's history, at the desk's own times."""
    seen = {(e.at, e.text) for e in history if e.kind == "desk_comment"}
    events = []
    for entry in activity:
        note = entry.text.strip()
        if entry.kind != "comment" or not note:
            continue
        text = f"{entry.author} in {sink}: {note}"
        if (entry.at, text) not in seen:
            seen.add((entry.at, text))
            events.append(_Event("desk_comment", text, entry.at))
    return events


def _closes_in_this_life(history: list[CallEvent]) -> int:
    """How often the desk closed the ticket since the problem (re)appeared."""
    closes = 0
    for event in history:
        if event.kind in _LIFE_STARTS:
            closes = 0
        elif event.kind in _DESK_CLOSES:
            closes += 1
    return closes


def _desk_closed(  # noqa: PLR0917 -- private, called once with everything it judges
    link: CallLink,
    call: Call,
    group: GroupConfig | None,
    remote: RemoteStatus,
    history: list[CallEvent],
    now: float,
) -> _Event:
    """The help desk closed the ticket while the problem persists: reopen it or leave it
    closed, per the group's policy, saying so and what happens next in a comment."""
    on_close = group.on_desk_close if group else "reopen"
    repeated = group.on_repeated_close if group else "open_new"
    new_call_after = units.duration(float(group.new_call_after)) if group else "30 min"
    earlier = _closes_in_this_life(history)
    said = f"It was {remote.raw} in the help desk, but the problem persists: {call.summary}."
    open_new = (
        f"runwatch leaves this ticket closed; if the problem still holds in {new_call_after}, "
        f"a new call opens with a new ticket."
    )
    if on_close == "new_call" or (earlier and repeated == "open_new"):
        link.desk_closed_at = now
        text = f"{said} {open_new}"
        return _Event("desk_closed", text, now, "comment", {"text": text})
    if earlier and repeated == "leave_closed":
        text = (
            f"{said} Closed {earlier + 1} times while the problem persists: runwatch leaves "
            f"this ticket closed and will not reopen it (on_repeated_close: leave_closed). "
            f"The call stays open in runwatch; its recovery will be noted here."
        )
        return _Event("desk_closed", text, now, "comment", {"text": text})
    if repeated == "keep_reopening":
        then = (
            "runwatch reopens it each time it is closed while the problem persists "
            "(on_repeated_close: keep_reopening)."
        )
    elif repeated == "leave_closed":
        then = (
            "If it is closed again while the problem persists, runwatch leaves it closed "
            "(on_repeated_close: leave_closed)."
        )
    else:
        then = (
            "If it is closed again while the problem persists, runwatch leaves it closed "
            f"and, if the problem still holds {new_call_after} later, opens a new call with "
            "a new ticket (on_repeated_close: open_new)."
        )
    text = (
        f"runwatch reopened this ticket. {said} It resolves by itself once the problem "
        f"clears. {then}"
    )
    return _Event("desk_reopened", text, now, "reopen", {"text": text})
