"""The store interface: what the collector keeps, independent of the database behind it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from collector.evaluation.rules import RuleState, Severity
from collector.incidents.calls import Call, CallEvent, CallStatus


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
    op: str                      # open, comment, update, resolve, reopen
    payload: dict[str, Any]
    created_at: float
    attempts: int = 0
    next_attempt_at: float = 0.0
    status: str = "pending"      # pending, done, dead
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


def rule_state_from_row(row: tuple[Any, ...]) -> RuleStateRecord:
    """A rule_states row (in STATE_COLUMNS order) as a record; both stores read it this way."""
    (rule, host, key, severity, value, since, call_id, call_severity, changed, detail,
     changes, flapping, peak, call_flapping, silenced, absorbed_by) = row
    return RuleStateRecord(rule, host, key, RuleState(
        Severity(severity), value, since, call_id, Severity(call_severity), changed, detail,
        tuple(float(t) for t in changes.split()) if changes else (), bool(flapping),
        Severity(peak), bool(call_flapping), bool(silenced), absorbed_by))


def rule_state_to_row(record: RuleStateRecord) -> tuple[Any, ...]:
    """The row for a record, in STATE_COLUMNS order."""
    state = record.state
    return (record.rule, record.host, record.labels_key, int(state.severity), state.value,
            state.problem_since, state.call_id, int(state.call_severity), state.changed_at,
            state.detail, " ".join(repr(t) for t in state.changes), state.flapping,
            int(state.peak), state.call_flapping, state.silenced, state.absorbed_by)


STATE_COLUMNS = ("rule, host, labels_key, severity, value, problem_since, call_id, "
                 "call_severity, changed_at, detail, changes, flapping, peak, "
                 "call_flapping, silenced, absorbed_by")


@dataclass(slots=True)
class HostSnapshot:
    """Everything stored about one host: read to bring a replica's view of it up to date."""

    record: HostRecord | None
    version: int
    series: list[SeriesRecord]
    statuses: list[CheckStatus]
    states: list[RuleStateRecord]


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
    host_pattern: str           # glob on the host name
    rule_pattern: str           # glob on the rule name
    starts_at: float
    ends_at: float
    reason: str
    created_by: str             # the operator token's name
    created_at: float
    ended_by: str | None = None  # set when an operator ended it early

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change made by a person through the API or the console: who, when, what, on what."""

    id: int
    at: float
    actor: str                  # the operator token's or the user's name
    action: str                 # e.g. silence.add, call.acknowledge, token.revoke
    target: str                 # e.g. "silence 3", "call 12", "host web01"
    detail: str = ""
    via: str = "api"            # api, console or cli


@dataclass(frozen=True, slots=True)
class StateChange:
    """A rule's severity for one series changed: the record service-level reports are made of."""

    at: float
    host: str
    rule: str
    labels_key: str
    group: str                  # the rule's owner when it changed
    severity: int               # a Severity value


@dataclass(frozen=True, slots=True)
class BackupSuccess:
    """A successful backup an agent reported (its timestamp), once per job and time."""

    host: str
    name: str                   # the measurement it came from
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


