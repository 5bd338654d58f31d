"""The read side of the view: hosts with their states and measurements, and why a rule's
thresholds are what they are on a host, as the API and the console show them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collector.config import CollectorConfig, RuleConfig
from collector.evaluation.evaluator import RuleEvaluator
from collector.evaluation.maintenance import MaintenanceCalendar
from collector.evaluation.overrides import ThresholdResolver
from collector.evaluation.rules import RuleState, Severity
from collector.view.fleet import Fleet, StateKey, problem_severity


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetReader:
    """Answers about the fleet, read from the view (never changing it)."""

    config: CollectorConfig
    fleet: Fleet
    evaluator: RuleEvaluator
    resolver: ThresholdResolver
    calendar: MaintenanceCalendar
    clock: Callable[[], float]

    def hosts(self, only: str | None = None) -> list[dict[str, Any]]:
        now = self.clock()
        factor = self.config.staleness.after_intervals
        out = []
        worst = (
            self.fleet.worst_by_host()
            if only is None
            else {only: self.fleet.worst_of(only)}  # the host page: one host's states only
        )
        problems: dict[str, list[dict[str, Any]]] = {}
        rules = self._rules()
        keys = self.fleet.states if only is None else self.fleet.states.keys_of(only)
        for key in sorted(keys):
            state = self.fleet.states[key]
            if state.severity is not Severity.OK or state.flapping or state.call_id is not None:
                problems.setdefault(key[1], []).append(self._state_row(key, state, rules))
        for name in sorted(self.fleet.hosts):
            if only is not None and name != only:
                continue
            host = self.fleet.hosts[name]
            stale = self.fleet.is_stale(name, now, factor)
            measurements = [
                {
                    "check": s.check,
                    "name": s.name,
                    "value": s.value,
                    "unit": s.unit,
                    "labels": s.labels,
                    "timestamp": s.timestamp,
                }
                for key in sorted(self.fleet.by_host.get(name, ()))
                for s in (self.fleet.series[key],)
            ]
            out.append(
                {
                    "host": name,
                    "state": (Severity.STALE if stale else worst.get(name, Severity.OK)).name,
                    "last_report_at": host.record.last_report_at,
                    "first_seen": host.record.first_seen,
                    "interval_seconds": host.record.interval_seconds,
                    "agent_version": host.record.agent_version,
                    "labels": host.record.labels,
                    "parents": list(self.evaluator.parents_of(name)),
                    "last_seq": host.record.last_seq,
                    "checks": [
                        {
                            "check": c.check,
                            "type": c.type,
                            "interval_seconds": c.interval_seconds,
                            "last_run_at": c.last_run_at,
                            "duration_seconds": c.duration_seconds,
                            "error_kind": c.error_kind,
                            "error": c.error,
                            "output": c.output,
                        }
                        for c in sorted(host.checks.values(), key=lambda c: c.check)
                    ],
                    "problems": problems.get(name, []),
                    "measurements": measurements,
                }
            )
        return out

    def problems(self, host: str) -> list[dict[str, Any]]:
        """A host's open problems (not OK, flapping, or holding a call), by rule: as hosts()
        lists them, read from the host's own states only (the console's host list)."""
        rules = self._rules()
        out = []
        for key in sorted(self.fleet.states.keys_of(host)):
            state = self.fleet.states[key]
            if state.severity is not Severity.OK or state.flapping or state.call_id is not None:
                out.append(self._state_row(key, state, rules))
        return out

    def rule_states(self, host: str) -> list[dict[str, Any]]:
        """Every rule state of a host, OK ones too, by rule and labels (the host page)."""
        rules = self._rules()
        return [
            self._state_row(key, self.fleet.states[key], rules)
            for key in sorted(self.fleet.states.keys_of(host))
        ]

    def call_state(self, host: str, call_id: int) -> dict[str, Any] | None:
        """The rule state that holds an open call, as rule_states() shows it; None when no
        state holds it (the call is over, or a parent's call took the problem)."""
        rules = self._rules()
        for key in sorted(self.fleet.states.keys_of(host)):
            state = self.fleet.states[key]
            if state.call_id == call_id:
                return self._state_row(key, state, rules)
        return None

    def _state_row(
        self, key: StateKey, state: RuleState, rules: dict[str, RuleConfig]
    ) -> dict[str, Any]:
        """One rule state as the API, the console and the CLI show it.

        `state` is the rule's severity now; `severity` what it weighs in the host's state (its
        open call's when worse, see problem_severity); `unit` and `metric` say how to read
        `value` (runwatch/units.py); `since` is when the state last changed, and
        `since_first_report` says it has held since its host's first report.
        """
        rule, host, labels = key
        metric, unit, latest = self._reading_of(rules.get(rule), host, labels)
        known = self.fleet.hosts.get(host)
        first_seen = known.record.first_seen if known is not None else None
        since = state.changed_at or first_seen
        return {
            "rule": rule,
            "labels": json.loads(labels),
            "state": state.severity.name,
            "severity": problem_severity(rule, state).name,
            # A settled OK state keeps the value it was last stepped with: the series has the
            # latest (except for UNKNOWN, whose check failed to measure).
            "value": latest
            if latest is not None and state.severity is not Severity.UNKNOWN
            else state.value,
            "unit": unit,
            "metric": metric,
            "since": since,
            "since_first_report": since is not None
            and first_seen is not None
            and since <= first_seen,
            "call_id": state.call_id,
            "call_state": state.call_severity.name if state.call_id is not None else None,
            "flapping": state.flapping,
            "silenced": state.silenced,
            "in_parent_call": state.absorbed_by,
            "detail": state.detail,
        }

    def _reading_of(
        self, rule: RuleConfig | None, host: str, labels: str
    ) -> tuple[str, str, float | None]:
        """The metric a rule state's value measures, its unit, and the series' latest value
        when that is what the state shows: a forecast's value is the time left, a staleness
        state's the time without a report."""
        if rule is None:  # host_stale, check_stale: seconds without a report
            return "", "seconds", None
        if rule.forecast is not None:
            return rule.metric, "seconds", None
        series = self.fleet.series.get((host, rule.metric, labels))
        if series is None:
            return rule.metric, "", None
        return rule.metric, series.unit, series.value

    def _rules(self) -> dict[str, RuleConfig]:
        return {rule.name: rule for rule in self.config.rules}

    def rules(self) -> list[dict[str, Any]]:
        """The configured rules, by name, with their thresholds and how many of their states
        are problems now (by severity)."""
        counts: dict[str, dict[str, int]] = {}
        for (rule, _, _), state in self.fleet.states.items():
            if state.severity is not Severity.OK:
                by_severity = counts.setdefault(rule, {})
                by_severity[state.severity.name] = by_severity.get(state.severity.name, 0) + 1
        return [
            {
                "name": rule.name,
                "metric": rule.metric,
                "owner": rule.owner,
                "match": rule.match,
                "direction": rule.direction,
                "warning": rule.warning,
                "critical": rule.critical,
                "clear": rule.clear_threshold,
                "for": float(rule.for_),
                # A forecast's thresholds are times left, in seconds.
                "unit": "seconds" if rule.forecast is not None else "",
                "forecast": None
                if rule.forecast is None
                else {"reaches": rule.forecast.reaches, "over": float(rule.forecast.over)},
                "description": rule.description,
                "problems": counts.get(rule.name, {}),
            }
            for rule in sorted(self.config.rules, key=lambda r: r.name)
        ]

    def retired_hosts(self, only: str | None = None) -> list[dict[str, Any]]:
        """Retired hosts, by name, in the shape of hosts() with their retirement: when, by
        whom, why (`state` is RETIRED; they have no checks, problems or measurements)."""
        out: list[dict[str, Any]] = []
        for name, retirement in sorted(self.fleet.retired.items()):
            if only is not None and name != only:
                continue
            record = retirement.record
            out.append(
                {
                    "host": name,
                    "state": "RETIRED",
                    "last_report_at": record.last_report_at if record else None,
                    "first_seen": record.first_seen if record else None,
                    "interval_seconds": record.interval_seconds if record else None,
                    "agent_version": record.agent_version if record else "",
                    "labels": record.labels if record else {},
                    "parents": [],
                    "last_seq": record.last_seq if record else None,
                    "checks": [],
                    "problems": [],
                    "measurements": [],
                    "retired": {
                        "at": retirement.retired_at,
                        "by": retirement.retired_by,
                        "reason": retirement.reason,
                    },
                }
            )
        return out

    def explain(self, host: str, rule_name: str) -> dict[str, Any] | None:
        """Which thresholds apply to a rule on a host and why; None for an unknown rule."""
        rule = next((r for r in self.config.rules if r.name == rule_name), None)
        if rule is None:
            return None
        now = self.clock()
        known = self.fleet.hosts.get(host)
        labels = dict(known.record.labels) if known else {}
        found = self.resolver.explain(rule, host, labels)

        def thresholds(r: Any) -> dict[str, Any]:
            return {
                "direction": r.direction,
                "warning": r.warning,
                "critical": r.critical,
                "clear": r.clear_threshold,
                "for": float(r.for_),
            }

        flapping = rule.flapping or self.config.flapping
        states = [
            {
                "labels": json.loads(key[2]),
                "state": state.severity.name,
                "value": state.value,
                "flapping": state.flapping,
                "silenced": state.silenced,
                "call_id": state.call_id,
            }
            for key, state in sorted(self.fleet.states.items())
            if key[0] == rule_name and key[1] == host
        ]
        return {
            "host": host,
            "rule": rule.name,
            "metric": rule.metric,
            "owner": rule.owner,
            "host_known": known is not None,
            "host_labels": labels,
            "rule_thresholds": thresholds(rule),
            "effective_thresholds": thresholds(found.effective),
            "source": found.source,
            "forecast": None
            if rule.forecast is None
            else {"reaches": rule.forecast.reaches, "over": float(rule.forecast.over)},
            "host_groups": [
                {
                    "name": g.group,
                    "member": g.member,
                    "why": g.why,
                    "overrides_rule": g.overrides_rule,
                    "applies": g.applies,
                }
                for g in found.groups
            ],
            "flapping": {
                "enabled": flapping.enabled,
                "changes": flapping.changes,
                "window": float(flapping.window),
                "source": "rule" if rule.flapping else "collector",
            },
            "maintenance": [
                {
                    "source": w.source,
                    "ends_at": w.ends_at,
                    "reason": w.reason,
                    "created_by": w.created_by,
                }
                for w in self.calendar.covering(host, rule.name, now)
            ],
            "parents": list(self.evaluator.parents_of(host)),
            "states": states,
        }
