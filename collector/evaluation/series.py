"""Series rules: each rule on the series of its metric, by value or by forecast.

A report's fresh values and failed checks, and on the timer the series that vanished, pending
`for` timers, flapping that calmed down and maintenance windows that ended.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from collector.config import CollectorConfig, RuleConfig
from collector.evaluation.forecast import Forecast, linear_forecast
from collector.evaluation.maintenance import MaintenanceCalendar
from collector.evaluation.outcome import PassRecorder
from collector.evaluation.overrides import ThresholdResolver
from collector.evaluation.rules import (
    RuleState,
    Severity,
    StepPolicy,
    classify,
    matches,
    step,
    threshold_for,
)
from collector.evaluation.staleness import check_limit, check_silent_for
from collector.incidents.calls import Problem
from collector.store.records import HistoryPoint, SeriesRecord
from collector.view.fleet import Fleet, SeriesKey, StateKey
from runwatch import units


@dataclass(slots=True)
class SeriesRules:
    """Evaluate the configured rules on series, recording the decisions into a pass."""

    config: CollectorConfig
    fleet: Fleet
    recorder: PassRecorder
    calendar: MaintenanceCalendar
    resolver: ThresholdResolver
    history_for: dict[str, float] = field(init=False)  # metric -> the longest forecast span
    _by_metric: dict[str, list[RuleConfig]] = field(init=False)
    _walk_limits: dict[str, tuple[float, bool]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._by_metric = defaultdict(list)
        self.history_for = {}
        for rule in self.config.rules:
            self._by_metric[rule.metric].append(rule)
            if rule.forecast is not None:
                self.history_for[rule.metric] = max(
                    self.history_for.get(rule.metric, 0.0), float(rule.forecast.over)
                )

    def on_report(
        self, host: str, updated: list[SeriesRecord], failing_checks: dict[str, str], now: float
    ) -> None:
        """Evaluate a report's fresh series, and every series of the checks that failed."""
        self._record_history(updated)
        for series in updated:
            if series.check not in failing_checks:
                self._evaluate(series, now)
        if failing_checks:
            for key in list(self.fleet.by_host.get(host, ())):
                series = self.fleet.series[key]
                if series.check in failing_checks:
                    self._evaluate(series, now, error=failing_checks[series.check])

    def walk(self, host: str, now: float, factor: float) -> None:
        """The time-based pass over one host's series."""
        self._walk_limits = {}  # per check, for this host's walk
        for key in list(self.fleet.by_host.get(host, ())):
            if key in self.fleet.series:
                self._tick(key, now, factor)

    def _tick(self, key: SeriesKey, now: float, factor: float) -> None:
        series = self.fleet.series[key]
        host = self.fleet.hosts[series.host]
        status = host.checks.get(series.check)
        failing = status is not None and status.error is not None
        known = self._walk_limits.get(series.check)
        if known is None:
            limit = check_limit(self.fleet, series.host, series.check, factor)
            known = self._walk_limits[series.check] = (
                limit,
                status is not None
                and check_silent_for(self.fleet, series.host, series.check, now) > limit,
            )
        limit, check_silent = known
        if check_silent:
            return  # the whole check is silent: its own call says so, its series wait
        if not failing and now - self.fleet.seen_at[key] > limit:
            # The check runs but no longer reports this series (an unmounted filesystem).
            self.recorder.drop_series(key)
            for rule in self._by_metric.get(series.name, ()):
                state_key = (rule.name, series.host, series.labels_key)
                if state_key in self.fleet.states:
                    self._advance(
                        rule,
                        series,
                        state_key,
                        Severity.OK,
                        now,
                        reason="the series is no longer reported",
                    )
                    self.recorder.forget_state(state_key)
            return
        # Pending problems whose `for` may have run out since the last report, flapping that
        # may have calmed down, maintenance windows that may have ended.
        for rule in self._by_metric.get(series.name, ()):
            state_key = (rule.name, series.host, series.labels_key)
            state = self.fleet.states.get(state_key)
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

    def _evaluate(self, series: SeriesRecord, now: float, error: str | None = None) -> None:
        remembered = False
        for rule in self._by_metric.get(series.name, ()):
            if not matches(rule, series.labels):
                continue
            if not remembered and error is None:
                self.fleet.remember(series)
                self._keep_step(series)
                remembered = True
            key = (rule.name, series.host, series.labels_key)
            current = self.fleet.states.get(key)
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
                if (
                    observed is Severity.OK
                    and current is not None
                    and _quiet(current, now - self._flap_window(rule))
                ):
                    continue  # OK and was OK, with nothing a step could change
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
            for p in self.fleet.history.get((series.host, series.name, series.labels_key), ())
            if p[0] >= series.timestamp - over
        ]
        if not points or points[-1][0] < series.timestamp:
            points.append((series.timestamp, series.value))  # the latest value counts too
        return linear_forecast(
            points, rule.forecast.reaches, min_points=rule.forecast.min_points, min_span=over / 2
        )

    def _record_history(self, updated: list[SeriesRecord]) -> None:
        if not self.history_for:
            return
        resolution = float(self.config.history.resolution)
        points: list[HistoryPoint] = []
        for series in updated:
            span = self.history_for.get(series.name)
            if span is not None:
                point = self.fleet.record_history(series, resolution, span)
                if point is not None:
                    points.append(point)
        if points:
            self.recorder.add_history(points)

    def _keep_step(self, series: SeriesRecord) -> None:
        """Count a ruled series' value into its graph history step (history.py)."""
        history = self.config.history
        if history.graphs:
            closed = self.fleet.steps.add(
                (series.host, series.name, series.labels_key),
                series.timestamp,
                series.value,
                float(history.resolution),
            )
            if closed is not None:
                self.recorder.add_step(closed)

    def _effective(self, rule: RuleConfig, host: str) -> RuleConfig:
        state = self.fleet.hosts.get(host)
        return self.resolver.effective(rule, host, state.record.labels if state else {})

    def _output(self, series: SeriesRecord) -> str:
        """What the series' check last said in words (a plugin's status line), if anything."""
        status = self.fleet.hosts[series.host].checks.get(series.check)
        return status.output or "" if status is not None else ""

    def _flap_window(self, rule: RuleConfig) -> float:
        """The rule's flapping window in seconds (0 where flapping is off: no changes kept)."""
        flapping = rule.flapping or self.config.flapping
        return float(flapping.window) if flapping.enabled else 0.0

    def _policy(self, rule: RuleConfig, host: str, now: float) -> StepPolicy:
        flapping = rule.flapping or self.config.flapping
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
        previous = self.fleet.states.get(key, RuleState())
        effective = self._effective(rule, series.host)
        forecasting = rule.forecast is not None
        if forecasting:
            unit = "seconds"
        else:
            unit = series.unit
            value = series.value if observed is not Severity.UNKNOWN else previous.value
        if not reason and not observed.is_problem and previous.call_id is not None:
            clear = units.value(effective.clear_threshold, series.unit, series.name)
            side = "below" if effective.direction == "above" else "above"
            reason = (
                f"{series.name} is {units.value(series.value, series.unit, series.name)}, "
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
                assign=self.config.groups[rule.owner].assign,
                first_seen=current.problem_since or now,
                description=rule.description,
                runbook=rule.runbook,
                detail=current.detail,
                recent=tuple(
                    self.fleet.recent.get((series.host, series.name, series.labels_key), ())
                ),
                recent_unit=series.unit if forecasting else None,
            )

        self.recorder.carry(key, previous, state, decisions, problem)


def _quiet(state: RuleState, horizon: float) -> bool:
    """OK with nothing pending (settled), or with nothing but recent changes that are all
    still after `horizon` (the start of the flapping window): another OK step would only
    record the value. A rule that breached and recovered is noisy for a whole window, and
    most of a large fleet's states are like that; they are stepped again when the oldest
    change leaves the window (its one step that changes something) or the value moves."""
    return (
        state.severity is Severity.OK
        and state.call_id is None
        and not state.flapping
        and not state.silenced
        and state.absorbed_by is None
        and (not state.changes or (state.changes[0] > horizon and _calm(state)))
    )


def _calm(state: RuleState) -> bool:
    """Nothing left of earlier flapping that a step would clear."""
    return state.peak is Severity.OK and not state.call_flapping and state.problem_since is None
