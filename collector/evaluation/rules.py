"""Rule evaluation: from an observed value to a severity, and from severities to call decisions.

Everything here is pure: time comes in as `now`, and the result is a new state plus the call
operations it implies. The incident layer carries those out.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, replace
from enum import IntEnum

from collector.config import RuleConfig
from runwatch import units


class Severity(IntEnum):
    """A rule's state for one series. The numbers are stable: they are exported as-is."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3  # the check that feeds the series failed
    STALE = 4  # nothing from the host for too long

    @property
    def is_problem(self) -> bool:
        return self is not Severity.OK


def matches(rule: RuleConfig, labels: dict[str, str]) -> bool:
    """Whether a series' labels satisfy the rule's `match` globs (a missing label never does)."""
    for key, pattern in rule.match.items():
        value = labels.get(key)
        if value is None or not fnmatch.fnmatchcase(value, pattern):
            return False
    return True


def classify(rule: RuleConfig, value: float, previous: Severity) -> Severity:
    """Severity of `value` under `rule`, with hysteresis: a problem ends only past `clear`."""
    if math.isnan(value):
        return Severity.UNKNOWN
    sign = 1.0 if rule.direction == "above" else -1.0
    v = sign * value
    if rule.critical is not None and v >= sign * rule.critical:
        return Severity.CRITICAL
    if rule.warning is not None and v >= sign * rule.warning:
        return Severity.WARNING
    if previous in (Severity.WARNING, Severity.CRITICAL) and v > sign * rule.clear_threshold:
        # Between `clear` and the first threshold: still a problem, at the mildest severity.
        return Severity.WARNING if rule.warning is not None else Severity.CRITICAL
    return Severity.OK


def threshold_for(rule: RuleConfig, severity: Severity) -> float | None:
    """The threshold that a severity stands for (the first one for UNKNOWN and held states)."""
    if severity is Severity.CRITICAL and rule.critical is not None:
        return rule.critical
    return rule.first_threshold


@dataclass(frozen=True, slots=True)
class RuleState:
    """Where one (host, rule, labels) stands."""

    severity: Severity = Severity.OK
    value: float | None = None
    problem_since: float | None = None  # first seen, for this episode of the problem
    call_id: int | None = None  # the open call, if any
    call_severity: Severity = Severity.OK
    changed_at: float = 0.0  # when the severity last changed; its first step for a new state
    detail: str = ""  # e.g. the check's error message for UNKNOWN
    changes: tuple[float, ...] = ()  # when the severity changed, within the flapping window
    flapping: bool = False
    peak: Severity = Severity.OK  # the worst severity seen while flapping
    call_flapping: bool = False  # the open call has been told that the rule flaps
    silenced: bool = False  # a maintenance window held back the last step's calls
    absorbed_by: int | None = None  # a parent's call that lists this problem (dependencies)


@dataclass(frozen=True, slots=True)
class StepPolicy:
    """How one rule turns severities into calls: `for`, flapping and maintenance."""

    hold_for: float = 0.0  # a problem must hold this long before a call
    flap_changes: int | None = None  # more changes than this within the window: flapping
    flap_window: float = 0.0
    silenced: bool = False  # in a maintenance window: track, but touch no call


@dataclass(frozen=True, slots=True)
class OpenCall:
    severity: Severity
    first_seen: float
    flapping: bool = False


@dataclass(frozen=True, slots=True)
class ChangeSeverity:
    call_id: int
    old: Severity
    new: Severity


@dataclass(frozen=True, slots=True)
class ResolveCall:
    call_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class NoteFlapping:
    """Tell the open call that its rule started (or stopped) flapping."""

    call_id: int
    flapping: bool
    changes: int
    window: float


CallDecision = OpenCall | ChangeSeverity | ResolveCall | NoteFlapping


def _flapping(
    state: RuleState, changed: bool, now: float, policy: StepPolicy
) -> tuple[tuple[float, ...], bool]:
    """The recent change times and whether the rule flaps after this step."""
    if policy.flap_changes is None:
        return (), False
    horizon = now - policy.flap_window
    changes = tuple(t for t in state.changes if t > horizon)
    if changed:
        changes += (now,)
    changes = changes[-(policy.flap_changes + 1) :]  # enough to tell; bounded in the store
    if len(changes) > policy.flap_changes:
        return changes, True
    # A flapping rule calms down only after a whole window without a change.
    return changes, state.flapping and bool(changes)


def step(
    state: RuleState,
    observed: Severity,
    value: float | None,
    now: float,
    policy: StepPolicy,
    *,
    detail: str = "",
    reason: str = "recovered",
) -> tuple[RuleState, tuple[CallDecision, ...]]:
    """Advance one state by one observation; return the new state and what to do with calls.

    Invariants: at most one call per state; a silenced step decides nothing; a flapping rule
    keeps its one call open and resolves it only after a whole window without a change.
    """
    changed = observed is not state.severity
    # A new state (never stepped: changed_at 0) starts now, OK or not: its "since" is its
    # first report, never the epoch.
    changed_at = now if changed or not state.changed_at else state.changed_at
    changes, flapping = _flapping(state, changed, now, policy)
    peak = Severity.OK
    if flapping:
        peak = max(state.peak, observed, state.severity)
    since = (
        (state.problem_since if state.problem_since is not None else now)
        if observed.is_problem
        else None
    )
    new = replace(
        state,
        severity=observed,
        value=value,
        problem_since=since,
        changed_at=changed_at,
        detail=detail if observed.is_problem else "",
        changes=changes,
        flapping=flapping,
        peak=peak,
        silenced=policy.silenced,
    )
    if policy.silenced:
        return new, ()
    if state.call_id is None:
        if flapping:
            first = state.problem_since if state.problem_since is not None else changes[0]
            return replace(new, call_flapping=True), (OpenCall(peak, first, flapping=True),)
        if observed.is_problem and since is not None and now - since >= policy.hold_for:
            return new, (OpenCall(observed, since),)
        return replace(new, call_flapping=False), ()
    return _with_call(state, new, observed, policy, reason)


def _with_call(
    state: RuleState, new: RuleState, observed: Severity, policy: StepPolicy, reason: str
) -> tuple[RuleState, tuple[CallDecision, ...]]:
    """What to do with the open call of a step that is not silenced."""
    call = state.call_id
    assert call is not None
    decisions: list[CallDecision] = []
    if new.flapping:
        if not state.call_flapping:
            decisions.append(NoteFlapping(call, True, len(new.changes), policy.flap_window))
            new = replace(new, call_flapping=True)
        if new.peak > state.call_severity:
            decisions.append(ChangeSeverity(call, state.call_severity, new.peak))
            new = replace(new, call_severity=new.peak)
        return new, tuple(decisions)
    if not observed.is_problem:
        if state.call_flapping:
            reason = (
                f"stable for {units.duration(policy.flap_window)} after flapping"
                if policy.flap_window
                else reason
            )
        return replace(new, call_id=None, call_severity=Severity.OK, call_flapping=False), (
            ResolveCall(call, reason),
        )
    if state.call_flapping:
        decisions.append(NoteFlapping(call, False, 0, policy.flap_window))
        new = replace(new, call_flapping=False)
    if observed is not state.call_severity:
        decisions.append(ChangeSeverity(call, state.call_severity, observed))
        new = replace(new, call_severity=observed)
    return new, tuple(decisions)
