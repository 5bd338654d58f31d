"""Calls as the help desk sees them: records, fingerprints and their wording."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import msgspec

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
    services: list[str] = field(default_factory=list)  # the services it affects, by name


@dataclass(slots=True)
class CallEvent:
    """One entry in a call's history."""

    call_id: int
    at: float
    # reopened: the problem came back after a recovery. desk_reopened: runwatch reopened a
    # ticket the help desk closed while the problem persisted (not a new problem);
    # desk_closed: such a close left closed by the group's policy; desk_comment: a note a
    # person wrote in the help desk ("AUTHOR in SINK: TEXT"); escalated: nobody acknowledged
    # it, and the next level was told (collector/notify/escalation.py).
    kind: Literal[
        "opened",
        "comment",
        "severity",
        "resolved",
        "reopened",
        "acknowledged",
        "escalated",
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
    last_report_at: float | None = None  # a silent host's or check's last report
    # The services it affects and the state it puts each in: (name, title, state), e.g.
    # ("payroll", "Payroll", "degraded"); set by the incident manager (collector/services/).
    services: tuple[tuple[str, str, str], ...] = ()
