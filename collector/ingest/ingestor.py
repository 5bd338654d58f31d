"""Ingest: accept one validated report, drop duplicates, store it, and evaluate what changed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from sys import intern
from typing import Literal

from checks.schema import Report
from collector.evaluation.evaluator import RuleEvaluator
from collector.incidents.calls import labels_key
from collector.store.protocols import Store
from collector.store.records import (
    BackupSuccess,
    CheckStatus,
    HostRecord,
    HostRetirement,
    SeriesRecord,
)
from collector.view.fleet import Fleet, HostState
from collector.view.replica import ReplicaSync

# Measurements whose value is the time of the last successful backup of a job (statusfile,
# restic and borg checks): each new value is kept, for the backup freshness report.
BACKUP_SUCCESS_METRICS = frozenset(
    {"backup_last_success_timestamp_seconds", "backup_last_snapshot_timestamp_seconds"}
)


@dataclass(frozen=True, slots=True)
class SeriesLimits:
    """What reports may make the collector hold: new series per host and in all, and the
    longest interval it believes (staleness and pruning go by it)."""

    per_host: int
    total: int
    max_interval_seconds: float
    checks_per_host: int


@dataclass(frozen=True, slots=True)
class IngestWarning:
    """Something an accepted report asked for that the collector did not do; the agent logs it.

    `code` names the limit (its config key under `limits`) or `reserved_name`; `dropped` counts
    the new series (or check names) left out."""

    code: str
    message: str
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class IngestResult:
    status: Literal["accepted", "duplicate", "retired"]
    seq: int
    measurements: int
    warnings: tuple[IngestWarning, ...] = ()


class ReportIngestor:
    """Record reports. At-least-once delivery acts exactly once: (host, boot_id, seq) dedups."""

    def __init__(
        self,
        fleet: Fleet,
        store: Store,
        evaluator: RuleEvaluator,
        limits: SeriesLimits,
        replica: ReplicaSync | None = None,
    ) -> None:
        self._fleet = fleet
        self._store = store
        self._replica = replica or ReplicaSync(fleet, store)
        self._evaluator = evaluator
        self._limits = limits

    def ingest_many(self, reports: Sequence[Report], now: float) -> list[IngestResult]:
        """Store and evaluate reports of distinct hosts in one transaction, in order.

        A batch costs a few round trips to a shared store, not a few per report: the hosts
        are locked together, each table is written with one statement for all of them, and
        the transaction commits once. Should any part fail, none of it is stored."""
        hosts = [report.host for report in reports]
        if len(set(hosts)) != len(hosts):
            raise ValueError("a batch holds at most one report per host")
        fleet = self._fleet
        # Other replicas sharing the store wait here for these hosts, and this view of each
        # is brought up to date if one of them moved it since.
        with self._replica.hold(hosts, now) as held:
            results: list[IngestResult] = []
            fresh: list[_Prepared] = []
            # New series the fleet has room for, shared by the batch's reports in order.
            room = self._limits.total - len(fleet.series)
            for report in reports:
                if report.host in fleet.retired:  # another replica retired it meanwhile
                    results.append(IngestResult("retired", report.seq, 0))
                    continue
                known = fleet.hosts.get(report.host)
                if (
                    known is not None
                    and known.record.boot_id == report.boot_id
                    and report.seq <= known.record.last_seq
                ):
                    results.append(IngestResult("duplicate", report.seq, 0))
                    continue
                prepared = self._prepare(report, known, now, room)
                room -= prepared.added
                fresh.append(prepared)
                results.append(
                    IngestResult("accepted", report.seq, len(prepared.series), prepared.warnings)
                )
            if fresh:
                self._store.save_hosts([item.record for item in fresh])
                self._store.save_series([s for item in fresh for s in item.series])
                self._store.save_check_statuses([s for item in fresh for s in item.statuses])
                self._store.add_backup_successes([b for item in fresh for b in item.backups])
                for item in fresh:
                    self._evaluate(item, now)
                held.changed(item.record.host for item in fresh)
        return results

    def retired(self, host: str) -> HostRetirement | None:
        """The host's retirement, if an operator retired it (a lookup in the view)."""
        return self._fleet.retired.get(host)

    def surely_retired(self, host: str) -> HostRetirement | None:
        """retired(), where this view is sure of it: on a store no other replica shares. With
        replicas, the host is checked inside ingest_many, once this view of it is current
        (another replica may have restored it)."""
        return None if self._store.shared else self._fleet.retired.get(host)

    def _prepare(self, report: Report, known: HostState | None, now: float, room: int) -> _Prepared:
        """What the report changes, in the shapes the store takes, within the limits: of its
        new series, at most `room` (the fleet's) and what the host's limit leaves."""
        longest = self._limits.max_interval_seconds
        record = HostRecord(
            host=report.host,
            first_seen=known.record.first_seen if known else now,
            last_report_at=now,
            interval_seconds=min(report.interval_seconds, longest),
            agent_version=report.agent_version,
            boot_id=report.boot_id,
            last_seq=report.seq,
            labels=dict(report.labels),
        )
        latest: dict[tuple[str, str], SeriesRecord] = {}
        backups: list[BackupSuccess] = []
        host_name = intern(report.host)
        known_series = self._fleet.series
        # A host's known series are always taken: only new ones can be over a limit.
        host_room = self._limits.per_host - len(self._fleet.by_host.get(host_name, ()))
        added = 0
        refused: dict[str, set[tuple[str, str]]] = {}  # limit: the new series it left out
        for m in report.measurements:
            key = labels_key(m.labels)
            previous = known_series.get((host_name, m.name, key))
            if previous is None and (m.name, key) not in latest:
                over = (
                    "max_series_per_host"
                    if added >= host_room
                    else "max_series"
                    if added >= room
                    else None
                )
                if over is not None:
                    refused.setdefault(over, set()).add((m.name, key))
                    continue
                added += 1
            # A large fleet keeps hundreds of thousands of series in memory: their names and
            # labels are shared with the previous value's, not held again by each new one.
            if previous is not None:
                name, key, labels = previous.name, previous.labels_key, previous.labels
                check = previous.check if previous.check == m.check else intern(m.check)
                unit = previous.unit if previous.unit == m.unit else intern(m.unit)
            else:
                name, key, labels = intern(m.name), intern(key), dict(m.labels)
                check, unit = intern(m.check), intern(m.unit)
            if (
                name in BACKUP_SUCCESS_METRICS
                and m.value > 0
                and (previous is None or previous.value != m.value)
            ):
                backups.append(BackupSuccess(host_name, name, key, m.value))
            # A later value of the same series in one report replaces the earlier one.
            latest[(name, key)] = SeriesRecord(
                host_name, name, key, labels, check, m.value, unit, m.timestamp
            )
        series = list(latest.values())
        known_checks = known.checks if known is not None else {}
        new_checks: set[str] = set()
        statuses = []
        for run in report.checks:
            if run.check not in known_checks and run.check not in new_checks:
                if len(known_checks) + len(new_checks) >= self._limits.checks_per_host:
                    refused.setdefault("max_checks_per_host", set()).add((run.check, "{}"))
                    continue
                new_checks.add(run.check)
            statuses.append(
                CheckStatus(
                    report.host,
                    run.check,
                    run.type,
                    min(run.interval_seconds, longest),
                    run.started_at,
                    run.duration_seconds,
                    run.error.kind if run.error else None,
                    run.error.message if run.error else None,
                    run.output,
                )
            )
        failing = {s.check: f"{s.error_kind}: {s.error}" for s in statuses if s.error is not None}
        warnings = self._warnings(report, refused, len(known_series) + added)
        return _Prepared(record, series, statuses, backups, failing, added, warnings)

    def _warnings(
        self, report: Report, refused: dict[str, set[tuple[str, str]]], fleet_series: int
    ) -> tuple[IngestWarning, ...]:
        """What the agent is told about the limits its report ran into."""
        limits = self._limits
        out = []
        held = len(self._fleet.by_host.get(report.host, ()))
        for limit, keys in refused.items():
            if limit == "max_checks_per_host":
                out.append(
                    IngestWarning(
                        limit,
                        f"{len(keys)} new checks dropped (such as {min(keys)[0][:200]!r}): "
                        f"this host's limit of {limits.checks_per_host} checks "
                        "(limits.max_checks_per_host) is reached. Its known checks are still "
                        "updated.",
                        len(keys),
                    )
                )
                continue
            if limit == "max_series_per_host":
                where = (
                    f"this host's limit of {limits.per_host} series (limits.max_series_per_host)"
                )
            else:
                where = (
                    f"the collector's limit of {limits.total} series in all "
                    f"(limits.max_series; {fleet_series} held)"
                )
            out.append(
                IngestWarning(
                    limit,
                    f"{len(keys)} new series dropped (such as {_series_name(*min(keys))}): "
                    f"{where} is reached. The host's {held} known series are still updated. "
                    "Look for a label whose value changes on every report (an id, a time).",
                    len(keys),
                )
            )
        believed = limits.max_interval_seconds
        longest = max([report.interval_seconds, *(run.interval_seconds for run in report.checks)])
        if longest > believed:
            out.append(
                IngestWarning(
                    "max_interval",
                    f"interval_seconds {longest:g} is above the collector's "
                    f"limits.max_interval ({believed:g} s): staleness, and the pruning of series "
                    f"no longer reported, go by {believed:g} s",
                )
            )
        return tuple(out)

    def _evaluate(self, item: _Prepared, now: float) -> None:
        """Bring this view up to date with a stored report, and evaluate the rules on it."""
        host_name = item.record.host
        self._fleet.take_report(item.record, item.statuses, item.series, now)
        self._evaluator.on_report(
            host_name, item.series, item.failing, now, [status.check for status in item.statuses]
        )


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One report of a batch, ready to store."""

    record: HostRecord
    series: list[SeriesRecord]
    statuses: list[CheckStatus]
    backups: list[BackupSuccess]
    failing: dict[str, str]
    added: int  # new series
    warnings: tuple[IngestWarning, ...]


def _series_name(name: str, key: str) -> str:
    """A series as Prometheus writes it: `disk_free_bytes{device="sda"}`."""
    labels = json.loads(key)
    inner = ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels.items())
    text = f"{name}{{{inner}}}" if inner else name
    return text if len(text) <= 200 else text[:199] + "…"
