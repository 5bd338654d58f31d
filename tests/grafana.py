"""Read the shipped Grafana dashboards: their panels' queries and their variables."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = REPO / "config" / "grafana" / "dashboards"

# Grafana's built-in variables, filled in as Grafana would for a short test run.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?(\w+)\)$")


@dataclass(frozen=True)
class Query:
    """One panel target: where it is, and its PromQL with variables unfilled."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def id(self) -> str:
        return f"{self.dashboard}: {self.panel} [{self.ref_id}]"


def dashboards() -> dict[str, dict[str, Any]]:
    """Every shipped dashboard by file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries() -> list[Query]:
    """Every PromQL target of every panel of every dashboard."""
    found = []
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                found.append(Query(name, panel.get("title", "?"), target["refId"], target["expr"]))
    return found


def fill(expr: str, values: dict[str, str]) -> str:
    """Substitute `$var`, `${var}`, `${var:format}` and `[[var]]` from `values`."""

    def one(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"no value for variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(one, expr)


def resolve_variables(
    dashboard: dict[str, Any],
    label_values: Callable[[str, str], list[str]],
    preferred: dict[str, str],
) -> dict[str, str]:
    """Values for a dashboard's variables, in order, as Grafana would fill them in.

    A query variable's candidates come from `label_values(metric, label)`; a multi-value or
    "All" variable takes its all-value; a single one takes `preferred[name]` (which must be
    among the candidates) or else the first candidate.
    """
    values = dict(BUILTINS)
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        if variable["type"] == "datasource":
            values[name] = "prometheus"
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(fill(text, values).strip())
        if match is None:
            raise ValueError(f"variable {name}: only label_values(...) queries are supported")
        metric, label = match.group(1) or "", match.group(2)
        candidates = label_values(metric, label)
        if not candidates:
            raise AssertionError(f"variable ${name} ({text}) has no values")
        if variable.get("includeAll") or variable.get("multi"):
            values[name] = variable.get("allValue") or ".*"
        elif name in preferred:
            assert preferred[name] in candidates, (name, preferred[name], candidates)
            values[name] = preferred[name]
        else:
            values[name] = candidates[0]
    return values
