"""Incidents: carry out call decisions in the built-in call register, per the group's policy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from collector.config import STORM_RULE, GroupConfig, StormConfig
from collector.evaluation.rules import (
    CallDecision,
    ChangeSeverity,
    NoteFlapping,
    OpenCall,
    ResolveCall,
)
from collector.incidents.calls import PRIORITY, Call, CallEvent, Problem, fingerprint
from collector.incidents.service_calls import ServiceLevelCalls
from collector.incidents.storm import StormUmbrellas
from collector.incidents.templates import MAX_SUMMARY, CallFacts, CallTemplates
from collector.notify.plan import NotificationPlanner
from collector.store.protocols import Store
from collector.store.records import OutboxOp
from runwatch import units

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CallCounters:
    """What happened to calls since start, by group (exported on /metrics)."""

    opened: dict[str, int] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)
    reopened: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    resolved: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def bump(counter: dict[str, int], group: str) -> None:
        counter[group] = counter.get(group, 0) + 1


class CallTimings:
    """Where the collector reports how long calls took; the default does nothing."""

    def acknowledged(self, group: str, seconds: float) -> None:
        """A call was acknowledged in its help desk `seconds` after it opened."""

    def resolved(self, group: str, seconds: float) -> None:
        """A call was resolved `seconds` after it opened."""


PriorityMap = Callable[[str], str]  # severity -> the sink's priority value


class IncidentManager(StormUmbrellas, ServiceLevelCalls):
    """Open, update, resolve and reopen calls. Call only inside a store transaction.

    In a call storm, new problems go on an umbrella call instead (`collector.incidents.storm`).
    A service that is out has a call of its own (`collector.incidents.service_calls`).

    The built-in register is always the record. When a group's sink is an external help desk,
    each change is also written to the outbox, in the same transaction, for delivery there.
    """

    def __init__(
        self,
        store: Store,
        groups: dict[str, GroupConfig],
        *,
        counters: CallCounters | None = None,
        external: Mapping[str, PriorityMap] | None = None,
        on_enqueue: Callable[[], None] | None = None,
        storm: StormConfig | None = None,
        templates: CallTemplates | None = None,
        timings: CallTimings | None = None,
        subject_limits: Mapping[str, int] | None = None,
        notifications: NotificationPlanner | None = None,
    ) -> None:
        self._store = store
        self._notifications = notifications
        self._timings = timings or CallTimings()
        self._groups = groups
        self.counters = counters or CallCounters()
        self._external = external or {}
        self._on_enqueue = on_enqueue or (lambda: None)
        self._storm = storm or StormConfig()
        self._templates = templates or CallTemplates()
        self._subject_limits = subject_limits or {}  # sink -> its longest subject
        self._storms = {}
        # The services a problem affects, with the state it puts them in (collector/services/
        # watch.py, wired by app.py): calls name them, and their texts say so first.
        # The flag: the problem is over (a resolution).
        self.services_of: Callable[[Problem, bool], tuple[tuple[str, str, str], ...]] | None = None

    @property
    def notifications(self) -> NotificationPlanner | None:
        """What queues notifications for people, when rules are configured."""
        return self._notifications

    def apply(self, decision: CallDecision, problem: Problem, now: float) -> int | None:
        """Carry out one decision; return the id of the call that stays open, if any."""
        if self.services_of is not None:
            over = isinstance(decision, ResolveCall)
            problem = replace(problem, services=self.services_of(problem, over))
        match decision:
            case OpenCall(flapping=flapping):
                call = self._open(problem, now)
                if isinstance(call, int):  # held back on a storm umbrella: its id
                    return call
                if flapping:
                    self._event(call, "comment", _flapping_note(problem.rule), now)
                return call.id
            case NoteFlapping(call_id=call_id, flapping=flapping, changes=changes, window=window):
                found = self._store.get_call(call_id)
                if found is not None and found.status == "open" and found.rule != STORM_RULE:
                    text = (
                        _flapping_note(problem.rule, changes, window)
                        if flapping
                        else f"{problem.rule} has stopped flapping: no change for "
                        f"{units.duration(window)}. The call follows its state again."
                    )
                    self._event(found, "comment", text, now)
                    CallCounters.bump(self.counters.updated, found.group)
                return call_id
            case ChangeSeverity(call_id=call_id, old=old, new=new):
                self._change_severity(call_id, problem, old.name, new.name, now)
                return call_id
            case ResolveCall(call_id=call_id, reason=reason):
                self._resolve(call_id, problem, reason, now)
                return None

    def note(self, call_id: int, text: str, now: float) -> None:
        """Add a comment to an open call (a dependent host's news, for instance)."""
        call = self._store.get_call(call_id)
        if call is None or call.status != "open":
            return
        call.updated_at = now
        self._store.update_call(call)
        self._event(call, "comment", text, now)
        CallCounters.bump(self.counters.updated, call.group)

    def _event(
        self,
        call: Call,
        kind: str,
        text: str,
        now: float,
        payload: dict[str, Any] | None = None,
        *,
        was: str | None = None,
    ) -> None:
        """Record a change in the call's history and, for an external sink, in the outbox."""
        if kind == "comment":
            last = self._store.last_call_event(call.id)
            if last is not None and last.text == text:
                return  # the same words again add nothing for the help desk
        self._store.add_call_event(CallEvent(call.id, now, kind, text))  # type: ignore[arg-type]
        sink = self._groups[call.group].sink if call.group in self._groups else None
        if sink is not None and sink in self._external:
            op = {
                "opened": "open",
                "comment": "comment",
                "severity": "update",
                "resolved": "resolve",
                "reopened": "reopen",
            }[kind]  # every kind used here
            self._store.enqueue(OutboxOp(0, call.id, sink, op, payload or {"text": text}, now))
            self._on_enqueue()
        if self._notifications is not None:
            self._notifications.call_event(call, kind, text, now, was=was)

    def _ticket(self, call: Call) -> dict[str, Any]:
        group = self._groups[call.group]
        priority = self._external[group.sink](call.severity)
        return {
            "fingerprint": call.fingerprint,
            "summary": call.summary,
            "description": call.description,
            "severity": call.severity,
            "priority": priority,
            "route": dict(group.route),
            "host": call.host,
            "rule": call.rule,
            "labels": call.labels,
        }

    def _open(self, problem: Problem, now: float) -> Call | int:
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
            within = units.duration(float(group.reopen_within))
            text = f"The problem came back within {within}: {recent.summary}"
            self._event(
                recent, "reopened", text, now, {"text": text, "description": recent.description}
            )
            CallCounters.bump(self.counters.reopened, problem.group)
            log.info("call %d reopened: %s", recent.id, recent.summary)
            return recent
        if self._storming(group.sink, now):
            return self._hold_back(problem, key, now)
        call = Call(
            id=0,
            fingerprint=key,
            host=problem.host,
            rule=problem.rule,
            labels=problem.labels,
            group=problem.group,
            assign=group.assign,
            severity=problem.severity,
            priority=PRIORITY.get(problem.severity, "normal"),
            status="open",
            summary=self._summary(problem),
            description="",
            first_seen=problem.first_seen,
            opened_at=now,
            updated_at=now,
            services=[name for name, _, _ in problem.services],
        )
        call.id = self._store.insert_call(call)
        # Rendered once the call has its id, for the console link it carries.
        call.description = self._templates.description(problem, CallFacts(call.id, as_of=now))
        self._store.update_call(call)
        ticket = self._ticket(call) if group.sink in self._external else {}
        self._event(call, "opened", call.summary, now, {"ticket": ticket})
        CallCounters.bump(self.counters.opened, problem.group)
        log.info("call %d opened for %s: %s", call.id, problem.group, call.summary)
        return call

    def _summary(self, problem: Problem) -> str:
        """The summary, within the subject limit of the group's help desk."""
        group = self._groups.get(problem.group)
        limit = self._subject_limits.get(group.sink, MAX_SUMMARY) if group else MAX_SUMMARY
        return self._templates.summary(problem, min(limit, MAX_SUMMARY))

    def _console_line(self, call: Call) -> str:
        url = self._templates.call_url(call.id)
        return f"\nConsole: {url}" if url else ""

    def _refresh(self, call: Call, problem: Problem, now: float) -> None:
        call.severity = problem.severity
        call.priority = PRIORITY.get(problem.severity, "normal")
        call.summary = self._summary(problem)
        call.description = self._templates.description(problem, CallFacts(call.id, as_of=now))
        call.updated_at = now
        if problem.services:
            call.services = [name for name, _, _ in problem.services]
        self._store.update_call(call)

    def _change_severity(
        self, call_id: int, problem: Problem, old: str, new: str, now: float
    ) -> None:
        if self._umbrella_of(call_id, problem):
            self._storm_member_changed(call_id, problem, recovered=False, now=now)
            return
        call = self._store.get_call(call_id)
        if call is None or call.status != "open":
            log.warning("call %d is gone or closed; cannot record %s -> %s", call_id, old, new)
            return
        self._refresh(call, problem, now)
        text = (
            f"Severity changed from {old} to {new} (priority {call.priority}): {call.summary}"
            + self._console_line(call)
        )
        group = self._groups[call.group]
        priority = (
            self._external[group.sink](call.severity)
            if group.sink in self._external
            else call.priority
        )
        self._event(
            call,
            "severity",
            text,
            now,
            {
                "priority": priority,
                "summary": call.summary,
                "text": text,
                "description": call.description,
            },
            was=old,
        )
        CallCounters.bump(self.counters.updated, problem.group)

    def _resolve(self, call_id: int, problem: Problem, reason: str, now: float) -> None:
        if self._umbrella_of(call_id, problem):
            self._storm_member_changed(call_id, problem, recovered=True, now=now)
            return
        call = self._store.get_call(call_id)
        if call is None or call.status != "open":
            return
        group = self._groups.get(call.group)
        start = self._episode_start(call)
        facts = CallFacts(
            call.id, as_of=now, recovered_at=now, opened_at=start, was=call.severity, reason=reason
        )
        lasted = units.duration(max(0.0, now - start))
        note = f"Recovered at {units.timestamp(now)}, after {lasted}" + (
            f": {reason}." if reason else "."
        )
        if group is not None and group.on_recovery == "comment":
            call.updated_at = now
            self._store.update_call(call)
            text = f"{note} Left open by the group's policy.{self._console_line(call)}"
            self._event(call, "comment", text, now)
            CallCounters.bump(self.counters.updated, call.group)
            return
        call.description = self._templates.description(
            replace(problem, first_seen=call.first_seen), facts
        )
        call.status, call.resolved_at, call.updated_at = "resolved", now, now
        self._store.update_call(call)
        close = group is not None and group.on_recovery == "close"
        note += self._console_line(call)
        payload = {"text": note, "close": close, "description": call.description}
        self._event(call, "resolved", note, now, payload)
        CallCounters.bump(self.counters.resolved, call.group)
        self._timings.resolved(call.group, now - call.opened_at)
        log.info("call %d resolved: %s", call.id, note)

    def _episode_start(self, call: Call) -> float:
        """When the problem the call now stands for began: first seen, or its last reopening."""
        if not call.reopened:
            return call.first_seen
        reopened = [e.at for e in self._store.call_events(call.id) if e.kind == "reopened"]
        return max([call.first_seen, *reopened])

    def resolve_retired(self, call: Call, text: str, now: float) -> None:
        """Resolve an open call of a host an operator retired, with `text` (who and why), in
        the register and, through the outbox, in its help desk."""
        if call.status != "open":
            return
        group = self._groups.get(call.group)
        call.status, call.resolved_at, call.updated_at = "resolved", now, now
        self._store.update_call(call)
        close = group is not None and group.on_recovery == "close"
        self._event(call, "resolved", text, now, {"text": text, "close": close})
        CallCounters.bump(self.counters.resolved, call.group)
        self._timings.resolved(call.group, now - call.opened_at)
        log.info("call %d resolved: %s", call.id, text)


def _flapping_note(rule: str, changes: int = 0, window: float = 0.0) -> str:
    counted = (
        f" ({changes} state changes within {units.duration(window)})" if changes and window else ""
    )
    return (
        f"{rule} is flapping{counted}. This call stays open through the changes and "
        "resolves only once the rule has been stable for the whole flapping window."
    )
