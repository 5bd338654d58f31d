"""Staleness: a host whose agent stopped reporting, and a single check that did while the host
still reports. Both are rules of their own (`STALE_RULE`, `CHECK_STALE_RULE`) with the
`staleness` section's owner, `for` and limits."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from checks.settings import format_duration
from collector.config import CHECK_STALE_RULE, STALE_RULE, CollectorConfig
from collector.evaluation.maintenance import MaintenanceCalendar
from collector.evaluation.outcome import PassRecorder, ProblemFor
from collector.evaluation.parents import HostParents
from collector.evaluation.rules import CallDecision, RuleState, Severity, StepPolicy, step
from collector.incidents.calls import Problem, labels_key
from collector.view.fleet import Fleet, StateKey
from runwatch import units

_HOST_DESCRIPTION = (
    "The agent on this host has stopped reporting. Check that the host is up, that the runwatch "
    "agent runs, and that it can reach the collector."
)
_CHECK_DESCRIPTION = (
    "One check on this host has stopped reporting, while the agent and its other checks still "
    "report. Check the check's config and the agent's log (a hung plugin, a removed backup job)."
)


def check_silent_for(fleet: Fleet, host: str, check: str, now: float) -> float:
    """How long a check of the host has sent nothing (0 for one never seen)."""
    return now - fleet.check_seen_at.get((host, check), now)


def host_heard_after(fleet: Fleet, host: str, check: str) -> bool:
    """Whether the host still reports without the check: its last report came a whole
    interval or more after the check's last run was seen."""
    record = fleet.hosts[host].record
    seen = fleet.check_seen_at.get((host, check), record.last_report_at)
    return record.last_report_at - seen >= record.interval_seconds


def check_limit(fleet: Fleet, host: str, check: str, factor: float) -> float:
    """How long a check may be silent before it is stale: `factor` of its interval, and never
    below the host's."""
    state = fleet.hosts[host]
    status = state.checks.get(check)
    interval = status.interval_seconds if status else state.record.interval_seconds
    return factor * max(interval, state.record.interval_seconds)


