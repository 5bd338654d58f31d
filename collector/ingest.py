"""Ingest: accept one validated report, drop duplicates, store it, and evaluate what changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from sys import intern
from typing import Literal

from checks.schema import Report
from collector.calls import labels_key
from collector.evaluation import RuleEvaluator
from collector.fleet import Fleet, HostState
from collector.store import BackupSuccess, CheckStatus, HostRecord, SeriesRecord, Store

# Measurements whose value is the time of the last successful backup of a job (statusfile,
# restic and borg checks): each new value is kept, for the backup freshness report.
BACKUP_SUCCESS_METRICS = frozenset({"backup_last_success_timestamp_seconds",
                                    "backup_last_snapshot_timestamp_seconds"})


@dataclass(frozen=True, slots=True)
class IngestResult:
    status: Literal["accepted", "duplicate"]
    seq: int
    measurements: int


class ReportIngestor:
    """Record reports. At-least-once delivery acts exactly once: (host, boot_id, seq) dedups."""

    def __init__(self, fleet: Fleet, store: Store, evaluator: RuleEvaluator) -> None:
        self._fleet = fleet
        self._store = store
        self._evaluator = evaluator

    def ingest_many(self, reports: Sequence[Report], now: float) -> list[IngestResult]:
        """Store and evaluate reports of distinct hosts in one transaction, in order.

        A batch costs a few round trips to a shared store, not a few per report: the hosts
        are locked together, each table is written with one statement for all of them, and
        the transaction commits once. Should any part fail, none of it is stored."""
        hosts = [report.host for report in reports]
        if len(set(hosts)) != len(hosts):
            raise ValueError("a batch holds at most one report per host")
        fleet = self._fleet
        with self._store.transaction():
            # Other replicas sharing the store wait here for these hosts, and this view of
            # each is brought up to date if one of them moved it since.
            locked = self._store.lock_hosts(hosts)
            for host, (_, version) in locked.items():
                if host not in fleet.hosts or fleet.versions.get(host) != version:
                    fleet.reload_host(self._store.load_host_snapshot(host), host, now)
            results: list[IngestResult] = []
            fresh: list[_Prepared] = []
            for report in reports:
                known = fleet.hosts.get(report.host)
                if known is not None and known.record.boot_id == report.boot_id \
                        and report.seq <= known.record.last_seq:
                    results.append(IngestResult("duplicate", report.seq, 0))
                    continue
                prepared = self._prepare(report, known, now)
                fresh.append(prepared)
                results.append(IngestResult("accepted", report.seq, len(prepared.series)))
            if fresh:
                self._store.save_hosts([item.record for item in fresh])
                self._store.save_series([s for item in fresh for s in item.series])
                self._store.save_check_statuses([s for item in fresh for s in item.statuses])
                self._store.add_backup_successes([b for item in fresh for b in item.backups])
                for item in fresh:
                    self._evaluate(item, now)
                fleet.versions.update(
                    self._store.bump_host_versions([item.record.host for item in fresh]))
        return results

    def _prepare(self, report: Report, known: HostState | None, now: float) -> _Prepared:
        """What the report changes, in the shapes the store takes."""
        record = HostRecord(
            host=report.host,
            first_seen=known.record.first_seen if known else now,
            last_report_at=now,
            interval_seconds=report.interval_seconds,
            agent_version=report.agent_version,
            boot_id=report.boot_id,
            last_seq=report.seq,
            labels=dict(report.labels),
        )
        latest: dict[tuple[str, str], SeriesRecord] = {}
        backups: list[BackupSuccess] = []
        host_name = intern(report.host)
        known_series = self._fleet.series
        for m in report.measurements:
            key = labels_key(m.labels)
            previous = known_series.get((host_name, m.name, key))
            # A large fleet keeps hundreds of thousands of series in memory: their names and
            # labels are shared with the previous value's, not held again by each new one.
            if previous is not None:
                name, key, labels = previous.name, previous.labels_key, previous.labels
                check = previous.check if previous.check == m.check else intern(m.check)
                unit = previous.unit if previous.unit == m.unit else intern(m.unit)
            else:
                name, key, labels = intern(m.name), intern(key), dict(m.labels)
                check, unit = intern(m.check), intern(m.unit)
            if name in BACKUP_SUCCESS_METRICS and m.value > 0 and (
                    previous is None or previous.value != m.value):
                backups.append(BackupSuccess(host_name, name, key, m.value))
            # A later value of the same series in one report replaces the earlier one.
            latest[(name, key)] = SeriesRecord(host_name, name, key, labels, check, m.value,
                                               unit, m.timestamp)
        series = list(latest.values())
        statuses = [
            CheckStatus(report.host, run.check, run.type, run.interval_seconds, run.started_at,
                        run.duration_seconds, run.error.kind if run.error else None,
                        run.error.message if run.error else None, run.output)
            for run in report.checks
        ]
        failing = {s.check: f"{s.error_kind}: {s.error}" for s in statuses if s.error is not None}
        return _Prepared(record, series, statuses, backups, failing)

    def _evaluate(self, item: _Prepared, now: float) -> None:
        """Bring this view up to date with a stored report, and evaluate the rules on it."""
        host_name = item.record.host
        host = self._fleet.hosts.setdefault(host_name, HostState(item.record))
        host.record = item.record
        for status in item.statuses:
            host.checks[status.check] = status
        for series in item.series:
            self._fleet.put_series(series, now)
        self._evaluator.on_report(host_name, item.series, item.failing, now,
                                  [status.check for status in item.statuses])


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One report of a batch, ready to store."""

    record: HostRecord
    series: list[SeriesRecord]
    statuses: list[CheckStatus]
    backups: list[BackupSuccess]
    failing: dict[str, str]
