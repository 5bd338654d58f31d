"""Incidents: carry out call decisions in the built-in call register, per the group's policy."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.calls import PRIORITY, Call, CallEvent, Problem, description, fingerprint, summary
from collector.config import GroupConfig
from collector.rules import CallDecision, ChangeSeverity, OpenCall, ResolveCall
from collector.store import Store

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


class IncidentManager:
    """Open, update, resolve and reopen calls. Call only inside a store transaction."""

    def __init__(self, store: Store, groups: dict[str, GroupConfig],
                 counters: CallCounters | None = None,
                 on_change: Callable[[Call], None] | None = None) -> None:
        self._store = store
        self._groups = groups
        self.counters = counters or CallCounters()
        self._on_change = on_change or (lambda call: None)

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

    def _event(self, call: Call, kind: str, text: str, now: float) -> None:
        self._store.add_call_event(CallEvent(call.id, now, kind, text))  # type: ignore[arg-type]
        self._on_change(call)

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
        self._event(call, "opened", call.summary, now)
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
        self._event(call, "severity",
                    f"Severity changed from {old} to {new} (priority {call.priority}): "
                    f"{call.summary}", now)
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
        self._event(call, "resolved", note, now)
        CallCounters.bump(self.counters.resolved, call.group)
        log.info("call %d resolved: %s", call.id, note)
