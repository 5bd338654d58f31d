"""Call texts from Jinja2 templates: good defaults, and the admin's own where configured.

Templates run sandboxed and see plain values only (host, rule, severity, the value and the
threshold already formatted for people by runwatch/units.py, the owner group, when the problem
was first seen, the rule's description and runbook, the call's console link, a dashboard link
and the recent measurements). A description is rendered again at every change of the call, so
each one says what is true at its `as_of` time: see docs/helpdesks/call-texts.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from collector.incidents.calls import Problem
from runwatch import units

SUMMARY = (
    "[{{ host }}] {{ rule }}{{ where }}: "
    "{% if threshold_text and severity not in ('UNKNOWN', 'STALE') %}"
    "{{ value_text }} ({{ severity | lower }} {{ threshold_text }})"
    "{% else %}{{ severity }}{% if detail %} ({{ detail }}){% endif %}{% endif %}"
)

DESCRIPTION = """\
{% for service in services %}{{ service.title }}: {{ service.state }}
{% endfor %}{% if services %}
{% endif %}{% if recovered_text %}Recovered:   {{ recovered_text }}
{% endif %}Host:        {{ host }}
Rule:        {{ rule_text }}
Severity:    {{ severity_text }}
{% if last_report_text %}Last report: {{ last_report_text }}
{% else %}Value:       {{ value_text }}
{% endif %}{% if threshold_text %}Threshold:   {{ threshold_text }}
{% endif %}Owner group: {{ group }} ({{ assign }})
First seen:  {{ first_seen_text }}
{% if as_of_text %}As of:       {{ as_of_text }}
{% endif %}{% if detail %}Detail:      {{ detail }}
{% endif %}{% if call_url %}Console:     {{ call_url }}
{% endif %}{% if dashboard %}Dashboard:   {{ dashboard }}
{% endif %}{% if description %}
{{ description }}
{% endif %}{% if runbook %}
Runbook: {{ runbook }}
{% endif %}{% if recent %}
Recent measurements:
{% for at, value in recent %}  {{ at }}  {{ value }}
{% endfor %}{% endif %}"""

MAX_SUMMARY: Final = 250  # the register's own limit; each help desk may set a lower one
# A label value is never cut below this many characters (plus the ellipsis).
_MIN_KEPT: Final = 8

_environment = SandboxedEnvironment(
    autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=False
)


def compile_template(text: str) -> jinja2.Template:
    """Compile a template; raises jinja2.TemplateSyntaxError with the line of the mistake."""
    return _environment.from_string(text)


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What a text says beyond the problem: which call, when it was written, and its recovery."""

    call_id: int | None = None  # for the console link; unknown before the call is stored
    as_of: float | None = None  # when these facts were true
    recovered_at: float | None = None
    opened_at: float | None = None  # with `recovered_at`: how long the problem lasted
    was: str = ""  # the call's severity before it recovered
    reason: str = ""  # why it recovered ("the host reports again")


def recovery_text(facts: CallFacts) -> str:
    """`2026-12-02 05:51:00 UTC, after 1 h 20 min (reason)`, or "" before a recovery."""
    if facts.recovered_at is None:
        return ""
    text = units.timestamp(facts.recovered_at)
    if facts.opened_at is not None:
        text += f", after {units.duration(max(0.0, facts.recovered_at - facts.opened_at))}"
    return f"{text} ({facts.reason})" if facts.reason else text


def _where(labels: dict[str, str]) -> str:
    inner = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return f" {{{inner}}}" if inner else ""


def _cut(text: str, keep: int) -> str:
    return text if len(text) <= keep else text[:keep] + "…"