class Store(Protocol):
    """Durable state. Writes happen inside `transaction()`, which commits or rolls back whole."""

    def transaction(self) -> AbstractContextManager[None]: ...

    # Coordination between collector replicas sharing one store. A host's version moves on
    # every change to what is stored about it; a replica whose view holds another version
    # reloads that host first. Inside a transaction, lock_host() keeps other replicas off the
    # host until it ends. try_lead() says whether this replica runs a periodic job.
    shared: bool  # whether other collector replicas may write to the same store

    def lock_host(self, host: str) -> tuple[HostRecord, int] | None: ...
    # Several hosts at once (a batch of reports), locked in an order that cannot deadlock.
    def lock_hosts(self, hosts: Sequence[str]) -> dict[str, tuple[HostRecord, int]]: ...
    def bump_host_version(self, host: str) -> int: ...
    def bump_host_versions(self, hosts: Sequence[str]) -> dict[str, int]: ...
    def host_versions(self) -> dict[str, int]: ...
    def load_host_snapshot(self, host: str) -> HostSnapshot: ...
    def try_lead(self, job: str) -> bool: ...
    def hosts_to_tick(self, now: float, after_intervals: float, stale_rule: str
                      ) -> list[str]: ...

    # What the agents reported.
    def load_hosts(self) -> Iterator[HostRecord]: ...
    def load_series(self) -> Iterator[SeriesRecord]: ...
    def load_check_statuses(self) -> Iterator[CheckStatus]: ...
    def save_host(self, host: HostRecord) -> None: ...
    def save_hosts(self, hosts: list[HostRecord]) -> None: ...
    def save_series(self, series: list[SeriesRecord]) -> None: ...
    def delete_series(self, keys: list[tuple[str, str, str]]) -> None: ...
    def save_check_statuses(self, statuses: list[CheckStatus]) -> None: ...
    def delete_check_statuses(self, keys: list[tuple[str, str]]) -> None: ...

    # Downsampled history of the series that forecasts watch.
    def add_history(self, points: list[HistoryPoint]) -> None: ...
    def load_history(self, since: float) -> Iterator[HistoryPoint]: ...
    def prune_history(self, before: float) -> int: ...

    # Maintenance windows set by operators.
    def add_silence(self, silence: Silence) -> int: ...
    def list_silences(self, ending_after: float | None) -> list[Silence]: ...
    def end_silence(self, silence_id: int, now: float, by: str) -> Silence | None: ...

    # The audit log of changes made by people, and the records reports are made of.
    def add_audit(self, entry: AuditEntry) -> int: ...
    def list_audit(self, limit: int) -> list[AuditEntry]: ...
    def add_state_changes(self, changes: list[StateChange]) -> None: ...
    def state_changes(self, since: float, until: float) -> list[StateChange]: ...
    def add_backup_successes(self, successes: list[BackupSuccess]) -> None: ...
    def backup_successes(self, since: float, until: float) -> list[BackupSuccess]: ...
    def calls_opened_between(self, since: float, until: float) -> list[Call]: ...

    # Console sessions that have not been signed out, by a key the console derives from each
    # session's id: signing out at one replica ends the session at all of them.
    def add_session(self, key: str, name: str, expires_at: float) -> None: ...
    def session_live(self, key: str, now: float) -> bool: ...
    def end_session(self, key: str) -> bool: ...
    def prune_sessions(self, now: float) -> int: ...

    # Where each rule stands.
    def load_rule_states(self) -> Iterator[RuleStateRecord]: ...
    def save_rule_states(self, states: list[RuleStateRecord]) -> None: ...

    # The built-in call register.
    def insert_call(self, call: Call) -> int: ...
    def update_call(self, call: Call) -> None: ...
    def add_call_event(self, event: CallEvent) -> None: ...
    def get_call(self, call_id: int) -> Call | None: ...
    def find_open_call(self, fingerprint: str) -> Call | None: ...
    def find_resolved_call(self, fingerprint: str, since: float) -> Call | None: ...
    def list_calls(self, status: CallStatus | None, group: str | None, limit: int
                   ) -> list[Call]: ...
    def call_events(self, call_id: int) -> list[CallEvent]: ...
    def last_call_event(self, call_id: int) -> CallEvent | None: ...
    def open_calls_by_group(self) -> dict[str, int]: ...
    def put_storm_member(self, umbrella_id: int, fingerprint: str, summary: str) -> None: ...
    def drop_storm_member(self, umbrella_id: int, fingerprint: str) -> None: ...
    def storm_members(self, umbrella_id: int) -> list[tuple[str, str]]: ...

    # The outbox, and links to help desk tickets.
    def enqueue(self, op: OutboxOp) -> int: ...
    def due_ops(self, now: float, limit: int) -> list[OutboxOp]: ...
    def next_due_at(self) -> float | None: ...
    def has_undelivered(self, call_id: int, sink: str) -> bool: ...
    def mark_done(self, op_id: int, now: float) -> None: ...
    def mark_retry(self, op_id: int, next_attempt_at: float, error: str) -> None: ...
    def mark_dead(self, op_id: int, error: str) -> None: ...
    def list_ops(self, status: str | None, limit: int) -> list[OutboxOp]: ...
    def retry_dead(self, op_id: int | None, now: float) -> int: ...
    def discard_dead(self, op_id: int, now: float) -> int: ...
    def outbox_counts(self) -> dict[tuple[str, str], int]: ...
    def outbox_oldest_pending(self) -> dict[str, float]: ...
    def get_link(self, call_id: int, sink: str) -> CallLink | None: ...
    def save_link(self, link: CallLink) -> None: ...
    def open_links(self) -> list[CallLink]: ...
    def retire_call(self, call_id: int, now: float) -> None: ...

    def close(self) -> None: ...
