"""Calls as the help desk sees them: records, fingerprints and their wording."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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
    # reopened: the problem came back after a recovery. desk_reopened: runwatch reopened a
    # ticket the help desk closed while the problem persisted (not a new problem);
    # desk_closed: such a close left closed by the group's policy; desk_comment: a note a
    # person wrote in the help desk ("AUTHOR in SINK: TEXT").
    kind: Literal[
        "opened",
        "comment",
        "severity",
        "resolved",
        "reopened",
        "acknowledged",
        "desk_reopened",
        "desk_closed",
        "desk_comment",
    ]
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
    recent: tuple[tuple[float, float], ...] = ()  # (time, value), oldest first
    recent_unit: str | None = None  # when it differs from `unit` (a forecast's series)


def format_value(value: float | None, unit: str, metric: str = "") -> str:
    """Render a value the way a person reads it: 93.1%, 12.0 GiB, 3d 2h."""
    if value is None:
        return "no value"
    # The unit decides; the name's suffix only when there is no unit (a forecast's value is
    # in seconds although its metric is fs_free_bytes).
    kind = (
        unit
        if unit in ("ratio", "bytes", "seconds")
        else next((k for k in ("ratio", "bytes", "seconds") if metric.endswith(f"_{k}")), "")
    )
    if kind == "ratio":
        return f"{value * 100:.1f}%"
    if kind == "bytes":
        size = float(value)
        for suffix in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
            if abs(size) < 1024 or suffix == "PiB":
                return f"{size:.0f} {suffix}" if suffix == "B" else f"{size:.1f} {suffix}"
            size /= 1024
    if kind == "seconds":
        return format_duration(value)
    return f"{value:.4g}{' ' + unit if unit else ''}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
