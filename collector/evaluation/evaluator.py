"""Rule evaluation over the fleet: on every report, and on a timer for time-based rules.

Per (host, rule, labels) the pure state machine in `rules.step` decides; this module feeds it
(values, forecasts, staleness of hosts and of single checks), gives it each rule's policy
(`for`, flapping, maintenance windows, host-group thresholds) and carries its decisions out,
routing a child host's staleness into its parent's call while the parent is down.
"""

from __future__ import annotations

import fnmatch
import functools
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Generator
from dataclasses import replace

from checks.settings import format_duration
from collector.config import (
    CHECK_STALE_RULE,
    STALE_RULE,
    CollectorConfig,
    RuleConfig,
)
from collector.evaluation.forecast import Forecast, linear_forecast
from collector.evaluation.maintenance import MaintenanceCalendar
from collector.evaluation.overrides import ThresholdResolver
from collector.evaluation.rules import (
    CallDecision,
    ChangeSeverity,
    OpenCall,
    RuleState,
    Severity,
    StepPolicy,
    classify,
    matches,
    step,
    threshold_for,
)
from collector.incidents.calls import Problem, format_value, labels_key
from collector.incidents.manager import IncidentManager
from collector.store.protocols import Store
from collector.store.records import HistoryPoint, RuleStateRecord, SeriesRecord, StateChange
from collector.view.fleet import Fleet, SeriesKey, StateKey

ProblemFor = Callable[[Severity, RuleState], Problem]


