"""The store interface: what the collector keeps, independent of the database behind it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from collector.calls import Call, CallEvent, CallStatus
from collector.rules import RuleState


@dataclass(slots=True)
class HostRecord:
    host: str
    first_seen: float
    last_report_at: float
    interval_seconds: float
    agent_version: str
    boot_id: str
    last_seq: int


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


class Store(Protocol):
    """Durable state. Writes happen inside `transaction()`, which commits or rolls back whole."""

    def transaction(self) -> AbstractContextManager[None]: ...

    # What the agents reported.
    def load_hosts(self) -> Iterator[HostRecord]: ...
    def load_series(self) -> Iterator[SeriesRecord]: ...
    def load_check_statuses(self) -> Iterator[CheckStatus]: ...
    def save_host(self, host: HostRecord) -> None: ...
    def save_series(self, series: list[SeriesRecord]) -> None: ...
    def delete_series(self, keys: list[tuple[str, str, str]]) -> None: ...
    def save_check_statuses(self, statuses: list[CheckStatus]) -> None: ...

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
    def open_calls_by_group(self) -> dict[str, int]: ...

    def close(self) -> None: ...
