"""Incidents: carry out call decisions in the built-in call register, per the group's policy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.calls import PRIORITY, Call, CallEvent, Problem, description, fingerprint, summary
from collector.config import GroupConfig
from collector.rules import CallDecision, ChangeSeverity, OpenCall, ResolveCall
from collector.store import OutboxOp, Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CallCounters:
    """What happened to calls since start, by group (exported on /metrics)."""

    opened: dict[str, int] = field(default_factory=dict)
    reopened: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    resolved: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def bump(counter: dict[str, int], group: str) -> None:
        counter[group] = counter.get(group, 0) + 1


PriorityMap = Callable[[str], str]  # severity -> the sink's priority value


class IncidentManager:
    """Open, update, resolve and reopen calls. Call only inside a store transaction.

    The built-in register is always the record. When a group's sink is an external help desk,
    each change is also written to the outbox, in the same transaction, for delivery there.
    """

    def __init__(self, store: Store, groups: dict[str, GroupConfig],
                 counters: CallCounters | None = None,
                 external: Mapping[str, PriorityMap] | None = None,
                 on_enqueue: Callable[[], None] | None = None) -> None:
        self._store = store
        self._groups = groups
        self.counters = counters or CallCounters()
        self._external = external or {}
        self._on_enqueue = on_enqueue or (lambda: None)

    def apply(self, decision: CallDecision, problem: Problem, now: float) -> int | None:
        """Carry out one decision; return the id of the call that stays open, if any."""
        match decision:
            case OpenCall():
                return self._open(problem, now).id
            case ChangeSeverity(call_id=call_id, old=old, new=new):
                self._change_severity(call_id, problem, old.name, new.name, now)
                return call_id
            case ResolveCall(call_id=call_id, reason=reason):
                self._resolve(call_id, problem, reason, now)
                return None

    def _event(self, call: Call, kind: str, text: str, now: float,
               payload: dict[str, Any] | None = None) -> None:
        """Record a change in the call's history and, for an external sink, in the outbox."""
        if kind == "comment":
            events = self._store.call_events(call.id)
            if events and events[-1].text == text:
                return  # the same words again add nothing for the help desk
        self._store.add_call_event(CallEvent(call.id, now, kind, text))  # type: ignore[arg-type]
        sink = self._groups[call.group].sink if call.group in self._groups else None
        if sink is not None and sink in self._external:
            op = {"opened": "open", "comment": "comment", "severity": "update",
                  "resolved": "resolve", "reopened": "reopen"}[kind]  # every kind used here
            self._store.enqueue(OutboxOp(0, call.id, sink, op, payload or {"text": text}, now))
            self._on_enqueue()

    def _ticket(self, call: Call) -> dict[str, Any]:
        group = self._groups[call.group]
        priority = self._external[group.sink](call.severity)
        return {"fingerprint": call.fingerprint, "summary": call.summary,
                "description": call.description, "severity": call.severity,
                "priority": priority, "route": dict(group.route), "host": call.host,
                "rule": call.rule, "labels": call.labels}

    def _open(self, problem: Problem, now: float) -> Call:
        key = fingerprint(problem.host, problem.rule, problem.labels)
        group = self._groups[problem.group]
        existing = self._store.find_open_call(key)
        if existing is not None:
            # Never a second open call for one key: an open one (e.g. kept open by the
            # "comment" recovery policy) simply continues.
            self._refresh(existing, problem, now)
            self._event(existing, "comment", f"Problem seen again: {existing.summary}", now)
            CallCounters.bump(self.counters.updated, problem.group)
            return existing
        recent = self._store.find_resolved_call(key, now - float(group.reopen_within))
        if recent is not None:
            self._refresh(recent, problem, now)
            recent.status, recent.resolved_at = "open", None
            recent.reopened += 1
            self._store.update_call(recent)
            self._event(recent, "reopened",
                        f"The problem came back within {group.reopen_within}: {recent.summary}",
                        now)
            CallCounters.bump(self.counters.reopened, problem.group)
            log.info("call %d reopened: %s", recent.id, recent.summary)
            return recent
        call = Call(id=0, fingerprint=key, host=problem.host, rule=problem.rule,
                    labels=problem.labels, group=problem.group, assign=group.assign,
                    severity=problem.severity, priority=PRIORITY.get(problem.severity, "normal"),
                    status="open", summary=summary(problem), description=description(problem),
                    first_seen=problem.first_seen, opened_at=now, updated_at=now)
        call.id = self._store.insert_call(call)
        ticket = self._ticket(call) if group.sink in self._external else {}
        self._event(call, "opened", call.summary, now, {"ticket": ticket})
        CallCounters.bump(self.counters.opened, problem.group)
        log.info("call %d opened for %s: %s", call.id, problem.group, call.summary)
        return call

    def _refresh(self, call: Call, problem: Problem, now: float) -> None:
        call.severity = problem.severity
        call.priority = PRIORITY.get(problem.severity, "normal")
        call.summary = summary(problem)
        call.description = description(problem)
        call.updated_at = now
        self._store.update_call(call)

    def _change_severity(self, call_id: int, problem: Problem, old: str, new: str,
                         now: float) -> None:
        call = self._store.get_call(call_id)
        if call is None or call.status != "open":
            log.warning("call %d is gone or closed; cannot record %s -> %s", call_id, old, new)
            return
        self._refresh(call, problem, now)
        text = (f"Severity changed from {old} to {new} (priority {call.priority}): "
                f"{call.summary}")
        group = self._groups[call.group]
        priority = (self._external[group.sink](call.severity)
                    if group.sink in self._external else call.priority)
        self._event(call, "severity", text, now,
                    {"priority": priority, "summary": call.summary, "text": text})
        CallCounters.bump(self.counters.updated, problem.group)

    def _resolve(self, call_id: int, problem: Problem, reason: str, now: float) -> None:
        call = self._store.get_call(call_id)
        if call is None or call.status != "open":
            return
        group = self._groups.get(call.group)
        note = f"Recovered: {reason}." if reason else "Recovered."
        if group is not None and group.on_recovery == "comment":
            call.updated_at = now
            self._store.update_call(call)
            self._event(call, "comment", f"{note} Left open by the group's policy.", now)
            CallCounters.bump(self.counters.updated, call.group)
            return
        call.status, call.resolved_at, call.updated_at = "resolved", now, now
        self._store.update_call(call)
        close = group is not None and group.on_recovery == "close"
        self._event(call, "resolved", note, now, {"text": note, "close": close})
        CallCounters.bump(self.counters.resolved, call.group)
        log.info("call %d resolved: %s", call.id, note)
