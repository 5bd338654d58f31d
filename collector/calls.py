"""Calls as the help desk sees them: records, fingerprints and their wording."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import msgspec

from checks.settings import format_duration

CallStatus = Literal["open", "resolved"]

# Severity -> priority, as help desks name them.
PRIORITY = {"WARNING": "normal", "UNKNOWN": "normal", "CRITICAL": "high", "STALE": "high"}


_sorted_json = msgspec.json.Encoder(order="sorted")


def labels_key(labels: dict[str, str]) -> str:
    """A canonical text form of a label set, stable across processes (compact sorted JSON)."""
    if not labels:
        return "{}"
    return _sorted_json.encode(labels).decode()


def fingerprint(host: str, rule: str, labels: dict[str, str]) -> str:
    """The incident key: one open call at most per (host, rule, labels)."""
    raw = f"{host}\x1f{rule}\x1f{labels_key(labels)}".encode()
    return hashlib.sha256(raw).hexdigest()[:20]


@dataclass(slots=True)
class Call:
    """One call in the built-in register."""

    id: int
    fingerprint: str
    host: str
    rule: str
    labels: dict[str, str]
    group: str
    assign: str
    severity: str
    priority: str
    status: CallStatus
    summary: str
    description: str
    first_seen: float
    opened_at: float
    updated_at: float
    resolved_at: float | None = None
    reopened: int = 0


@dataclass(slots=True)
class CallEvent:
    """One entry in a call's history."""

    call_id: int
    at: float
    kind: Literal["opened", "comment", "severity", "resolved", "reopened", "acknowledged"]
    text: str


@dataclass(frozen=True, slots=True)
class Problem:
    """What a call states: all of it comes from the rule, the series and the evaluation."""

    host: str
    rule: str
    metric: str
    labels: dict[str, str]
    severity: str
    value: float | None
    unit: str
    threshold: float | None
    direction: str
    group: str
    assign: str
    first_seen: float
    description: str = ""
    runbook: str = ""
    detail: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def format_value(value: float | None, unit: str, metric: str = "") -> str:
    """Render a value the way a person reads it: 93.1%, 12.0 GiB, 3d 2h."""
    if value is None:
        return "no value"
    if unit == "ratio" or metric.endswith("_ratio"):
        return f"{value * 100:.1f}%"
    if unit == "bytes" or metric.endswith("_bytes"):
        size = float(value)
        for suffix in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
            if abs(size) < 1024 or suffix == "PiB":
                return f"{size:.0f} {suffix}" if suffix == "B" else f"{size:.1f} {suffix}"
            size /= 1024
    if unit == "seconds" or metric.endswith("_seconds"):
        return format_duration(value)
    return f"{value:.4g}{' ' + unit if unit else ''}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _where(problem: Problem) -> str:
    inner = ", ".join(f"{k}={v}" for k, v in sorted(problem.labels.items()))
    return f" {{{inner}}}" if inner else ""


def summary(problem: Problem) -> str:
    """`[host] rule: value (threshold)`: one line that says what is wrong and where."""
    value = format_value(problem.value, problem.unit, problem.metric)
    if problem.severity in ("UNKNOWN", "STALE") or problem.threshold is None:
        detail = f" ({problem.detail})" if problem.detail else ""
        line = f"[{problem.host}] {problem.rule}{_where(problem)}: {problem.severity}{detail}"
        return line if len(line) <= 250 else line[:249] + "…"
    op = ">=" if problem.direction == "above" else "<="
    limit = format_value(problem.threshold, problem.unit, problem.metric)
    return (f"[{problem.host}] {problem.rule}{_where(problem)}: {value} "
            f"({problem.severity.lower()} {op} {limit})")


def description(problem: Problem) -> str:
    """The call's body: everything the help desk needs to route and start work."""
    lines = [
        f"Host:        {problem.host}",
        f"Rule:        {problem.rule} (metric {problem.metric}{_where(problem)})",
        f"Severity:    {problem.severity}",
        f"Value:       {format_value(problem.value, problem.unit, problem.metric)}",
    ]
    if problem.threshold is not None:
        op = ">=" if problem.direction == "above" else "<="
        lines.append(f"Threshold:   {op} "
                     f"{format_value(problem.threshold, problem.unit, problem.metric)}")
    lines += [
        f"Owner group: {problem.group} ({problem.assign})",
        f"First seen:  {iso(problem.first_seen)}",
    ]
    if problem.detail:
        lines.append(f"Detail:      {problem.detail}")
    if problem.description:
        lines += ["", problem.description]
    if problem.runbook:
        lines += ["", f"Runbook: {problem.runbook}"]
    return "\n".join(lines)
