"""What one evaluation pass decided: the value evaluation returns and incidents/ writes.

A pass (one report, or one host's time-based evaluation) changes the in-memory view itself and
collects the rest here: the call decisions and notes, in the order they were taken, the history
points, and the series and checks that are gone. The writer in `incidents/writer.py` carries
them out and hands back the ids of the calls it opened; only then do the states that opened a
call know it (`PassRecorder.settle`), and the rule states and state changes go to the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from collector.evaluation.rules import CallDecision, ChangeSeverity, OpenCall, RuleState, Severity
from collector.incidents.calls import Problem
from collector.store.records import HistoryPoint, HistoryStep, RuleStateRecord, StateChange
from collector.view.fleet import Fleet, SeriesKey, StateKey

ProblemFor = Callable[[Severity, RuleState], Problem]


@dataclass(frozen=True, slots=True)
class Decision:
    """One call decision of `rules.step` for one state, with the problem the call shows."""

    key: StateKey
    decision: CallDecision
    problem: Problem


@dataclass(frozen=True, slots=True)
class Note:
    """A comment for an open call (a child host silent while its parent is down, or back)."""

    call_id: int
    text: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a pass asks of the incident manager and the store, in the order it decided it."""

    now: float
    calls: tuple[Decision | Note, ...] = ()
    history: tuple[HistoryPoint, ...] = ()
    steps: tuple[HistoryStep, ...] = ()
    dropped_series: tuple[SeriesKey, ...] = ()
    forgotten_checks: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Settled:
    """A pass's rule states and state changes, final once the calls it opened have ids."""

    states: tuple[RuleStateRecord, ...] = ()
    changes: tuple[StateChange, ...] = ()


class OutcomeWriter(Protocol):
    """Where outcomes go: incidents/writer.py, wired by app.py."""

    def apply(self, outcome: Outcome) -> list[int | None]:
        """Carry out the calls and removals; return the ids of the calls opened, in order."""
        ...

    def save(self, settled: Settled) -> None:
        """Store the rule states and state changes of a settled pass."""
        ...

    def prune_history(self, before: float) -> None:
        """Drop forecast history older than `before`."""
        ...

    def prune_steps(self, before: float, after: str, hosts: int) -> str | None:
        """Drop graph history older than `before` of the `hosts` hosts after `after`; return
        the last host pruned (None: no more hosts)."""
        ...


@dataclass(slots=True)
class _Opening:
    key: StateKey
    previous: RuleState
    state: RuleState
    severity: Severity
    forgotten: bool = False


@dataclass(slots=True)
class PassRecorder:
    """Collect one pass's decisions, and keep the view's rule states in step with them."""

    fleet: Fleet
    owners: dict[str, str]  # rule -> the group its state changes count for
    _calls: list[Decision | Note] = field(default_factory=list)
    _history: list[HistoryPoint] = field(default_factory=list)
    _steps: list[HistoryStep] = field(default_factory=list)
    _dropped: list[SeriesKey] = field(default_factory=list)
    _forgotten: list[tuple[str, str]] = field(default_factory=list)
    _openings: list[_Opening] = field(default_factory=list)
    _dirty: dict[StateKey, RuleState] = field(default_factory=dict)
    _changes: list[StateChange] = field(default_factory=list)

    def carry(
        self,
        key: StateKey,
        previous: RuleState,
        state: RuleState,
        decisions: tuple[CallDecision, ...],
        problem: ProblemFor,
    ) -> None:
        """Record a step's decisions. A state that opens a call waits for its id (settle())."""
        for decision in decisions:
            match decision:
                case OpenCall(severity=severity):
                    shown = problem(severity, state)
                case ChangeSeverity(new=new):
                    shown = problem(new, state)
                case _:
                    shown = problem(state.severity, state)
            self._calls.append(Decision(key, decision, shown))
        first = decisions[0] if decisions else None
        if isinstance(first, OpenCall):  # `step` decides an OpenCall alone
            self._openings.append(_Opening(key, previous, state, first.severity))
        else:
            self.remember(key, previous, state)

    def note(self, call_id: int, text: str) -> None:
        self._calls.append(Note(call_id, text))

    def add_history(self, points: list[HistoryPoint]) -> None:
        self._history.extend(points)

    def add_step(self, step: HistoryStep) -> None:
        self._steps.append(step)

    def drop_series(self, key: SeriesKey) -> None:
        step = self.fleet.steps.close(key)
        if step is not None:
            self._steps.append(step)  # its last step, kept
        self.fleet.drop_series(key)
        self._dropped.append(key)

    def forget_state(self, key: StateKey) -> None:
        """Forget a state in the view (after the call it opens in this pass, if any)."""
        for opening in self._openings:
            if opening.key == key:
                opening.forgotten = True
        self.fleet.forget_state(key)

    def forget_check(self, host: str, check: str) -> None:
        self.fleet.forget_check(host, check)
        self._forgotten.append((host, check))

    def remember(self, key: StateKey, previous: RuleState, state: RuleState) -> None:
        """Put a state into the view; keep it for the store if more than its value moved."""
        if state == previous:
            return
        self.fleet.set_state(key, state)
        # The value alone moves on every report; the store needs it only with a real change
        # (on restart the latest value comes back with the series anyway).
        if replace(state, value=None) != replace(previous, value=None):
            self._dirty[key] = state
        if state.severity is not previous.severity:
            at = state.changed_at
            if state.severity is Severity.STALE and state.value is not None:
                at -= state.value  # silence starts at the last report, not at its detection
            self._changes.append(
                StateChange(
                    at,
                    key[1],
                    key[0],
                    key[2],
                    self.owners.get(key[0], ""),
                    int(state.severity),
                )
            )

    def outcome(self, now: float) -> Outcome:
        """What this pass asks of the incident manager and the store."""
        if not (self._calls or self._history or self._steps or self._dropped or self._forgotten):
            return Outcome(now)
        outcome = Outcome(
            now,
            tuple(self._calls),
            tuple(self._history),
            tuple(self._steps),
            tuple(self._dropped),
            tuple(self._forgotten),
        )
        self._calls.clear()
        self._history.clear()
        self._steps.clear()
        self._dropped.clear()
        self._forgotten.clear()
        return outcome

    def settle(self, call_ids: Sequence[int | None]) -> Settled:
        """Give the states that opened a call its id; return the pass's records for the store."""
        for opening, call_id in zip(self._openings, call_ids, strict=True):
            state = replace(
                opening.state,
                call_id=call_id,
                call_severity=opening.severity if call_id is not None else Severity.OK,
            )
            self.remember(opening.key, opening.previous, state)
            if opening.forgotten:
                self.fleet.forget_state(opening.key)
        self._openings.clear()
        if not (self._dirty or self._changes):
            return _NOTHING
        settled = Settled(
            tuple(
                RuleStateRecord(rule, host, labels, state)
                for (rule, host, labels), state in self._dirty.items()
            ),
            tuple(self._changes),
        )
        self._dirty.clear()
        self._changes.clear()
        return settled


_NOTHING = Settled()
