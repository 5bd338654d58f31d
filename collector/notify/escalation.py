"""Escalation: a call nobody acknowledged climbs its group's levels, one after the other.

A level comes `after` (default: the group's `respond_within`) the one before it, the first
after the call opened (or reopened). Each step tells that level's people (the rota's next
person, named people, plain channels) through the outbox, with the channels the rules choose
for `escalation`, and is written in the call's history and the audit log in the same
transaction as the level reached, which the store keeps: a restart goes on from there, and of
replicas sharing a store only the one whose step is written first tells anyone.

The evaluation tick runs `CallEscalations.steps` (by the replica holding the `evaluation` lead).
An acknowledgement (console, CLI, API, the help desk seen by two-way sync, a notification's
link: each writes an `acknowledged` event) or the call's resolution stops the climb.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collector.incidents.calls import Call, CallEvent
from collector.notify.config import EscalationLevel, NotifyConfig
from collector.notify.oncall import on_call, rotation
from collector.notify.plan import NotificationPlanner
from collector.store.records import AuditEntry, EscalationState
from runwatch import units

if TYPE_CHECKING:
    from collector.config import GroupConfig
    from collector.store.protocols import Store

log = logging.getLogger(__name__)

ACTOR = "runwatch"  # who the audit log says took an escalation step
VIA = "escalation"


@dataclass(frozen=True, slots=True)
class Reached:
    """Who one level told: names (people, `channel NAME`) and the channels they used."""

    names: tuple[str, ...]
    channels: tuple[str, ...]

    def words(self) -> str:
        return ", ".join(self.names) or "nobody (no one else in the rota)"


@dataclass(frozen=True, slots=True)
class EscalationStatus:
    """Where a call stands: the level reached (0: none yet), and when the next one comes."""

    level: int
    levels: int
    reached_at: float | None
    next_at: float | None  # None: the last level is reached, or the climb stopped
    next_names: tuple[str, ...]
    stopped: str = ""  # why it climbs no more: "acknowledged", "resolved"


def next_on_call(config: NotifyConfig, group: str, at: float) -> str | None:
    """The rota's next person after the one on call at `at` (None: nobody else in it)."""
    rota = config.rotas.get(group)
    duty = on_call(config, group, at)
    if rota is None or duty is None:
        return None
    turn, _, _ = rotation(rota, at)
    start = rota.people.index(turn)
    for step in range(1, len(rota.people) + 1):
        person = rota.people[(start + step) % len(rota.people)]
        if person != duty.person:
            return person
    return None