class RuleEvaluator:
    """Turn fresh values and elapsed time into rule states and call decisions."""

    def __init__(
        self,
        config: CollectorConfig,
        fleet: Fleet,
        store: Store,
        incidents: IncidentManager,
        *,
        calendar: MaintenanceCalendar | None = None,
        resolver: ThresholdResolver | None = None,
    ) -> None:
        self._config = config
        self._fleet = fleet
        self._store = store
        self._incidents = incidents
        self.calendar = calendar or MaintenanceCalendar(config.maintenance, store, 0.0)
        self.resolver = resolver or ThresholdResolver(config)
        self._rules_by_metric: dict[str, list[RuleConfig]] = defaultdict(list)
        self._history_for: dict[str, float] = {}  # metric -> the longest span a forecast fits
        for rule in config.rules:
            self._rules_by_metric[rule.metric].append(rule)
            if rule.forecast is not None:
                self._history_for[rule.metric] = max(
                    self._history_for.get(rule.metric, 0.0), float(rule.forecast.over)
                )
        self._rules = {rule.name: rule for rule in config.rules}
        self._dirty: dict[StateKey, RuleState] = {}
        self._changes: list[StateChange] = []  # severity changes, for service-level reports
        self._owners = {rule.name: rule.owner for rule in config.rules}
        staleness_owner = config.staleness.owner or ""
        self._owners.setdefault(STALE_RULE, staleness_owner)
        self._owners.setdefault(CHECK_STALE_RULE, staleness_owner)
        self._parents_of: dict[str, tuple[str, ...]] = {}
        self._down: dict[str, int | None] | None = None  # parent -> its call, per evaluation
        self._pruned_at = float("-inf")
        self._walked_at: dict[str, float] = {}  # host -> when tick last walked its series
        self._walk_limits: dict[str, tuple[float, bool]] = {}

    @property
    def history_span(self) -> float:
        """How far back forecasts look: what must come back from the store on a restart."""
        return max(self._history_for.values(), default=0.0)

    # -- entry points (call inside a store transaction) ----------------------------------------

    def on_report(
        self,
        host: str,
        updated: list[SeriesRecord],
        failing_checks: dict[str, str],
        now: float,
        checks: list[str] | None = None,
    ) -> None:
        """Evaluate what one report changed: its series, its failed checks, and staleness."""
        self._down = None
        self._evaluate_stale_rule(host, stale=False, now=now)
        for check in checks or ():
            self._fleet.saw_check(host, check, now)
            self._evaluate_check_stale(host, check, stale=False, now=now)
        self._record_history(updated)
        for series in updated:
            if series.check not in failing_checks:
                self._evaluate_series(series, now)
        if failing_checks:
            for key in list(self._fleet.by_host.get(host, ())):
                series = self._fleet.series[key]
                if series.check in failing_checks:
                    self._evaluate_series(series, now, error=failing_checks[series.check])
        self._flush()

    def due_in_order(self, now: float) -> list[str]:
        """hosts_due(), parents first, so a child sees its parent's call from the same tick."""
        return _finish(self.due_in_order_steps(now))

    def due_in_order_steps(
        self, now: float, slice_seconds: float = float("inf")
    ) -> Generator[None, None, list[str]]:
        """due_in_order(), yielding every `slice_seconds` of work (its value is the list): a
        pass over every host and rule state of a large fleet takes longer than a report may
        wait."""
        due = yield from self._hosts_due_steps(now, slice_seconds)
        return sorted(due, key=self._depth)

    def tick(self, now: float) -> None:
        """Evaluate what depends on time alone: staleness, `for` timers, vanished series,
        flapping that calmed down and maintenance windows that ended.

        A healthy host is walked (its checks and series) once per its interval; hosts that are
        silent or have a rule state needing attention, every tick. So a tick over a large
        healthy fleet costs a pass over hosts and states plus a slice of the series.
        """
        # Parents first, so a child sees its parent's call from this very evaluation.
        for name in sorted(self.hosts_due(now), key=self._depth):
            self.tick_host(name, now)
        self._prune_history(now)
        self._flush()

    def tick_host(self, name: str, now: float) -> bool:
        """The time-based evaluation of one host (call inside a store transaction).

        Return whether a rule state changed, and so the host's stored version must move.
        """
        host = self._fleet.hosts.get(name)
        if host is None:
            return False
        factor = self._config.staleness.after_intervals
        silent_for = now - host.record.last_report_at
        stale = silent_for > host.stale_after(factor)
        self._evaluate_stale_rule(name, stale=stale, now=now)
        series_before = len(self._fleet.by_host.get(name, ()))
        if not stale:  # else nothing new is known about its series or checks
            self._walked_at[name] = now
            for check in list(host.checks):
                self._tick_check(name, check, now, factor)
            self._walk_limits = {}  # per check, for this host's walk
            for key in list(self._fleet.by_host.get(name, ())):
                if key in self._fleet.series:
                    self._tick_series(key, now, factor)
        changed = bool(self._dirty) or len(self._fleet.by_host.get(name, ())) != series_before
        self._flush()
        return changed

    def hosts_due(self, now: float) -> list[str]:
        """Hosts whose time-based evaluation may change something now: silent past their
        limit, with a rule state that time may move (a problem waiting out its `for`,
        flapping, a silence, a parent's call, staleness), or not walked for one of their
        intervals (vanished series, silent checks). A steady problem with its call open
        waits for the next report.

        A replica sharing its store takes each of them under the host's lock.
        """
        return _finish(self._hosts_due_steps(now, float("inf")))

    def _hosts_due_steps(
        self, now: float, slice_seconds: float
    ) -> Generator[None, None, list[str]]:
        """hosts_due(), yielding every `slice_seconds`. It walks copies of the fleet's
        tables, so reports ingested between its steps cannot upset the walk (their hosts are
        looked at afresh by tick_host)."""
        self._down = None  # a new evaluation: parents' calls are looked up afresh
        factor = self._config.staleness.after_intervals
        due: set[str] = set()
        began = time.perf_counter()
        # Copies of the keys and the values, not of the items: no tuple per state to allocate.
        states = self._fleet.states
        for count, ((rule, state_host, _), state) in enumerate(
            zip(list(states), list(states.values()), strict=True)
        ):
            if (
                (state.severity.is_problem and state.call_id is None)
                or state.flapping
                or state.silenced
                or state.absorbed_by is not None
                or (
                    rule in _STALENESS_RULES
                    and (state.severity is not Severity.OK or state.call_id is not None)
                )
            ):
                due.add(state_host)  # a `for`, a calm-down, a window's end, a recovery
            if not count % 1024 and time.perf_counter() - began >= slice_seconds:
                yield
                began = time.perf_counter()
        hosts = self._fleet.hosts
        for count, (name, host) in enumerate(zip(list(hosts), list(hosts.values()), strict=True)):
            if not count % 256 and time.perf_counter() - began >= slice_seconds:
                yield
                began = time.perf_counter()
            if name in due:
                continue
            walked = self._walked_at.get(name)
            if walked is None:
                # First seen: a place in the interval by the host's name, so that after a
                # restart the walks spread over one interval instead of all coming at once.
                interval = host.record.interval_seconds
                walked = self._walked_at[name] = (
                    now - interval * (zlib.crc32(name.encode()) % 1024 + 1) / 1024
                )
            if (
                now - host.record.last_report_at > host.stale_after(factor)
                or now - walked >= host.record.interval_seconds
            ):
                due.add(name)
        return sorted(due)

    # -- series rules ------------------------------------------------------------------------------

    def _check_silent_for(self, host: str, check: str, now: float) -> float:
        return now - self._fleet.check_seen_at.get((host, check), now)

    def _check_limit(self, host: str, check: str, factor: float) -> float:
        state = self._fleet.hosts[host]
        status = state.checks.get(check)
        interval = status.interval_seconds if status else state.record.interval_seconds
        return factor * max(interval, state.record.interval_seconds)

    def _tick_series(self, key: SeriesKey, now: float, factor: float) -> None:
        series = self._fleet.series[key]
        host = self._fleet.hosts[series.host]
        status = host.checks.get(series.check)
        failing = status is not None and status.error is not None
        known = self._walk_limits.get(series.check)
        if known is None:
            known = self._walk_limits[series.check] = (
                self._check_limit(series.host, series.check, factor),
                status is not None
                and self._check_silent_for(series.host, series.check, now)
                > self._check_limit(series.host, series.check, factor),
            )
        limit, check_silent = known
        if check_silent:
            return  # the whole check is silent: its own call says so, its series wait
        if not failing and now - self._fleet.seen_at[key] > limit:
            # The check runs but no longer reports this series (an unmounted filesystem).
            self._fleet.drop_series(key)
            self._store.delete_series([key])
            for rule in self._rules_by_metric.get(series.name, ()):
                state_key = (rule.name, series.host, series.labels_key)
                if state_key in self._fleet.states:
                    self._advance(
                        rule,
                        series,
                        state_key,
                        Severity.OK,
                        now,
                        reason="the series is no longer reported",
                    )
                    self._fleet.forget_state(state_key)
            return
        # Pending problems whose `for` may have run out since the last report, flapping that
        # may have calmed down, maintenance windows that may have ended.
        for rule in self._rules_by_metric.get(series.name, ()):
            state_key = (rule.name, series.host, series.labels_key)
            state = self._fleet.states.get(state_key)
            if state is not None and (
                state.silenced
                or state.flapping
                or (state.severity.is_problem and state.call_id is None)
            ):
                self._advance(
                    rule,
                    series,
                    state_key,
                    state.severity,
                    now,
                    detail=state.detail,
                    value=state.value,
                )

    def _evaluate_series(self, series: SeriesRecord, now: float, error: str | None = None) -> None:
        remembered = False
        for rule in self._rules_by_metric.get(series.name, ()):
            if not matches(rule, series.labels):
                continue
            if not remembered and error is None:
                self._fleet.remember(series)
                remembered = True
            key = (rule.name, series.host, series.labels_key)
            current = self._fleet.states.get(key)
            previous = current if current is not None else RuleState()
            if error is not None:
                if rule.unknown == "ignore":
                    continue
                self._advance(rule, series, key, Severity.UNKNOWN, now, detail=error)
            elif rule.forecast is not None:
                self._evaluate_forecast(rule, series, key, previous, now)
            else:
                effective = self._effective(rule, series.host)
                observed = classify(effective, series.value, previous.severity)
                if observed is Severity.OK and current is not None and _settled(current):
                    continue  # OK and was OK, with nothing pending: the common case, no change
                self._advance(rule, series, key, observed, now, detail=self._output(series))

    def _evaluate_forecast(
        self, rule: RuleConfig, series: SeriesRecord, key: StateKey, previous: RuleState, now: float
    ) -> None:
        forecast = self._forecast(rule, series)
        if forecast is None or forecast.seconds_left is None:
            # Too little history, or not heading for the target: nothing to predict.
            observed = Severity.OK
            left = None
        else:
            left = forecast.seconds_left
            observed = classify(self._effective(rule, series.host), left, previous.severity)
        assert rule.forecast is not None
        detail = (
            forecast.describe(
                series.name, series.unit, rule.forecast.reaches, float(rule.forecast.over)
            )
            if forecast is not None
            else ""
        )
        reason = (
            f"no longer predicted within the threshold: {detail}"
            if detail
            else "too little history to forecast"
        )
        self._advance(rule, series, key, observed, now, detail=detail, value=left, reason=reason)

    def _forecast(self, rule: RuleConfig, series: SeriesRecord) -> Forecast | None:
        assert rule.forecast is not None
        over = float(rule.forecast.over)
        points = [
            p
            for p in self._fleet.history.get((series.host, series.name, series.labels_key), ())
            if p[0] >= series.timestamp - over
        ]
        if not points or points[-1][0] < series.timestamp:
            points.append((series.timestamp, series.value))  # the latest value counts too
        return linear_forecast(
            points, rule.forecast.reaches, min_points=rule.forecast.min_points, min_span=over / 2
        )

    def _record_history(self, updated: list[SeriesRecord]) -> None:
        if not self._history_for:
            return
        resolution = float(self._config.history.resolution)
        points: list[HistoryPoint] = []
        for series in updated:
            span = self._history_for.get(series.name)
            if span is not None:
                point = self._fleet.record_history(series, resolution, span)
                if point is not None:
                    points.append(point)
        if points:
            self._store.add_history(points)

    def prune_history(self, now: float) -> None:
        """Drop forecast history past its retention (at most once per resolution step)."""
        self._prune_history(now)

    def _prune_history(self, now: float) -> None:
        resolution = float(self._config.history.resolution)
        if self._history_for and now - self._pruned_at >= resolution:
            self._pruned_at = now
            self._store.prune_history(now - float(self._config.history.retention))

    def _effective(self, rule: RuleConfig, host: str) -> RuleConfig:
        state = self._fleet.hosts.get(host)
        return self.resolver.effective(rule, host, state.record.labels if state else {})

    def _output(self, series: SeriesRecord) -> str:
        """What the series' check last said in words (a plugin's status line), if anything."""
        status = self._fleet.hosts[series.host].checks.get(series.check)
        return status.output or "" if status is not None else ""

    def _policy(self, rule: RuleConfig, host: str, now: float) -> StepPolicy:
        flapping = rule.flapping or self._config.flapping
        return StepPolicy(
            hold_for=float(rule.for_),
            flap_changes=flapping.changes if flapping.enabled else None,
            flap_window=float(flapping.window),
            silenced=self.calendar.silenced(host, rule.name, now),
        )

    def _advance(
        self,
        rule: RuleConfig,
        series: SeriesRecord,
        key: StateKey,
        observed: Severity,
        now: float,
        *,
        detail: str = "",
        reason: str = "",
        value: float | None = None,
    ) -> None:
        previous = self._fleet.states.get(key, RuleState())
        effective = self._effective(rule, series.host)
        forecasting = rule.forecast is not None
        if forecasting:
            unit = "seconds"
        else:
            unit = series.unit
            value = series.value if observed is not Severity.UNKNOWN else previous.value
        if not reason and not observed.is_problem and previous.call_id is not None:
            clear = format_value(effective.clear_threshold, series.unit, series.name)
            side = "below" if effective.direction == "above" else "above"
            reason = (
                f"{series.name} is {format_value(series.value, series.unit, series.name)}, "
                f"{side} the clear threshold {clear}"
            )
        state, decisions = step(
            previous,
            observed,
            value,
            now,
            self._policy(effective, series.host, now),
            detail=detail,
            reason=reason or "recovered",
        )

        def problem(severity: Severity, current: RuleState) -> Problem:
            return Problem(
                host=series.host,
                rule=rule.name,
                metric=rule.metric,
                labels=series.labels,
                severity=severity.name,
                value=current.value,
                unit=unit,
                threshold=threshold_for(effective, severity),
                direction=effective.direction,
                group=rule.owner,
                assign=self._config.groups[rule.owner].assign,
                first_seen=current.problem_since or now,
                description=rule.description,
                runbook=rule.runbook,
                detail=current.detail,
                recent=tuple(
                    self._fleet.recent.get((series.host, series.name, series.labels_key), ())
                ),
                recent_unit=series.unit if forecasting else None,
            )

        state = self._carry_out(state, decisions, problem, now)
        self._remember(key, previous, state)

    def _carry_out(
        self, state: RuleState, decisions: tuple[CallDecision, ...], problem: ProblemFor, now: float
    ) -> RuleState:
        """Apply the state machine's decisions through the incident layer."""
        for decision in decisions:
            match decision:
                case OpenCall(severity=severity):
                    shown = problem(severity, state)
                case ChangeSeverity(new=new):
                    shown = problem(new, state)
                case _:
                    shown = problem(state.severity, state)
            call_id = self._incidents.apply(decision, shown, now)
            if isinstance(decision, OpenCall):
                state = replace(
                    state,
                    call_id=call_id,
                    call_severity=decision.severity if call_id is not None else Severity.OK,
                )
        return state

    # -- staleness of hosts and of single checks -------------------------------------------

    def _tick_check(self, host: str, check: str, now: float, factor: float) -> None:
        staleness = self._config.staleness
        if not staleness.checks:
            return
        silent_for = self._check_silent_for(host, check, now)
        if silent_for > float(staleness.forget_checks_after):
            self._forget_check(host, check, now)
            return
        self._evaluate_check_stale(
            host, check, stale=silent_for > self._check_limit(host, check, factor), now=now
        )

    def _forget_check(self, host: str, check: str, now: float) -> None:
        """A check silent for very long was most likely removed from the agent's config."""
        key = (CHECK_STALE_RULE, host, labels_key({"check": check}))
        state = self._fleet.states.get(key)
        if state is not None and state.call_id is not None:
            self._evaluate_check_stale(
                host,
                check,
                stale=False,
                now=now,
                reason=f"the check has not reported for "
                f"{format_duration(float(self._config.staleness.forget_checks_after))} "
                "and is forgotten (removed from the agent's config?)",
            )
        self._fleet.forget_state(key)
        self._fleet.forget_check(host, check)
        self._store.delete_check_statuses([(host, check)])

    def _evaluate_check_stale(
        self,
        host: str,
        check: str,
        *,
        stale: bool,
        now: float,
        reason: str = "the check reports again",
    ) -> None:
        key = (CHECK_STALE_RULE, host, _check_key(check))
        current = self._fleet.states.get(key)
        if not stale and (current is None or current == RuleState(changed_at=current.changed_at)):
            return  # the common case: a check that reports as it should
        labels = {"check": check}
        previous = current if current is not None else RuleState()
        staleness = self._config.staleness
        state_ = self._fleet.hosts[host]
        status = state_.checks.get(check)
        interval = max(status.interval_seconds if status else 0.0, state_.record.interval_seconds)
        silent_for = max(0.0, self._check_silent_for(host, check, now))
        detail = (
            (
                f"check {check!r} has sent nothing for {format_duration(silent_for)} "
                f"(expected every {format_duration(interval)}) while the host still "
                "reports"
            )
            if stale
            else ""
        )
        hold = float(staleness.for_) if staleness.owner else float("inf")
        policy = StepPolicy(
            hold_for=hold, silenced=self.calendar.silenced(host, CHECK_STALE_RULE, now)
        )
        observed = Severity.STALE if stale else Severity.OK
        state, decisions = step(
            previous,
            observed,
            silent_for if stale else None,
            now,
            policy,
            detail=detail,
            reason=reason,
        )
        owner = staleness.owner

        def problem(severity: Severity, current: RuleState) -> Problem:
            assert owner is not None
            return Problem(
                host=host,
                rule=CHECK_STALE_RULE,
                metric="",
                labels=labels,
                severity=severity.name,
                value=current.value,
                unit="seconds",
                threshold=interval * staleness.after_intervals,
                direction="above",
                group=owner,
                assign=self._config.groups[owner].assign,
                first_seen=current.problem_since or now,
                description="One check on this host has stopped reporting, while the agent "
                "and its other checks still report. Check the check's config and "
                "the agent's log (a hung plugin, a removed backup job).",
                detail=current.detail,
            )

        if owner is not None:
            state = self._carry_out(state, decisions, problem, now)
        self._remember(key, previous, state)

    def _evaluate_stale_rule(self, host: str, *, stale: bool, now: float) -> None:
        key = (STALE_RULE, host, "{}")
        previous = self._fleet.states.get(key, RuleState())
        if not stale and previous == RuleState(changed_at=previous.changed_at):
            return  # the common case: a healthy host reporting again
        staleness = self._config.staleness
        record = self._fleet.hosts[host].record
        silent_for = max(0.0, now - record.last_report_at)
        observed = Severity.STALE if stale else Severity.OK
        detail = (
            (
                f"no report for {format_duration(silent_for)} (expected every "
                f"{format_duration(record.interval_seconds)})"
            )
            if stale
            else ""
        )
        hold = float(staleness.for_) if staleness.owner else float("inf")
        policy = StepPolicy(hold_for=hold, silenced=self.calendar.silenced(host, STALE_RULE, now))
        state, decisions = step(
            previous,
            observed,
            silent_for if stale else None,
            now,
            policy,
            detail=detail,
            reason="the host reports again",
        )
        owner = staleness.owner
        if stale and state.call_id is None:
            state, decisions = self._depend(host, state, decisions, detail, now)
        elif previous.absorbed_by is not None:
            self._incidents.note(
                previous.absorbed_by, f"{host} reports again (it was listed here as silent).", now
            )
            state = replace(state, absorbed_by=None)

        def problem(severity: Severity, current: RuleState) -> Problem:
            assert owner is not None
            return Problem(
                host=host,
                rule=STALE_RULE,
                metric="",
                labels={},
                severity=severity.name,
                value=current.value,
                unit="seconds",
                threshold=record.interval_seconds * staleness.after_intervals,
                direction="above",
                group=owner,
                assign=self._config.groups[owner].assign,
                first_seen=current.problem_since or now,
                description="The agent on this host has stopped reporting. Check that the "
                "host is up, that the runwatch agent runs, and that it can reach "
                "the collector.",
                detail=current.detail,
            )

        if owner is not None:
            state = self._carry_out(state, decisions, problem, now)
        self._remember(key, previous, state)

    # -- dependencies ------------------------------------------------------------------------

    def parents_of(self, host: str) -> tuple[str, ...]:
        """The parents the config names for this host (every matching glob counts)."""
        found = self._parents_of.get(host)
        if found is None:
            names: list[str] = []
            for pattern, parents in self._config.parents.items():
                if fnmatch.fnmatchcase(host, pattern):
                    names.extend(p for p in parents if p != host and p not in names)
            found = self._parents_of[host] = tuple(names)
        return found

    def _depth(self, host: str) -> int:
        """How many generations of parents a host has (a cycle counts once)."""
        seen = {host}
        level, depth = list(self.parents_of(host)), 0
        while level:
            depth += 1
            level = [p for h in level for p in self.parents_of(h) if p not in seen]
            seen.update(level)
        return depth

    def parent_down(self, host: str) -> tuple[str, int | None] | None:
        """A parent that is STALE or CRITICAL, and the call that says so (if one is open)."""
        if not self._config.parents or not self.parents_of(host):
            return None
        if self._down is None:
            self._down = self._parents_down()
        for parent in self.parents_of(host):
            if parent in self._down:
                return parent, self._down[parent]
        return None

    def _parents_down(self) -> dict[str, int | None]:
        """Every parent host that is down now, with the call to note its children in."""
        parents = {p for names in self._config.parents.values() for p in names}
        down: dict[str, int | None] = {}
        for (rule, host, _), state in self._fleet.states.items():
            if host not in parents:
                continue
            if rule == STALE_RULE and state.severity is Severity.STALE:
                down[host] = state.call_id if state.call_id is not None else down.get(host)
            elif state.severity is Severity.CRITICAL and down.get(host) is None:
                down[host] = state.call_id
        return down

    def _depend(
        self,
        host: str,
        state: RuleState,
        decisions: tuple[CallDecision, ...],
        detail: str,
        now: float,
    ) -> tuple[RuleState, tuple[CallDecision, ...]]:
        """While a parent is down, a silent child goes into the parent's call, not its own."""
        down = self.parent_down(host)
        if down is None:
            # No parent to blame (any more): the child's own call opens as usual.
            return replace(state, absorbed_by=None), decisions
        parent, call_id = down
        if not any(isinstance(d, OpenCall) for d in decisions) and state.absorbed_by is None:
            return state, decisions  # not yet due (`for`), or in a maintenance window
        kept = tuple(d for d in decisions if not isinstance(d, OpenCall))
        if call_id is not None and state.absorbed_by != call_id:
            self._incidents.note(
                call_id,
                f"{host} depends on {parent} and is silent too "
                f"({detail}); it gets no call of its own while "
                f"{parent} is down.",
                now,
            )
            state = replace(state, absorbed_by=call_id)
        return state, kept

    # -- bookkeeping ---------------------------------------------------------------------------

    def _remember(self, key: StateKey, previous: RuleState, state: RuleState) -> None:
        if state == previous:
            return
        self._fleet.set_state(key, state)
        # The value alone moves on every report; the store needs it only with a real change
        # (on restart the latest value comes back with the series anyway).
        if replace(state, value=None) != replace(previous, value=None):
            self._dirty[key] = state
        if state.severity is not previous.severity:
            self._changes.append(
                StateChange(
                    state.changed_at,
                    key[1],
                    key[0],
                    key[2],
                    self._owners.get(key[0], ""),
                    int(state.severity),
                )
            )

    def _flush(self) -> None:
        if self._changes:
            self._store.add_state_changes(self._changes)
            self._changes = []
        if self._dirty:
            self._store.save_rule_states(
                [
                    RuleStateRecord(rule, host, labels, state)
                    for (rule, host, labels), state in self._dirty.items()
                ]
            )
            self._dirty.clear()


_STALENESS_RULES = frozenset({STALE_RULE, CHECK_STALE_RULE})


def _settled(state: RuleState) -> bool:
    """OK with nothing pending: no call, no flapping history, no silence, no parent's call."""
    return (
        state.severity is Severity.OK
        and state.call_id is None
        and not state.changes
        and not state.flapping
        and not state.silenced
        and state.absorbed_by is None
    )


@functools.lru_cache(maxsize=4096)
def _check_key(check: str) -> str:
    """The labels key of a check's staleness state (the same few checks, over and over)."""
    return labels_key({"check": check})


def _finish(steps: Generator[None, None, list[str]]) -> list[str]:
    """Run a stepwise computation to its end and return its value."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
