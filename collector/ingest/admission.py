"""Ingest admission: which reports may be stored, a batch that fails taken again one by one,
and what each accepted report is told and counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from checks.schema import Report
from collector.config import CollectorConfig
from collector.errors import Rejection, store_unavailable
from collector.incidents.retirement import refusal
from collector.ingest.ingestor import IngestResult, IngestWarning, ReportIngestor
from collector.metrics.instruments import CollectorMetrics

log = logging.getLogger(__name__)


class IngestAdmission:
    """Admit reports to the ingestor, and count what came of each."""

    def __init__(
        self,
        config: CollectorConfig,
        ingestor: ReportIngestor,
        metrics: CollectorMetrics,
        clock: Callable[[], float],
        reload: Callable[[], None],
    ) -> None:
        self.config = config
        self.ingestor = ingestor
        self.metrics = metrics
        self.ingest_metrics = metrics.ingest
        self.clock = clock
        # Rebuild the in-memory view from the store (after a transaction rolled back).
        self._reload = reload
        # The warning codes each host was last told about: each is logged once, when it starts.
        self._warned: dict[str, frozenset[str]] = {}

    def ingest(self, token_host: str, report: Report, started: float | None = None) -> IngestResult:
        """Ingest a validated report sent with a token for `token_host`.

        `started` is the perf_counter() reading when the request arrived, so the latency
        histogram covers reading, decoding and validating the body too.
        """
        (outcome,) = self.ingest_many([(token_host, report, started)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def ingest_many(
        self, items: Sequence[tuple[str, Report, float | None]]
    ) -> list[IngestResult | Exception]:
        """Ingest reports of distinct hosts, each `(token_host, report, started)` as for
        ingest(), in one transaction. Each gets its result, or the exception that refused it
        (a Rejection, or the store's error).

        Should the transaction fail, the reports are ingested again one by one, so that a
        report the store cannot take fails alone and the others are stored."""
        outcomes: dict[int, IngestResult | Exception] = {}
        valid: list[tuple[int, Report, float]] = []
        for index, (token_host, report, started) in enumerate(items):
            try:
                self._admit(token_host, report)
            except Rejection as rejection:
                outcomes[index] = rejection
                continue
            valid.append((index, report, time.perf_counter() if started is None else started))
        if valid:
            self.ingest_metrics.batch_size.observe(len(valid))
            try:
                results = self.ingestor.ingest_many(
                    [report for _, report, _ in valid], self.clock()
                )
            except Exception as exc:
                # The transaction rolled back; rebuild the in-memory view so the two agree.
                self.ingest_metrics.failed.inc()
                log.exception(
                    "ingest failed for %s; reloading state",
                    ", ".join(f"host {r.host} seq {r.seq}" for _, r, _ in valid),
                )
                self._reload()
                failure = exc if len(valid) == 1 else None
                for index, report, started in valid:
                    if failure is not None:
                        outcomes[index] = failure
                        continue
                    try:
                        outcomes[index] = self.ingest(report.host, report, started)
                    except Exception as alone:  # noqa: BLE001 - the caller answers for each
                        outcomes[index] = alone
                        if store_unavailable(alone):
                            failure = alone  # the rest would fail the same way
            else:
                for (index, report, started), result in zip(valid, results, strict=True):
                    retired = self.ingestor.retired(report.host)
                    if result.status == "retired" and retired is not None:
                        outcomes[index] = refusal(retired)  # retired at another replica
                        continue
                    outcomes[index] = self._count(report.host, result, started)
        return [outcomes[index] for index in range(len(items))]

    def _admit(self, token_host: str, report: Report) -> None:
        """Refuse a report its token may not send, or one too large to store."""
        if report.host != token_host:
            raise Rejection(
                403, "forbidden", f"this token may report only for host {token_host!r}", "host"
            )
        retired = self.ingestor.surely_retired(report.host)
        if retired is not None:  # a lookup in memory: this runs for every report
            raise refusal(retired)
        if len(report.measurements) > self.config.limits.max_measurements:
            raise Rejection(
                413,
                "too_large",
                f"{len(report.measurements)} measurements; the limit is "
                f"{self.config.limits.max_measurements}",
                "measurements",
            )

    def _count(self, host: str, result: IngestResult, started: float) -> IngestResult:
        """Count an ingested report; return its result with every warning for the agent."""
        if result.status == "accepted" and self.metrics.fleet is not None:
            self.metrics.fleet.refresh(host)  # its /metrics text, while it is at hand
            hidden = self.metrics.fleet.hidden_families(host)
            if hidden:
                names = ", ".join(f"runwatch_{name}" for name in hidden[:5])
                result = replace(
                    result,
                    warnings=(
                        *result.warnings,
                        IngestWarning(
                            "reserved_name",
                            f"not exposed on /metrics: {names}: the name is one of "
                            "the collector's own metric families, or one of their forms (_bucket, "
                            "_count, _sum, _created, _total, _info). Rename the measurement; it is "
                            "still stored and evaluated.",
                        ),
                    ),
                )
        self.ingest_metrics.latency.observe(time.perf_counter() - started)
        if result.status == "duplicate":
            self.ingest_metrics.duplicates.inc()
        else:
            self.ingest_metrics.ingested.inc()
            self.ingest_metrics.measurements.inc(result.measurements)
            self._note_warnings(host, result.warnings)
        return result

    def _note_warnings(self, host: str, warnings: tuple[IngestWarning, ...]) -> None:
        """Count the series the limits refused; log a warning when it starts for the host."""
        codes = frozenset(warning.code for warning in warnings)
        told = self._warned.get(host, frozenset())
        for warning in warnings:
            if warning.dropped:
                self.ingest_metrics.series_refused.labels(host, warning.code).inc(warning.dropped)
            if warning.code not in told:
                log.warning("host %s: %s (%s)", host, warning.message, warning.code)
        if codes != told:
            for code in told - codes:
                log.info("host %s: %s no longer applies", host, code)
            if codes:
                self._warned[host] = codes
            else:
                self._warned.pop(host, None)

    def reject(self, rejection: Rejection) -> None:
        self.ingest_metrics.rejected.labels(rejection.reason).inc()
