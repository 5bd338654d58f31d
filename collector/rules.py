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


class Severity(IntEnum):
    """A rule's state for one series. The numbers are stable: they are exported as-is."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3  # the check that feeds the series failed
    STALE = 4    # nothing from the host for too long

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
    call_id: int | None = None          # the open call, if any
    call_severity: Severity = Severity.OK
    changed_at: float = 0.0
    detail: str = ""                    # e.g. the check's error message for UNKNOWN


@dataclass(frozen=True, slots=True)
class OpenCall:
    severity: Severity
    first_seen: float


@dataclass(frozen=True, slots=True)
class ChangeSeverity:
    call_id: int
    old: Severity
    new: Severity


@dataclass(frozen=True, slots=True)
class ResolveCall:
    call_id: int
    reason: str


CallDecision = OpenCall | ChangeSeverity | ResolveCall


def step(state: RuleState, observed: Severity, value: float | None, now: float,
         hold_for: float, *, detail: str = "", reason: str = "recovered"
         ) -> tuple[RuleState, CallDecision | None]:
    """Advance one state by one observation; return the new state and what to do with the call."""
    changed_at = state.changed_at if observed is state.severity else now
    if not observed.is_problem:
        new = RuleState(severity=observed, value=value, changed_at=changed_at)
        if state.call_id is not None:
            return new, ResolveCall(state.call_id, reason)
        return new, None

    since = state.problem_since if state.problem_since is not None else now
    new = replace(state, severity=observed, value=value, problem_since=since,
                  changed_at=changed_at, detail=detail)
    if state.call_id is not None:
        if observed is not state.call_severity:
            return (replace(new, call_severity=observed),
                    ChangeSeverity(state.call_id, state.call_severity, observed))
        return new, None
    if now - since >= hold_for:
        return new, OpenCall(observed, since)
    return new, None