@dataclass(slots=True)
class Staleness:
    """Evaluate the staleness of hosts and of single checks, recording into a pass."""

    config: CollectorConfig
    fleet: Fleet
    recorder: PassRecorder
    calendar: MaintenanceCalendar
    parents: HostParents

    def tick_check(self, host: str, check: str, now: float, factor: float) -> None:
        """The time-based evaluation of one check of a host that still reports."""
        staleness = self.config.staleness
        if not staleness.checks:
            return
        silent_for = check_silent_for(self.fleet, host, check, now)
        if silent_for > float(staleness.forget_checks_after):
            self._forget_check(host, check, now)
            return
        stale = silent_for > check_limit(self.fleet, host, check, factor)
        if stale and not host_heard_after(self.fleet, host, check):
            # The check fell silent with the whole host (an agent stopped just after a report
            # without check runs): that is host_stale's to say, a moment later, not this one's.
            return
        self.check(host, check, stale=stale, now=now)

    def _forget_check(self, host: str, check: str, now: float) -> None:
        """A check silent for very long was most likely removed from the agent's config."""
        key = (CHECK_STALE_RULE, host, labels_key({"check": check}))
        state = self.fleet.states.get(key)
        if state is not None and state.call_id is not None:
            self.check(
                host,
                check,
                stale=False,
                now=now,
                reason=f"the check has not reported for "
                f"{format_duration(float(self.config.staleness.forget_checks_after))} "
                "and is forgotten (removed from the agent's config?)",
            )
        self.recorder.forget_state(key)
        self.recorder.forget_check(host, check)

    def check(
        self,
        host: str,
        check: str,
        *,
        stale: bool,
        now: float,
        reason: str = "the check reports again",
    ) -> None:
        """Evaluate whether one check of a host is stale."""
        key = (CHECK_STALE_RULE, host, _check_key(check))
        previous = self.fleet.states.get(key, _FRESH)
        if not stale and previous == RuleState(changed_at=previous.changed_at):
            return  # the common case: a check that reports as it should
        state_ = self.fleet.hosts[host]
        status = state_.checks.get(check)
        interval = max(status.interval_seconds if status else 0.0, state_.record.interval_seconds)
        silent_for = max(0.0, check_silent_for(self.fleet, host, check, now))
        reporting = (
            " while the host still reports"
            if host_heard_after(self.fleet, host, check)
            else "; the host has sent nothing since either"
        )
        detail = (
            f"check {check!r} has sent nothing for {format_duration(silent_for)} "
            f"(expected every {format_duration(interval)}){reporting}"
            if stale
            else ""
        )
        state, decisions = self._step(
            key, previous, stale=stale, silent_for=silent_for, detail=detail, reason=reason, now=now
        )
        problem = self._problem(key, {"check": check}, interval, _CHECK_DESCRIPTION, now)
        self.recorder.carry(key, previous, state, self._owned(decisions), problem)

    def host(self, host: str, *, stale: bool, now: float) -> None:
        """Evaluate whether a host is stale: no report for longer than its limit."""
        key = (STALE_RULE, host, "{}")
        previous = self.fleet.states.get(key, _FRESH)
        if not stale and previous == RuleState(changed_at=previous.changed_at):
            return  # the common case: a healthy host reporting again
        record = self.fleet.hosts[host].record
        silent_for = max(0.0, now - record.last_report_at)
        detail = (
            (
                # A time, not a duration: the call's subject stays true while it waits.
                f"no report since {units.timestamp(record.last_report_at)} (expected every "
                f"{units.duration(record.interval_seconds)})"
            )
            if stale
            else ""
        )
        state, decisions = self._step(
            key,
            previous,
            stale=stale,
            silent_for=silent_for,
            detail=detail,
            reason="the host reports again",
            now=now,
        )
        if stale and state.call_id is None:
            state, decisions = self.parents.depend(host, state, decisions, detail)
        elif previous.absorbed_by is not None:
            self.recorder.note(
                previous.absorbed_by, f"{host} reports again (it was listed here as silent)."
            )
            state = replace(state, absorbed_by=None)
        last = record.last_report_at
        problem = self._problem(
            key, {}, record.interval_seconds, _HOST_DESCRIPTION, now, last_report_at=last
        )
        self.recorder.carry(key, previous, state, self._owned(decisions), problem)

    def _owned(self, decisions: tuple[CallDecision, ...]) -> tuple[CallDecision, ...]:
        """Without an owner, staleness is tracked and shown, and touches no call."""
        return decisions if self.config.staleness.owner is not None else ()

    def _step(
        self,
        key: StateKey,
        previous: RuleState,
        *,
        stale: bool,
        silent_for: float,
        detail: str,
        reason: str,
        now: float,
    ) -> tuple[RuleState, tuple[CallDecision, ...]]:
        """One step of a staleness rule: held for `staleness.for`, never without an owner."""
        rule, host, _ = key
        hold = float(self.config.staleness.for_) if self.config.staleness.owner else float("inf")
        policy = StepPolicy(hold_for=hold, silenced=self.calendar.silenced(host, rule, now))
        return step(
            previous,
            Severity.STALE if stale else Severity.OK,
            silent_for if stale else None,
            now,
            policy,
            detail=detail,
            reason=reason,
        )

    def _problem(
        self,
        key: StateKey,
        labels: dict[str, str],
        interval: float,
        description: str,
        now: float,
        *,
        last_report_at: float | None = None,
    ) -> ProblemFor:
        staleness = self.config.staleness
        rule, host, _ = key

        def problem(severity: Severity, current: RuleState) -> Problem:
            owner = staleness.owner
            assert owner is not None
            return Problem(
                host=host,
                rule=rule,
                metric="",
                labels=labels,
                severity=severity.name,
                value=current.value,
                unit="seconds",
                threshold=interval * staleness.after_intervals,
                direction="above",
                group=owner,
                assign=self.config.groups[owner].assign,
                first_seen=current.problem_since or now,
                description=description,
                detail=current.detail,
                last_report_at=last_report_at,
            )

        return problem


_FRESH = RuleState()


@functools.lru_cache(maxsize=4096)
def _check_key(check: str) -> str:
    """The labels key of a check's staleness state (the same few checks, over and over)."""
    return labels_key({"check": check})