class CallEscalations:
    """Climb the escalation levels of open calls nobody acknowledged."""

    def __init__(
        self,
        notify: NotifyConfig,
        groups: dict[str, GroupConfig],
        store: Store,
        planner: NotificationPlanner,
    ) -> None:
        self._notify = notify
        self._groups = groups
        self._store = store
        self._planner = planner

    @property
    def enabled(self) -> bool:
        return bool(self._notify.escalation)

    def delay(self, group: str, level: EscalationLevel) -> float:
        """How long a level waits after the one before it (seconds)."""
        if level.after is not None:
            return float(level.after)
        config = self._groups.get(group)
        return float(config.respond_within) if config else 4 * 3600.0

    def run(self, now: float) -> int:
        """Take every step that is due at `now`, all at once; return how many were taken."""
        taken = [0]
        for _ in self.steps(now, float("inf"), taken):
            pass
        return taken[0]

    def steps(
        self, now: float, slice_seconds: float = 0.01, taken: list[int] | None = None
    ) -> Iterator[None]:
        """Take every step due at `now`, each in its own transaction, yielding every
        `slice_seconds` of work (the evaluation tick serves reports between the slices);
        `taken[0]` counts the steps taken."""
        if not self.enabled:
            return
        count = taken if taken is not None else [0]
        began = time.perf_counter()
        for state in self._store.escalation_candidates(sorted(self._notify.escalation)):
            due = self._due(state)
            if due is not None and due[1] <= now and self._step(state, due[0], now):
                count[0] += 1
            if time.perf_counter() - began >= slice_seconds:
                yield
                began = time.perf_counter()

    def status(self, call: Call, now: float) -> EscalationStatus | None:
        """The call's escalation, for the console (None: its group does not escalate)."""
        levels = self._notify.escalation.get(call.group)
        if not levels:
            return None
        state = self._store.escalation_of(call.id)
        if state is None:
            return None
        start = self._episode_start(state)
        level = state.level if state.reached_at is not None and state.reached_at >= start else 0
        reached = state.reached_at if level else None
        stopped = ""
        if call.status != "open":
            stopped = "resolved"
        elif any(e.kind == "acknowledged" for e in self._store.call_events(call.id)):
            stopped = "acknowledged"
        if stopped or level >= len(levels):
            return EscalationStatus(level, len(levels), reached, None, (), stopped)
        base = reached if reached is not None else start
        upcoming = levels[level]
        next_at = base + self.delay(call.group, upcoming)
        return EscalationStatus(
            level,
            len(levels),
            reached,
            next_at,
            self._reach(call.group, upcoming, max(now, next_at)).names,
        )

    def _episode_start(self, state: EscalationState) -> float:
        """When the call's current problem began for escalation: its open, or last reopening."""
        if not state.reopened:
            return state.opened_at
        reopened = [e.at for e in self._store.call_events(state.call_id) if e.kind == "reopened"]
        return max([state.opened_at, *reopened])

    def _due(self, state: EscalationState) -> tuple[int, float] | None:
        """The next level (1-based) and when it is due; None once the last one is reached."""
        levels = self._notify.escalation[state.group]
        start = self._episode_start(state)
        level, base = state.level, state.reached_at
        if base is None or base < start:
            level, base = 0, start  # a reopened call climbs again from the start
        if level >= len(levels):
            return None
        return level + 1, base + self.delay(state.group, levels[level])

    def _reach(self, group: str, level: EscalationLevel, now: float) -> Reached:
        names: list[str] = []
        channels: list[str] = []
        people = list(level.people)
        if level.next_on_call and (person := next_on_call(self._notify, group, now)):
            people.insert(0, person)
        for person in dict.fromkeys(people):
            names.append(person)
            channels += self._notify.people[person].channels
        for channel in level.channels:
            names.append(f"channel {channel}")
            channels.append(channel)
        return Reached(tuple(names), tuple(dict.fromkeys(channels)))

    def _step(self, state: EscalationState, level: int, now: float) -> bool:
        """Climb to `level` now, in one transaction; False if the call no longer needs it or
        someone (another replica) took this step first."""
        levels = self._notify.escalation[state.group]
        with self._store.transaction():
            call = self._store.get_call(state.call_id)
            if call is None or call.status != "open":
                return False
            if any(e.kind == "acknowledged" for e in self._store.call_events(call.id)):
                return False
            if not self._store.advance_escalation(call.id, level, now, state.steps):
                return False
            reach = self._reach(call.group, levels[level - 1], now)
            waited = units.duration(max(0.0, now - self._episode_start(state)))
            text = (
                f"Not acknowledged {waited} after it opened: escalated to {reach.words()} "
                f"(level {level} of {len(levels)}). {call.summary}"
            )
            self._store.add_call_event(CallEvent(call.id, now, "escalated", text))
            self._store.add_audit(
                AuditEntry(
                    0,
                    now,
                    ACTOR,
                    "call.escalate",
                    f"call {call.id}",
                    f"level {level} of {len(levels)}: {reach.words()}",
                    VIA,
                )
            )
            self._planner.notify(call, "escalation", text, now, to=reach.channels)
        log.info("call %d escalated to level %d: %s", call.id, level, reach.words())
        return True
