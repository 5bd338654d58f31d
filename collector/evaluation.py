"""Rule evaluation over the fleet: on every report, and on a timer for time-based rules."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from checks.settings import format_duration
from collector.calls import Problem, format_value
from collector.config import STALE_RULE, CollectorConfig, RuleConfig
from collector.fleet import Fleet, StateKey
from collector.incidents import IncidentManager
from collector.rules import RuleState, Severity, classify, matches, step, threshold_for
from collector.store import RuleStateRecord, SeriesRecord, Store


class RuleEvaluator:
    """Turn fresh values and elapsed time into rule states and call decisions."""

    def __init__(self, config: CollectorConfig, fleet: Fleet, store: Store,
                 incidents: IncidentManager) -> None:
        self._config = config
        self._fleet = fleet
        self._store = store
        self._incidents = incidents
        self._rules_by_metric: dict[str, list[RuleConfig]] = defaultdict(list)
        for rule in config.rules:
            self._rules_by_metric[rule.metric].append(rule)
        self._rules = {rule.name: rule for rule in config.rules}
        self._dirty: dict[StateKey, RuleState] = {}

    # -- entry points (call inside a store transaction) ----------------------------------------

    def on_report(self, host: str, updated: list[SeriesRecord], failing_checks: dict[str, str],
                  now: float) -> None:
        """Evaluate what one report changed: its series, its failed checks, host staleness,
        and the series its checks no longer report."""
        self._evaluate_stale_rule(host, stale=False, now=now)
        for series in updated:
            if series.check not in failing_checks:
                self._evaluate_series(series, now)
        if failing_checks:
            for key in list(self._fleet.by_host.get(host, ())):
                series = self._fleet.series[key]
                if series.check in failing_checks:
                    self._evaluate_series(series, now, error=failing_checks[series.check])
        self._drop_vanished(host, now)
        self._flush()

    def tick(self, now: float) -> None:
        """Evaluate what depends on time alone: staleness and `for` timers.

        Only the hosts that need it are looked at (see hosts_due), so a tick over a large,
        healthy fleet costs a pass over the hosts and the rule states, not over every series.
        """
        for name in self.hosts_due(now):
            self.tick_host(name, now)

    def tick_host(self, name: str, now: float) -> bool:
        """The time-based evaluation of one host (call inside a store transaction).

        Return whether a rule state changed, and so the host's stored version must move.
        """
        host = self._fleet.hosts.get(name)
        if host is None:
            return False
        stale = now - host.record.last_report_at > host.stale_after(
            self._config.staleness.after_intervals)
        self._evaluate_stale_rule(name, stale=stale, now=now)
        if not stale:  # else nothing new is known about its series
            for key, rule, state, series in self._pending_of(name):
                self._advance(rule, series, key, state.severity, now, detail=state.detail)
        changed = bool(self._dirty)
        self._flush()
        return changed

    def hosts_due(self, now: float) -> list[str]:
        """Hosts whose time-based evaluation may change something now: silent past their
        limit, marked stale or holding a stale call, or with a problem waiting out its `for`.

        A replica sharing its store takes each of them under the host's lock.
        """
        factor = self._config.staleness.after_intervals
        due: set[str] = set()
        for (rule, state_host, _), state in self._fleet.states.items():
            if rule == STALE_RULE:
                if state.severity is not Severity.OK or state.call_id is not None:
                    due.add(state_host)  # stale now: may recover, or its `for` may run out
            elif state.severity.is_problem and state.call_id is None:
                due.add(state_host)  # a pending problem whose `for` may run out
        for name, host in self._fleet.hosts.items():
            if now - host.record.last_report_at > host.stale_after(factor):
                due.add(name)
        return sorted(due)

    # -- internals --------------------------------------------------------------------------------

    def _pending_of(self, host: str
                    ) -> list[tuple[StateKey, RuleConfig, RuleState, SeriesRecord]]:
        """The host's problems that wait for their `for` (no call yet), with their series."""
        out = []
        for series_key in self._fleet.by_host.get(host, ()):
            series = self._fleet.series[series_key]
            for rule in self._rules_by_metric.get(series.name, ()):
                key = (rule.name, host, series.labels_key)
                state = self._fleet.states.get(key)
                if state is not None and state.severity.is_problem and state.call_id is None:
                    out.append((key, rule, state, series))
        return out

    def _drop_vanished(self, host: str, now: float) -> None:
        """Series that a check still running no longer reports (an unmounted filesystem):
        forget them, and let their rules recover."""
        factor = self._config.staleness.after_intervals
        state = self._fleet.hosts[host]
        for key in list(self._fleet.by_host.get(host, ())):
            series = self._fleet.series[key]
            status = state.checks.get(series.check)
            interval = status.interval_seconds if status else state.record.interval_seconds
            if status is not None and status.error is not None:
                continue  # failing: UNKNOWN, not gone
            if now - self._fleet.seen_at[key] <= factor * max(
                    interval, state.record.interval_seconds):
                continue
            self._fleet.drop_series(key)
            self._store.delete_series([key])
            for rule in self._rules_by_metric.get(series.name, ()):
                state_key = (rule.name, series.host, series.labels_key)
                if state_key in self._fleet.states:
                    self._advance(rule, series, state_key, Severity.OK, now,
                                  reason="the series is no longer reported")
                    self._fleet.states.pop(state_key, None)

    def _evaluate_series(self, series: SeriesRecord, now: float, error: str | None = None
                         ) -> None:
        remembered = False
        for rule in self._rules_by_metric.get(series.name, ()):
            if not matches(rule, series.labels):
                continue
            if not remembered and error is None:
                self._fleet.remember(series)
                remembered = True
            key = (rule.name, series.host, series.labels_key)
            previous = self._fleet.states.get(key, RuleState())
            if error is not None:
                if rule.unknown == "ignore":
                    continue
                self._advance(rule, series, key, Severity.UNKNOWN, now, detail=error)
            else:
                observed = classify(rule, series.value, previous.severity)
                self._advance(rule, series, key, observed, now, detail=self._output(series))

    def _output(self, series: SeriesRecord) -> str:
        """What the series' check last said in words (a plugin's status line), if anything."""
        status = self._fleet.hosts[series.host].checks.get(series.check)
        return status.output or "" if status is not None else ""

    def _advance(self, rule: RuleConfig, series: SeriesRecord, key: StateKey,
                 observed: Severity, now: float, *, detail: str = "", reason: str = "") -> None:
        previous = self._fleet.states.get(key, RuleState())
        value = series.value if observed is not Severity.UNKNOWN else previous.value
        if not reason and not observed.is_problem and previous.call_id is not None:
            clear = format_value(rule.clear_threshold, series.unit, series.name)
            side = "below" if rule.direction == "above" else "above"
            reason = (f"{series.name} is {format_value(series.value, series.unit, series.name)}, "
                      f"{side} the clear threshold {clear}")
        state, decision = step(previous, observed, value, now, float(rule.for_),
                               detail=detail, reason=reason)
        if decision is not None:
            problem = Problem(
                host=series.host, rule=rule.name, metric=rule.metric, labels=series.labels,
                severity=observed.name, value=value, unit=series.unit,
                threshold=threshold_for(rule, observed), direction=rule.direction,
                group=rule.owner, assign=self._config.groups[rule.owner].assign,
                first_seen=state.problem_since or now, description=rule.description,
                runbook=rule.runbook, detail=detail,
                recent=tuple(self._fleet.recent.get(
                    (series.host, series.name, series.labels_key), ())))
            call_id = self._incidents.apply(decision, problem, now)
            state = replace(state, call_id=call_id,
                            call_severity=observed if call_id is not None else Severity.OK)
        self._remember(key, previous, state)

    def _evaluate_stale_rule(self, host: str, *, stale: bool, now: float) -> None:
        key = (STALE_RULE, host, "{}")
        previous = self._fleet.states.get(key, RuleState())
        if not stale and previous.severity is Severity.OK and previous.call_id is None:
            return  # the common case: a healthy host reporting again
        staleness = self._config.staleness
        record = self._fleet.hosts[host].record
        silent_for = max(0.0, now - record.last_report_at)
        observed = Severity.STALE if stale else Severity.OK
        detail = (f"no report for {format_duration(silent_for)} (expected every "
                  f"{format_duration(record.interval_seconds)})") if stale else ""
        hold = float(staleness.for_) if staleness.owner else float("inf")
        state, decision = step(previous, observed, silent_for if stale else None, now, hold,
                               detail=detail, reason="the host reports again")
        if decision is not None and staleness.owner is not None:
            problem = Problem(
                host=host, rule=STALE_RULE, metric="", labels={}, severity=observed.name,
                value=silent_for, unit="seconds",
                threshold=record.interval_seconds * staleness.after_intervals,
                direction="above", group=staleness.owner,
                assign=self._config.groups[staleness.owner].assign,
                first_seen=state.problem_since or now,
                description="The agent on this host has stopped reporting. Check that the "
                            "host is up, that the runwatch agent runs, and that it can reach "
                            "the collector.",
                detail=detail)
            call_id = self._incidents.apply(decision, problem, now)
            state = replace(state, call_id=call_id,
                            call_severity=observed if call_id is not None else Severity.OK)
        self._remember(key, previous, state)

    def _remember(self, key: StateKey, previous: RuleState, state: RuleState) -> None:
        if state == previous:
            return
        self._fleet.states[key] = state
        # The value alone moves on every report; the store needs it only with a real change
        # (on restart the latest value comes back with the series anyway).
        if replace(state, value=None) != replace(previous, value=None):
            self._dirty[key] = state

    def _flush(self) -> None:
        if self._dirty:
            self._store.save_rule_states(
                [RuleStateRecord(rule, host, labels, state)
                 for (rule, host, labels), state in self._dirty.items()])
            self._dirty.clear()
