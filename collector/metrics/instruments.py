"""The collector's own instruments: ingest, delivery, call and store timings, and the whole
/metrics body put together with the fleet's exposition."""

from __future__ import annotations

from collections.abc import Generator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from collector.config import CollectorConfig
from collector.incidents.manager import CallTimings
from collector.incidents.outbox import DeliveryMetrics
from collector.metrics.exposition import (
    CALL_BUCKETS,
    DELIVERY_RESULTS,
    OUTBOX_OPERATIONS,
    REJECT_REASONS,
    SINK_OPERATIONS,
    STORE_BUCKETS,
    FleetCollector,
    family_names,
    reserved_names,
)
from collector.store.records import StoreTimings


class IngestMetrics:
    """Counters and the latency histogram for the report door."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ingested = Counter("runwatch_reports_ingested", "Reports accepted.", registry=registry)
        self.duplicates = Counter(
            "runwatch_reports_duplicate",
            "Reports dropped as duplicates of one already ingested.",
            registry=registry,
        )
        self.rejected = Counter(
            "runwatch_reports_rejected",
            "Reports refused, by reason.",
            ["reason"],
            registry=registry,
        )
        self.failed = Counter(
            "runwatch_reports_failed",
            "Reports that failed inside the collector (a store or evaluation "
            "error): answered 500 or 503, not ingested; the agent sends them "
            "again.",
            registry=registry,
        )
        self.evaluation_failures = Counter(
            "runwatch_evaluation_failures",
            "Timed evaluation passes that failed and were rolled back.",
            registry=registry,
        )
        self.measurements = Counter(
            "runwatch_measurements_ingested", "Measurements accepted.", registry=registry
        )
        self.series_refused = Counter(
            "runwatch_series_refused",
            "New series dropped from accepted reports, by host and by the limit they were "
            "over (max_series_per_host, max_series; new check names: max_checks_per_host); "
            "the host's known series are kept.",
            ["host", "limit"],
            registry=registry,
        )
        self.latency = Histogram(
            "runwatch_ingest_duration_seconds",
            "Time to read, validate, store and evaluate a report.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.batch_size = Histogram(
            "runwatch_ingest_batch_reports",
            "Reports stored in one transaction. Reports that arrive while the collector is "
            "busy wait together and share one: the busier, the cheaper each report.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )
        self.loop_lag = Histogram(
            "runwatch_event_loop_lag_seconds",
            "How late the collector's event loop ran a timer set every 0.25 s: how long a "
            "report could wait behind other work (a tick, a scrape, a store stall).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)  # present from the start, so rate() works at once


class PrometheusDeliveryMetrics(DeliveryMetrics):
    """Outbox deliveries by sink, operation and result, how long delivery took, sink errors."""

    def __init__(self, registry: CollectorRegistry, sinks: list[str]) -> None:
        self.deliveries = Counter(
            "runwatch_outbox_deliveries",
            "Delivery attempts to help desks, by sink, operation and result (ok, retry, dead).",
            ["sink", "op", "result"],
            registry=registry,
        )
        self.latency = Histogram(
            "runwatch_outbox_delivery_seconds",
            "Time from a call change to its delivery to the help desk.",
            ["sink"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=registry,
        )
        self.errors = Counter(
            "runwatch_sink_errors",
            "Failed requests to a help desk, by sink and operation (an outbox "
            "operation, or `status` for two-way sync).",
            ["sink", "operation"],
            registry=registry,
        )
        # Present from the start for every sink, so a quiet outbox reads 0 and rate() works.
        for sink in sinks:
            for operation in SINK_OPERATIONS:
                self.errors.labels(sink, operation)
            for operation in OUTBOX_OPERATIONS:
                for result in DELIVERY_RESULTS:
                    self.deliveries.labels(sink, operation, result)
            self.latency.labels(sink)

    def delivered(self, sink: str, op: str, result: str, latency: float | None) -> None:
        self.deliveries.labels(sink, op, result).inc()
        if latency is not None:
            self.latency.labels(sink).observe(max(0.0, latency))

    def sink_error(self, sink: str, operation: str) -> None:
        self.errors.labels(sink, operation).inc()


class PrometheusCallTimings(CallTimings):
    """Time to acknowledge and to resolve calls, by owner group."""

    def __init__(self, registry: CollectorRegistry, groups: list[str]) -> None:
        self.acknowledge = Histogram(
            "runwatch_call_acknowledge_seconds",
            "Time from a call's opening to its acknowledgement in the help desk.",
            ["group"],
            buckets=CALL_BUCKETS,
            registry=registry,
        )
        self.resolve = Histogram(
            "runwatch_call_resolve_seconds",
            "Time from a call's opening to its resolution.",
            ["group"],
            buckets=CALL_BUCKETS,
            registry=registry,
        )
        for group in groups:
            self.acknowledge.labels(group)
            self.resolve.labels(group)

    def acknowledged(self, group: str, seconds: float) -> None:
        self.acknowledge.labels(group).observe(max(0.0, seconds))

    def resolved(self, group: str, seconds: float) -> None:
        self.resolve.labels(group).observe(max(0.0, seconds))


class PrometheusStoreTimings(StoreTimings):
    """Store transaction and commit times (thread-safe: both store connections share it)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._transaction = Histogram(
            "runwatch_store_transaction_seconds",
            "Time of a store write transaction, from BEGIN to the end of COMMIT.",
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        self._commit = Histogram(
            "runwatch_store_commit_seconds",
            "Time of a store COMMIT alone.",
            buckets=STORE_BUCKETS,
            registry=registry,
        )

    def transaction(self, seconds: float) -> None:
        self._transaction.observe(seconds)

    def commit(self, seconds: float) -> None:
        self._commit.observe(seconds)


class CollectorMetrics:
    """Every metric of the collector, in a fresh registry (never the global one).

    `registry` holds them all (for tests and tools); `render()` is what /metrics serves: the
    counters and histograms through prometheus_client, the fleet through its fast renderer.
    """

    def __init__(self, config: CollectorConfig) -> None:
        self.own = CollectorRegistry(auto_describe=False)
        # The collector process's CPU, memory and open files: runwatch_process_*.
        ProcessCollector(namespace="runwatch", registry=self.own)
        self.ingest = IngestMetrics(self.own)
        self.delivery = PrometheusDeliveryMetrics(self.own, sorted(config.sinks))
        self.calls = PrometheusCallTimings(self.own, sorted(config.groups))
        self.store = PrometheusStoreTimings(self.own)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.own)
        self.fleet: FleetCollector | None = None
        self._fleet_families: frozenset[str] = frozenset()
        self._families_held: frozenset[str] = frozenset()

    def watch(self, fleet: FleetCollector) -> None:
        """Add the fleet's families, rendered from its state at each scrape."""
        self.fleet = fleet
        self.registry.register(self.fleet)
        # The fleet's own families are fixed by the code: read once, from a render now (while
        # the view is empty, that is a few dozen lines). The registry's are read at each scrape.
        heads: list[str] = []
        self.fleet.render_into(heads)
        self._fleet_families = family_names("".join(heads))
        self._hold_back(generate_latest(self.own).decode())

    def _hold_back(self, own: str) -> None:
        """Keep measurements out of every family the collector exposes itself."""
        assert self.fleet is not None
        families = self._fleet_families | family_names(own)
        if families != self._families_held:
            self._families_held = families
            self.fleet.reserved = reserved_names(families)

    def render(self) -> bytes:
        """The whole /metrics body in the Prometheus text format."""
        steps = self.render_steps()
        try:
            while True:
                next(steps)
        except StopIteration as done:
            body: bytes = done.value
            return body

    def render_steps(self) -> Generator[None, None, bytes]:
        """render(), yielding between steps of the fleet's part (FleetExposition.render_steps)
        so that a scrape of a large fleet lets the event loop go; returns the body."""
        own = generate_latest(self.own).decode()
        if self.fleet is None:
            return own.encode()
        self._hold_back(own)  # a family registered since the last scrape counts at once
        parts = [own]
        yield from self.fleet.render_steps(parts)
        return b"".join(["".join(parts).encode(), *self.fleet.measurement_chunks()])
