"""Ingest: accept one validated report, drop duplicates, store it, and evaluate what changed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from checks.schema import Report
from collector.calls import labels_key
from collector.evaluation import RuleEvaluator
from collector.fleet import Fleet, HostState
from collector.store import CheckStatus, HostRecord, SeriesRecord, Store


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
        known = self._fleet.hosts.get(report.host)
        if known is not None and known.record.boot_id == report.boot_id \
                and report.seq <= known.record.last_seq:
            return IngestResult("duplicate", report.seq, 0)

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
        for m in report.measurements:
            key = labels_key(m.labels)
            # A later value of the same series in one report replaces the earlier one.
            latest[(m.name, key)] = SeriesRecord(report.host, m.name, key, dict(m.labels),
                                                 m.check, m.value, m.unit, m.timestamp)
        series = list(latest.values())
        statuses = [
            CheckStatus(report.host, run.check, run.type, run.interval_seconds, run.started_at,
                        run.duration_seconds, run.error.kind if run.error else None,
                        run.error.message if run.error else None, run.output)
            for run in report.checks
        ]
        failing = {s.check: f"{s.error_kind}: {s.error}" for s in statuses if s.error is not None}

        with self._store.transaction():
            self._store.save_host(record)
            self._store.save_series(series)
            self._store.save_check_statuses(statuses)
            host = self._fleet.hosts.setdefault(report.host, HostState(record))
            host.record = record
            for status in statuses:
                host.checks[status.check] = status
            for item in series:
                self._fleet.put_series(item, now)
            self._evaluator.on_report(report.host, series, failing, now,
                                      [status.check for status in statuses])
        return IngestResult("accepted", report.seq, len(series))
