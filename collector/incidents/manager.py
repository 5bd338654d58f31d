"""Incidents: carry out call decisions in the built-in call register, per the group's policy."""

from __future__ import annotations

import logging
from collections import deque
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
from collector.incidents.templates import MAX_SUMMARY, CallFacts, CallTemplates
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


class IncidentManager:
    """Open, update, resolve and reopen calls. Call only inside a store transaction.

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
    ) -> None:
        self._store = store
        self._timings = timings or CallTimings()
        self._groups = groups
        self.counters = counters or CallCounters()
        self._external = external or {}
        self._on_enqueue = on_enqueue or (lambda: None)
        self._storm = storm or StormConfig()
        self._templates = templates or CallTemplates()
        self._subject_limits = subject_limits or {}  # sink -> its longest subject
        self._recent_opens: dict[str, deque[float]] = {}  # sink -> times of new calls
        self._storms: dict[int, _StormTally] = {}  # umbrella call id -> its members here

    def apply(self, decision: CallDecision, problem: Problem, now: float) -> int | None:
        """Carry out one decision; return the id of the call that stays open, if any."""
        match decision:
            case OpenCall(flapping=flapping):
                call = self._open(problem, now)
                if flapping and call.rule != STORM_RULE:
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
        self, call: Call, kind: str, text: str, now: float, payload: dict[str, Any] | None = None
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

    def _storming(self, sink: str, now: float) -> bool:
        """Whether a new call on this sink would pass the storm limit; if not, count it."""
        opens = self._recent_opens.setdefault(sink, deque())
        window = float(self._storm.window)
        while opens and opens[0] <= now - window:
            opens.popleft()
        if len(opens) >= self._storm.max_calls:
            return True
        opens.append(now)
        return False

    def _hold_back(self, problem: Problem, key: str, now: float) -> Call:
        """List the problem on its group's umbrella call instead of opening a call of its own.

        Each held-back problem costs a row and a history entry; the umbrella's texts and its
        ticket are brought up to date at most every `storm.update_every` (`flush_storms`)."""
        group = self._groups[problem.group]
        line = self._templates.summary(problem)
        umbrella_key = fingerprint("*", STORM_RULE, {"group": problem.group})
        umbrella = self._store.find_open_call(umbrella_key)
        if umbrella is None:
            umbrella = Call(
                id=0,
                fingerprint=umbrella_key,
                host="*",
                rule=STORM_RULE,
                labels={"group": problem.group},
                group=problem.group,
                assign=group.assign,
                severity="CRITICAL",
                priority="high",
                status="open",
                summary="",
                description="",
                first_seen=now,
                opened_at=now,
                updated_at=now,
            )
            self._umbrella_text(umbrella, [(key, line)])
            umbrella.id = self._store.insert_call(umbrella)
            self._store.put_storm_member(umbrella.id, key, line)
            self._storms[umbrella.id] = _StormTally({key}, set(), sent_at=now)
            ticket = self._ticket(umbrella) if group.sink in self._external else {}
            self._event(umbrella, "opened", umbrella.summary, now, {"ticket": ticket})
            CallCounters.bump(self.counters.opened, problem.group)
            log.warning(
                "call storm for %s: more than %d new calls within %s; holding back "
                "new calls on umbrella call %d",
                problem.group,
                self._storm.max_calls,
                units.duration(float(self._storm.window)),
                umbrella.id,
            )
        else:
            self._store.put_storm_member(umbrella.id, key, line)
            tally = self._tally(umbrella.id, now)
            tally.active.add(key)
            tally.recovered.discard(key)
            tally.dirty = True
            # Recorded here; the desk hears of it with the next update of the umbrella.
            self._store.add_call_event(CallEvent(umbrella.id, now, "comment", f"Held back: {line}"))
            self._flush_storm(umbrella, tally, now)
        CallCounters.bump(self.counters.suppressed, problem.group)
        return umbrella

    def flush_storms(self, now: float) -> int:
        """Bring every umbrella with news up to date, in the register and in its help desk,
        where the last update is `storm.update_every` old; return how many were."""
        due = [
            umbrella_id
            for umbrella_id, tally in self._storms.items()
            if tally.dirty and now - tally.sent_at >= float(self._storm.update_every)
        ]
        flushed = 0
        for umbrella_id in due:
            with self._store.transaction():
                umbrella = self._store.get_call(umbrella_id)
                if umbrella is None or umbrella.status != "open":
                    self._storms.pop(umbrella_id, None)
                    continue
                flushed += self._flush_storm(umbrella, self._storms[umbrella_id], now)
        return flushed

    def _tally(self, umbrella_id: int, now: float) -> _StormTally:
        """The umbrella's members, read once per process (then kept up to date here)."""
        tally = self._storms.get(umbrella_id)
        if tally is None:
            members = self._store.storm_members(umbrella_id)
            recovered = {key for key, line in members if line.startswith(RECOVERED)}
            active = {key for key, _ in members} - recovered
            tally = self._storms[umbrella_id] = _StormTally(active, recovered, sent_at=now)
        return tally

    def _flush_storm(
        self, umbrella: Call, tally: _StormTally, now: float, *, force: bool = False
    ) -> int:
        """Write the umbrella's count and list, and send them to its ticket as one update,
        unless the last update is younger than `storm.update_every` (or nothing changed)."""
        if not tally.dirty or (not force and now - tally.sent_at < float(self._storm.update_every)):
            return 0
        tally.dirty, tally.sent_at = False, now
        members = self._store.storm_members(umbrella.id)
        self._umbrella_text(umbrella, members)
        umbrella.updated_at = now
        self._store.update_call(umbrella)
        sink = self._groups[umbrella.group].sink if umbrella.group in self._groups else None
        if sink is not None and sink in self._external:
            text = f"{umbrella.summary}. Every problem held back now:\n\n" + _member_lines(members)
            payload = {
                "priority": self._external[sink](umbrella.severity),
                "summary": umbrella.summary,
                "text": text,
                "brief": f"{umbrella.summary}. The list below is current.",
                "description": umbrella.description,
            }
            self._store.enqueue(OutboxOp(0, umbrella.id, sink, "update", payload, now))
            self._on_enqueue()
        return 1

    def _umbrella_text(self, umbrella: Call, members: list[tuple[str, str]]) -> None:
        recovered = sum(1 for _, line in members if line.startswith(RECOVERED))
        still = f", {recovered} of them recovered" if recovered else ""
        umbrella.summary = (
            f"[storm] {len(members)} problem(s) for {umbrella.assign} held back{still}: "
            f"more than {self._storm.max_calls} new calls within "
            f"{units.duration(float(self._storm.window))}"
        )
        umbrella.description = (
            "Too many problems at once to open a call for each (a network or power failure "
            "often looks like this). Each one is still watched; this call lists them and "
            "resolves when the last one has recovered.\n\n" + _member_lines(members)
        )

    def _storm_member_changed(
        self, umbrella: Call, problem: Problem, recovered: bool, now: float
    ) -> None:
        key = fingerprint(problem.host, problem.rule, problem.labels)
        line = self._templates.summary(problem)
        tally = self._tally(umbrella.id, now)
        if recovered:
            self._store.put_storm_member(umbrella.id, key, f"{RECOVERED}{line}")
            tally.active.discard(key)
            tally.recovered.add(key)
        else:
            self._store.put_storm_member(umbrella.id, key, line)
        self._storm_members_left(umbrella, tally, recovered, now)

    def drop_retired_member(self, umbrella_id: int, member: str, now: float) -> None:
        """Take a retired host's problem off its storm umbrella (resolved once none is left)."""
        umbrella = self._store.get_call(umbrella_id)
        if umbrella is None or umbrella.status != "open" or umbrella.rule != STORM_RULE:
            return
        self._store.drop_storm_member(umbrella.id, member)
        tally = self._tally(umbrella.id, now)
        tally.active.discard(member)
        tally.recovered.discard(member)
        self._storm_members_left(umbrella, tally, True, now)

    def _storm_members_left(
        self, umbrella: Call, tally: _StormTally, recovered: bool, now: float
    ) -> None:
        """An umbrella after a member changed: resolved when none still fails, else its list
        and ticket brought up to date (batched)."""
        tally.dirty = True
        if recovered and not tally.active:
            # Another replica may have held problems back on it since: the store decides.
            self._storms.pop(umbrella.id, None)
            tally = self._tally(umbrella.id, now)
            tally.dirty = True
        if recovered and not tally.active:
            self._flush_storm(umbrella, tally, now, force=True)  # the final list first
            self._storms.pop(umbrella.id, None)
            umbrella.status, umbrella.resolved_at, umbrella.updated_at = "resolved", now, now
            self._store.update_call(umbrella)
            self._event(
                umbrella,
                "resolved",
                "Recovered: every problem listed here has.",
                now,
                {"text": "Recovered: every problem listed here has.", "close": False},
            )
            CallCounters.bump(self.counters.resolved, umbrella.group)
            self._timings.resolved(umbrella.group, now - umbrella.opened_at)
            return
        self._flush_storm(umbrella, tally, now)

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
        self._store.update_call(call)

    def _change_severity(
        self, call_id: int, problem: Problem, old: str, new: str, now: float
    ) -> None:
        call = self._store.get_call(call_id)
        if call is None or call.status != "open":
            log.warning("call %d is gone or closed; cannot record %s -> %s", call_id, old, new)
            return
        if call.rule == STORM_RULE and problem.rule != STORM_RULE:
            self._storm_member_changed(call, problem, recovered=False, now=now)
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
        )
        CallCounters.bump(self.counters.updated, problem.group)

    def _resolve(self, call_id: int, problem: Problem, reason: str, now: float) -> None:
        call = self._store.get_call(call_id)
        if call is None or call.status != "open":
            return
        if call.rule == STORM_RULE and problem.rule != STORM_RULE:
            self._storm_member_changed(call, problem, recovered=True, now=now)
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


# How a held-back problem that has recovered is listed on its umbrella.
RECOVERED = "[recovered] "
_SHOWN_MEMBERS = 500


@dataclass(slots=True)
class _StormTally:
    """An umbrella's members as this process knows them, and when its ticket last heard."""

    active: set[str]  # fingerprints of the problems still held back
    recovered: set[str]
    sent_at: float
    dirty: bool = False  # members changed since the last update


def _member_lines(members: list[tuple[str, str]]) -> str:
    """One line per member, those still failing first, recovered ones marked."""
    ordered = sorted(members, key=lambda m: (m[1].startswith(RECOVERED), m[1]))
    shown = "\n".join(f"- {text}" for _, text in ordered[:_SHOWN_MEMBERS])
    more = len(ordered) - _SHOWN_MEMBERS
    return shown + (f"\n… and {more} more" if more > 0 else "")


def _flapping_note(rule: str, changes: int = 0, window: float = 0.0) -> str:
    counted = (
        f" ({changes} state changes within {units.duration(window)})" if changes and window else ""
    )
    return (
        f"{rule} is flapping{counted}. This call stays open through the changes and "
        "resolves only once the rule has been stable for the whole flapping window."
    )
