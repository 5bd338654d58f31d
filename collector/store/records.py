"""What the collector keeps, as records independent of the database behind them."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

from collector.evaluation.rules import RuleState, Severity


@dataclass(slots=True)
class HostRecord:
    host: str
    first_seen: float
    last_report_at: float
    interval_seconds: float
    agent_version: str
    boot_id: str
    last_seq: int
    labels: dict[str, str] = field(default_factory=dict)  # the agent's own (host groups)


@dataclass(slots=True)
class SeriesRecord:
    """The latest value of one series: (host, metric, labels)."""

    host: str
    name: str
    labels_key: str
    labels: dict[str, str]
    check: str
    value: float
    unit: str
    timestamp: float


@dataclass(slots=True)
class CheckStatus:
    """The last run of one check on one host."""

    host: str
    check: str
    type: str
    interval_seconds: float
    last_run_at: float
    duration_seconds: float
    error_kind: str | None = None
    error: str | None = None
    output: str | None = None


@dataclass(slots=True)
class RuleStateRecord:
    rule: str
    host: str
    labels_key: str
    state: RuleState


@dataclass(slots=True)
class OutboxOp:
    """One call operation waiting for (or done with) delivery to a help desk."""

    id: int
    call_id: int
    sink: str
    op: str  # open, comment, update, resolve, reopen
    payload: dict[str, Any]
    created_at: float
    attempts: int = 0
    next_attempt_at: float = 0.0
    status: str = "pending"  # pending, done, dead
    last_error: str | None = None
    delivered_at: float | None = None


@dataclass(slots=True)
class CallLink:
    """Where a call lives in a help desk, and what two-way sync last saw there."""

    call_id: int
    sink: str
    remote_id: str
    url: str | None = None
    remote_state: str | None = None
    checked_at: float | None = None
    acknowledged_at: float | None = None
    escalated_at: float | None = None
    desk_closed_at: float | None = None


@dataclass(frozen=True, slots=True)
class EscalationState:
    """How far an open call nobody acknowledged has climbed (collector/notify/escalation.py).

    `steps` counts every step taken, so two replicas can never take the same one: a step is
    written only if `steps` is still what its taker read.
    """

    call_id: int
    group: str
    opened_at: float
    reopened: int
    level: int = 0  # 0: not escalated yet
    reached_at: float | None = None  # when `level` was reached
    steps: int = 0


def rule_state_from_row(row: tuple[Any, ...]) -> RuleStateRecord:
    """A rule_states row (in STATE_COLUMNS order) as a record; both stores read it this way."""
    (
        rule,
        host,
        key,
        severity,
        value,
        since,
        call_id,
        call_severity,
        changed,
        detail,
        changes,
        flapping,
        peak,
        call_flapping,
        silenced,
        absorbed_by,
    ) = row
    return RuleStateRecord(
        rule,
        host,
        key,
        RuleState(
            Severity(severity),
            value,
            since,
            call_id,
            Severity(call_severity),
            changed,
            detail,
            tuple(float(t) for t in changes.split()) if changes else (),
            bool(flapping),
            Severity(peak),
            bool(call_flapping),
            bool(silenced),
            absorbed_by,
        ),
    )


def rule_state_to_row(record: RuleStateRecord) -> tuple[Any, ...]:
    """The row for a record, in STATE_COLUMNS order."""
    state = record.state
    return (
        record.rule,
        record.host,
        record.labels_key,
        int(state.severity),
        state.value,
        state.problem_since,
        state.call_id,
        int(state.call_severity),
        state.changed_at,
        state.detail,
        " ".join(repr(t) for t in state.changes),
        state.flapping,
        int(state.peak),
        state.call_flapping,
        state.silenced,
        state.absorbed_by,
    )


STATE_COLUMNS = (
    "rule, host, labels_key, severity, value, problem_since, call_id, "
    "call_severity, changed_at, detail, changes, flapping, peak, "
    "call_flapping, silenced, absorbed_by"
)


@dataclass(slots=True)
class HostSnapshot:
    """Everything stored about one host: read to bring a replica's view of it up to date."""

    record: HostRecord | None
    version: int
    series: list[SeriesRecord]
    statuses: list[CheckStatus]
    states: list[RuleStateRecord]
    retirement: HostRetirement | None = None  # set when the host is retired (record is None)


