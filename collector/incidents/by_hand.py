"""Calls in the built-in register handled by people: acknowledged, commented, resolved by hand,
and the audit log of what they did."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from collector.config import BuiltinSinkConfig, CollectorConfig
from collector.errors import Rejection
from collector.incidents.calls import Call, CallEvent, CallStatus
from collector.incidents.manager import CallCounters, CallTimings
from collector.notify.ack import VIA
from collector.notify.plan import NotificationPlanner
from collector.store.protocols import Store
from collector.store.records import AuditEntry, CallLink, OutboxOp
from collector.view.fleet import Fleet
from collector.view.replica import ReplicaSync

log = logging.getLogger(__name__)


LinkResult = Literal["acknowledged", "already", "resolved", "used", "unknown"]


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What using an acknowledge link did: acknowledged, or why not (already: acknowledged
    before; resolved; used: the link was used before; unknown: no such call)."""

    outcome: LinkResult
    call: Call | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallsByHand:
    """What operators do to calls through the API and the console, each change audited."""

    config: CollectorConfig
    store: Store
    fleet: Fleet
    replica: ReplicaSync
    counters: CallCounters
    timings: CallTimings
    clock: Callable[[], float]
    notifications: NotificationPlanner | None = None  # people hear of a call resolved by hand

    def audit(
        self, actor: str, action: str, target: str, detail: str = "", via: str = "api"
    ) -> None:
        """Record a change a person made (call inside the change's transaction when it has one)."""
        with self.store.transaction():
            self.store.add_audit(AuditEntry(0, self.clock(), actor, action, target, detail, via))

    def is_builtin_call(self, call: Call) -> bool:
        """Whether the call lives in the built-in register (handled here, not in a help desk)."""
        group = self.config.groups.get(call.group)
        sink = self.config.sinks.get(group.sink) if group else None
        return sink is None or isinstance(sink, BuiltinSinkConfig)

    def _handled_call(self, call_id: int) -> Call:
        call = self.store.get_call(call_id)
        if call is None:
            raise Rejection(404, "not_found", f"no call {call_id}")
        if not self.is_builtin_call(call):
            raise Rejection(
                409,
                "conflict",
                f"call {call_id} lives in the help desk "
                f"{self.config.groups[call.group].sink}: handle it there",
            )
        return call

    def acknowledged_at(self, call: Call) -> float | None:
        """When the call was first acknowledged: by hand here, or in its help desk."""
        for event in self.store.call_events(call.id):
            if event.kind == "acknowledged":
                return event.at
        group = self.config.groups.get(call.group)
        link = self.store.get_link(call.id, group.sink) if group else None
        return link.acknowledged_at if link else None

    def acknowledge_call(self, call_id: int, actor: str, via: str = "api") -> Call:
        """Acknowledge a built-in call: someone is on it. Once per call (409 after that)."""
        # Rejections are raised before the transaction: a frozen exception cannot pass
        # through a context manager (it sets __traceback__ on the way out).
        now = self.clock()
        call = self._handled_call(call_id)
        if call.status != "open":
            raise Rejection(409, "conflict", f"call {call_id} is resolved")
        if any(e.kind == "acknowledged" for e in self.store.call_events(call_id)):
            raise Rejection(409, "conflict", f"call {call_id} is already acknowledged")
        with self.store.transaction():
            self.store.add_call_event(
                CallEvent(call_id, now, "acknowledged", f"Acknowledged by {actor}.")
            )
            call.updated_at = now
            self.store.update_call(call)
            self.store.add_audit(
                AuditEntry(0, now, actor, "call.acknowledge", f"call {call_id}", call.summary, via)
            )
        self.timings.acknowledged(call.group, now - call.opened_at)
        log.info("%s acknowledged call %d", actor, call_id)
        return call

    def acknowledge_from_link(self, call_id: int, person: str, link_id: str) -> LinkOutcome:
        """Acknowledge a call for the person a notification's link was sent to, once per link
        (notify/ack.py). Works for calls in a help desk too: the acknowledgement goes there as
        a comment, and stops the desk's escalation as one seen there would."""
        now = self.clock()
        call = self.store.get_call(call_id)
        if call is None:
            return LinkOutcome("unknown", None)
        if self.store.ack_link_used(link_id) is not None:
            return LinkOutcome("used", call)
        text = f"Acknowledged by {person} via {VIA}."
        outcome: LinkResult
        with self.store.transaction():
            # Read again under the transaction: a racing use of the same link loses here.
            call = self.store.get_call(call_id)
            assert call is not None
            if call.status != "open":
                outcome = "resolved"
            elif self.acknowledged_at(call) is not None:
                outcome = "already"
            elif not self.store.use_ack_link(link_id, call_id, person, now):
                outcome = "used"
            else:
                outcome = "acknowledged"
                self.store.add_call_event(CallEvent(call_id, now, "acknowledged", text))
                call.updated_at = now
                self.store.update_call(call)
                if not self.is_builtin_call(call):
                    self._tell_desk(call, text, now)
                self.store.add_audit(
                    AuditEntry(
                        0, now, person, "call.acknowledge", f"call {call_id}", call.summary, VIA
                    )
                )
        if outcome == "acknowledged":
            self.timings.acknowledged(call.group, now - call.opened_at)
            log.info("%s acknowledged call %d via %s", person, call_id, VIA)
        return LinkOutcome(outcome, call)

    def _tell_desk(self, call: Call, text: str, now: float) -> None:
        """An acknowledgement made here, for a call in a help desk: a comment on its ticket,
        and the link marked acknowledged so the desk's escalation stops."""
        sink = self.config.groups[call.group].sink
        link = self.store.get_link(call.id, sink)
        if link is not None and link.acknowledged_at is None:
            link.acknowledged_at = now
            self.store.save_link(link)
        self.store.enqueue(OutboxOp(0, call.id, sink, "comment", {"text": text}, now))

    def comment_call(self, call_id: int, actor: str, text: str, via: str = "api") -> Call:
        """Add a person's comment to a built-in call."""
        text = text.strip()
        if not text:
            raise Rejection(422, "invalid", "the comment is empty", "text")
        now = self.clock()
        call = self._handled_call(call_id)
        with self.store.transaction():
            self.store.add_call_event(CallEvent(call_id, now, "comment", f"{actor}: {text}"))
            call.updated_at = now
            self.store.update_call(call)
            self.store.add_audit(
                AuditEntry(0, now, actor, "call.comment", f"call {call_id}", text[:500], via)
            )
        log.info("%s commented on call %d", actor, call_id)
        return call

    def resolve_call(self, call_id: int, actor: str, note: str = "", via: str = "api") -> Call:
        """Resolve a built-in call by hand. Like a help desk closing it: it is never reopened,
        and a problem that still holds opens a new call at the next evaluation."""
        now = self.clock()
        call = self._handled_call(call_id)
        if call.status != "open":
            raise Rejection(409, "conflict", f"call {call_id} is already resolved")
        # Another replica may have moved this host on: take it, and its latest view.
        with self.replica.hold([call.host], now) as held:
            self.store.retire_call(call_id, now)
            text = f"Resolved by {actor}" + (f": {note.strip()}" if note.strip() else ".")
            self.store.add_call_event(CallEvent(call_id, now, "resolved", text))
            if self.notifications is not None:
                self.notifications.call_event(call, "resolved", text, now)
            released = self.fleet.release_call(call_id)
            self.store.save_rule_states(released)
            held.changed(record.host for record in released)
            self.store.add_audit(
                AuditEntry(
                    0, now, actor, "call.resolve", f"call {call_id}", note.strip()[:500], via
                )
            )
        CallCounters.bump(self.counters.resolved, call.group)
        self.timings.resolved(call.group, now - call.opened_at)
        log.info("%s resolved call %d by hand", actor, call_id)
        resolved = self.store.get_call(call_id)
        assert resolved is not None
        return resolved

    def call_history(self, call_id: int) -> tuple[Call, list[CallEvent], CallLink | None] | None:
        """A call, its events oldest first, and its ticket in its group's help desk."""
        call = self.store.get_call(call_id)
        if call is None:
            return None
        group = self.config.groups.get(call.group)
        link = self.store.get_link(call_id, group.sink) if group else None
        return call, self.store.call_events(call_id), link

    def calls(self, status: CallStatus | None, group: str | None, limit: int = 500) -> list[Call]:
        return self.store.list_calls(status, group, limit)
