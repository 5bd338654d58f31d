"""Call texts from Jinja2 templates: good defaults, and the admin's own where configured.

Templates run sandboxed and see plain values only (host, rule, severity, the value and the
threshold already formatted for people, the owner group, when the problem was first seen, the
rule's description and runbook, a dashboard link and the recent measurements).
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from collector.incidents.calls import Problem, format_value, iso

SUMMARY = (
    "[{{ host }}] {{ rule }}{{ where }}: "
    "{% if threshold_text and severity not in ('UNKNOWN', 'STALE') %}"
    "{{ value_text }} ({{ severity | lower }} {{ threshold_text }})"
    "{% else %}{{ severity }}{% if detail %} ({{ detail }}){% endif %}{% endif %}"
)

DESCRIPTION = """\
Host:        {{ host }}
Rule:        {{ rule }} (metric {{ metric }}{{ where }})
Severity:    {{ severity }}
Value:       {{ value_text }}
{% if threshold_text %}Threshold:   {{ threshold_text }}
{% endif %}Owner group: {{ group }} ({{ assign }})
First seen:  {{ first_seen_text }}
{% if detail %}Detail:      {{ detail }}
{% endif %}{% if description %}
{{ description }}
{% endif %}{% if runbook %}
Runbook: {{ runbook }}
{% endif %}{% if dashboard %}Dashboard: {{ dashboard }}
{% endif %}{% if recent %}
Recent measurements:
{% for at, value in recent %}  {{ at }}  {{ value }}
{% endfor %}{% endif %}"""

_MAX_SUMMARY = 250

_environment = SandboxedEnvironment(
    autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=False
)


def compile_template(text: str) -> jinja2.Template:
    """Compile a template; raises jinja2.TemplateSyntaxError with the line of the mistake."""
    return _environment.from_string(text)


class CallTemplates:
    """Render a call's summary and description, and the dashboard link they carry."""

    def __init__(
        self,
        summary: str | None = None,
        description: str | None = None,
        dashboard_url: str | None = None,
    ) -> None:
        self._summary = compile_template(summary or SUMMARY)
        self._description = compile_template(description or DESCRIPTION)
        self._dashboard = compile_template(dashboard_url) if dashboard_url else None

    def context(self, problem: Problem) -> dict[str, Any]:
        inner = ", ".join(f"{k}={v}" for k, v in sorted(problem.labels.items()))
        op = ">=" if problem.direction == "above" else "<="
        threshold = (
            f"{op} {format_value(problem.threshold, problem.unit, problem.metric)}"
            if problem.threshold is not None
            else ""
        )
        values: dict[str, Any] = {
            "host": problem.host,
            "rule": problem.rule,
            "metric": problem.metric,
            "labels": dict(problem.labels),
            "where": f" {{{inner}}}" if inner else "",
            "severity": problem.severity,
            "value": problem.value,
            "value_text": format_value(problem.value, problem.unit, problem.metric),
            "threshold": problem.threshold,
            "threshold_text": threshold,
            "group": problem.group,
            "assign": problem.assign,
            "first_seen": problem.first_seen,
            "first_seen_text": iso(problem.first_seen),
            "detail": problem.detail,
            "description": problem.description,
            "runbook": problem.runbook,
            "recent": [
                (
                    iso(at),
                    format_value(
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

    def summary(self, problem: Problem) -> str:
        """One line that says what is wrong and where: `[host] rule: value (threshold)`."""
        line = " ".join(self._summary.render(self.context(problem)).split())
        return line if len(line) <= _MAX_SUMMARY else line[: _MAX_SUMMARY - 1] + "…"

    def description(self, problem: Problem) -> str:
        """The call's body: everything the help desk needs to route and start work."""
        return self._description.render(self.context(problem)).rstrip()