@dataclass(frozen=True, slots=True)
class HostRetirement:
    """A host an operator retired: who, when (epoch seconds) and why, and its last record.

    Its history stays for the reports, up to `retired_at`; its series and states are gone."""

    host: str
    retired_at: float
    retired_by: str
    reason: str
    record: HostRecord | None = None


class StoreTimings:
    """Where a store reports how long its transactions took; the default does nothing."""

    def transaction(self, seconds: float) -> None:
        """A whole write transaction, from BEGIN to the end of COMMIT."""

    def commit(self, seconds: float) -> None:
        """The COMMIT alone: the write to disk."""


@dataclass(slots=True)
class Silence:
    """A maintenance window set by an operator: matching calls are held back until it ends."""

    id: int
    host_pattern: str  # glob on the host name
    rule_pattern: str  # glob on the rule name
    starts_at: float
    ends_at: float
    reason: str
    created_by: str  # the operator token's name
    created_at: float
    ended_by: str | None = None  # set when an operator ended it early

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change made by a person through the API or the console: who, when, what, on what."""

    id: int
    at: float
    actor: str  # the operator token's or the user's name
    action: str  # e.g. silence.add, call.acknowledge, token.revoke
    target: str  # e.g. "silence 3", "call 12", "host web01"
    detail: str = ""
    via: str = "api"  # api, console or cli


@dataclass(frozen=True, slots=True)
class StateChange:
    """A rule's severity for one series changed: the record service-level reports are made of."""

    at: float
    host: str
    rule: str
    labels_key: str
    group: str  # the rule's owner when it changed
    severity: int  # a Severity value


@dataclass(frozen=True, slots=True)
class BackupSuccess:
    """A successful backup an agent reported (its timestamp), once per job and time."""

    host: str
    name: str  # the measurement it came from
    labels_key: str
    succeeded_at: float


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One downsampled value of one series (for forecasts)."""

    host: str
    name: str
    labels_key: str
    timestamp: float
    value: float


@dataclass(frozen=True, slots=True)
class HistoryStep:
    """One resolution step of one ruled series, for the console's graphs: the mean of the
    values reported in the step, and the lowest and highest of them (None where they equal
    the mean: one value in the step, or all the same)."""

    host: str
    series: int  # collector.view.history.series_id(name, labels_key)
    at: int  # the step's start, in whole seconds
    value: float
    low: float | None = None
    high: float | None = None


# A point in a stored row: series id, mean (8-byte float), lowest and highest (4-byte floats:
# they draw a band; NaN where there is none). 24 bytes.
_POINT = struct.Struct("<qdff")


def pack_steps(steps: list[HistoryStep]) -> list[tuple[str, int, bytes]]:
    """Steps as stored: one (host, at, points) row per host and step, in the order given."""
    rows: dict[tuple[str, int], bytearray] = {}
    nan = math.nan
    for step in steps:
        packed = rows.setdefault((step.host, step.at), bytearray())
        packed += _POINT.pack(
            step.series,
            step.value,
            nan if step.low is None else step.low,
            nan if step.high is None else step.high,
        )
    return [(host, at, bytes(points)) for (host, at), points in rows.items()]


def unpack_steps(host: str, at: int, points: bytes) -> list[HistoryStep]:
    """A stored row's steps, one per series (the last written where a series is twice)."""
    found: dict[int, HistoryStep] = {}
    for series, value, low, high in _POINT.iter_unpack(points):
        ranged = not math.isnan(low)
        found[series] = HistoryStep(
            host, series, at, value, low if ranged else None, high if ranged else None
        )
    return list(found.values())


@dataclass(slots=True)
class StatusMessage:
    """An operator's message on the status page about an ongoing problem (issue 24)."""

    id: int
    service: str  # the service it is about, or "" for every service
    text: str
    posted_by: str
    posted_at: float
    updated_at: float
    updated_by: str
    ended_at: float | None = None
    ended_by: str | None = None
