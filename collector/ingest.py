"""Ingest: accept one validated report, drop duplicates, store it, and evaluate what changed."""

from __future__ import annotations

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

    def ingest(self, report: Report, now: float) -> IngestResult:
        """Store and evaluate a report that has already been authenticated and validated."""
        with self._store.transaction():
            # Other replicas sharing the store wait here for this host, and this view of it
            # is brought up to date if one of them moved it since.
            locked = self._store.lock_host(report.host)
            if locked is not None and (report.host not in self._fleet.hosts
                                       or self._fleet.versions.get(report.host) != locked[1]):
                self._fleet.reload_host(self._store.load_host_snapshot(report.host),
                                        report.host, now)
            known = self._fleet.hosts.get(report.host)
            if known is not None and known.record.boot_id == report.boot_id \
                    and report.seq <= known.record.last_seq:
                return IngestResult("duplicate", report.seq, 0)
            stored = self._record(report, known, now)
        return IngestResult("accepted", report.seq, stored)

    def _record(self, report: Report, known: HostState | None, now: float) -> int:
        """Write the report and evaluate it; return how many series it updated."""
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

        self._store.save_host(record)
        self._store.save_series(series)
        self._store.save_check_statuses(statuses)
        self._store.add_backup_successes(backups)
        host = self._fleet.hosts.setdefault(report.host, HostState(record))
        host.record = record
        for status in statuses:
            host.checks[status.check] = status
        for item in series:
            self._fleet.put_series(item, now)
        self._evaluator.on_report(report.host, series, failing, now,
                                  [status.check for status in statuses])
        self._fleet.versions[report.host] = self._store.bump_host_version(report.host)
        return len(series)