class CallTemplates:
    """Render a call's summary and description, and the links they carry."""

    def __init__(
        self,
        summary: str | None = None,
        description: str | None = None,
        dashboard_url: str | None = None,
        console_url: str | None = None,
    ) -> None:
        self._summary = compile_template(summary or SUMMARY)
        self._description = compile_template(description or DESCRIPTION)
        self._dashboard = compile_template(dashboard_url) if dashboard_url else None
        self._console = console_url.rstrip("/") if console_url else None

    def call_url(self, call_id: int | None) -> str:
        """The call's page in the console (`external_url` + /calls/N), or "" without either."""
        return f"{self._console}/calls/{call_id}" if self._console and call_id else ""

    def context(self, problem: Problem, facts: CallFacts | None = None) -> dict[str, Any]:
        facts = facts or CallFacts()
        op = ">=" if problem.direction == "above" else "<="
        threshold = (
            f"{op} {units.value(problem.threshold, problem.unit, problem.metric)}"
            if problem.threshold is not None
            else ""
        )
        severity = problem.severity
        last_report = ""
        if problem.last_report_at is not None:
            last_report = units.timestamp(problem.last_report_at)
            if facts.as_of is not None and facts.recovered_at is None:
                silent = units.duration(max(0.0, facts.as_of - problem.last_report_at))
                last_report += f" (silent for {silent} when this was written)"
        values: dict[str, Any] = {
            "host": problem.host,
            "rule": problem.rule,
            "metric": problem.metric,
            "labels": dict(problem.labels),
            "where": _where(problem.labels),
            # `disk_full (metric fs_used_ratio {mountpoint=/})`; a staleness rule has no metric
            "rule_text": f"{problem.rule} (metric {problem.metric}{_where(problem.labels)})"
            if problem.metric
            else problem.rule + _where(problem.labels),
            "severity": severity,
            "severity_text": f"{severity} (was {facts.was})" if facts.was else severity,
            "value": problem.value,
            "value_text": units.value(problem.value, problem.unit, problem.metric),
            "threshold": problem.threshold,
            "threshold_text": threshold,
            "group": problem.group,
            "assign": problem.assign,
            "first_seen": problem.first_seen,
            "first_seen_text": units.timestamp(problem.first_seen),
            "last_report": problem.last_report_at,
            "last_report_text": last_report,
            "as_of": facts.as_of,
            "as_of_text": units.timestamp(facts.as_of) if facts.as_of is not None else "",
            "recovered_at": facts.recovered_at,
            "recovered_text": recovery_text(facts),
            "call_url": self.call_url(facts.call_id),
            "detail": problem.detail,
            "description": problem.description,
            "runbook": problem.runbook,
            # The services it affects, in the users' words: {name, title, state}.
            "services": [
                {"name": name, "title": title, "state": state}
                for name, title, state in problem.services
            ],
            "recent": [
                (
                    units.timestamp(at),
                    units.value(
                        value,
                        problem.unit if problem.recent_unit is None else problem.recent_unit,
                        problem.metric,
                    ),
                )
                for at, value in problem.recent
            ],
        }
        values["dashboard"] = self._dashboard.render(values).strip() if self._dashboard else ""
        return values

    def summary(self, problem: Problem, limit: int = MAX_SUMMARY) -> str:
        """One line that says what is wrong and where: `[host] rule: value (threshold)`.

        Longer than `limit`, the longest label values are shortened first, then the detail,
        each with an ellipsis; the host and the rule stay whole.
        """
        context = self.context(problem)
        line = self._line(context)
        labels = dict(problem.labels)
        while len(line) > limit:
            name = max(labels, key=lambda k: len(labels[k]), default=None)
            if name is None or len(labels[name]) <= _MIN_KEPT + 1:
                break
            keep = max(_MIN_KEPT, len(labels[name]) - (len(line) - limit) - 1)
            labels[name] = _cut(problem.labels[name], keep)
            context["labels"], context["where"] = labels, _where(labels)
            line = self._line(context)
        if len(line) > limit and len(problem.detail) > _MIN_KEPT:
            keep = max(_MIN_KEPT, len(problem.detail) - (len(line) - limit) - 1)
            context["detail"] = _cut(problem.detail, keep)
            line = self._line(context)
        return line if len(line) <= limit else line[: limit - 1] + "…"

    def _line(self, context: dict[str, Any]) -> str:
        return " ".join(self._summary.render(context).split())

    def description(self, problem: Problem, facts: CallFacts | None = None) -> str:
        """The call's body: everything the help desk needs to route and start work."""
        return self._description.render(self.context(problem, facts)).rstrip()
