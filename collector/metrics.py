"""Prometheus metrics: the fleet's health rendered from in-memory state at scrape time."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from collector.config import CollectorConfig
from collector.fleet import Fleet
from collector.incidents import CallCounters
from collector.maintenance import MaintenanceCalendar
from collector.outbox import DeliveryMetrics
from collector.rules import Severity
from collector.sinks.registry import sink_type
from collector.store import Store
from runwatch import __version__

PREFIX = "runwatch_"


class IngestMetrics:
    """Counters and the latency histogram for the report door."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ingested = Counter("runwatch_reports_ingested", "Reports accepted.",
                                registry=registry)
        self.duplicates = Counter("runwatch_reports_duplicate",
                                  "Reports dropped as duplicates of one already ingested.",
                                  registry=registry)
        self.rejected = Counter("runwatch_reports_rejected", "Reports refused, by reason.",
                                ["reason"], registry=registry)
        self.measurements = Counter("runwatch_measurements_ingested",
                                    "Measurements accepted.", registry=registry)
        self.latency = Histogram(
            "runwatch_ingest_duration_seconds",
            "Time to read, validate, store and evaluate a report.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry)
        for reason in ("unauthorized", "forbidden", "malformed", "invalid", "too_large"):
            self.rejected.labels(reason)  # present from the start, so rate() works at once


class PrometheusDeliveryMetrics(DeliveryMetrics):
    """Outbox deliveries by sink, operation and result, and how long delivery took."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter("runwatch_outbox_deliveries",
                                  "Delivery attempts to help desks, by sink, operation and "
                                  "result (ok, retry, dead).", ["sink", "op", "result"],
                                  registry=registry)
        self.latency = Histogram(
            "runwatch_outbox_delivery_seconds",
            "Time from a call change to its delivery to the help desk.", ["sink"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=registry)

    def delivered(self, sink: str, op: str, result: str, latency: float | None) -> None:
        self.deliveries.labels(sink, op, result).inc()
        if latency is not None:
            self.latency.labels(sink).observe(max(0.0, latency))


class FleetCollector(Collector):
    """Render host and rule states, call counts and measurements without a Python object per
    sample: families are built fresh from the fleet on each scrape."""

    def __init__(self, fleet: Fleet, config: CollectorConfig, counters: CallCounters,
                 store: Store, clock: Callable[[], float] = time.time, *,
                 calendar: MaintenanceCalendar | None = None) -> None:
        self._calendar = calendar
        self._fleet = fleet
        self._config = config
        self._counters = counters
        self._store = store
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from self._hosts()
        yield from self._rules()
        yield from self._calls()
        if self._config.metrics.measurements:
            yield from self._measurements()

    def _hosts(self) -> Iterator[Metric]:
        now = self._clock()
        factor = self._config.staleness.after_intervals
        last = GaugeMetricFamily(f"{PREFIX}host_last_report_timestamp_seconds",
                                 "When the host's last report arrived.", labels=["host"])
        state = GaugeMetricFamily(f"{PREFIX}host_state",
                                  "The host's state: 1 for the current one (worst rule, or STALE).",
                                  labels=["host", "state"])
        failing = GaugeMetricFamily(f"{PREFIX}check_failing",
                                    "1 when the check's last run failed or timed out.",
                                    labels=["host", "check"])
        worst = self._fleet.worst_by_host()
        for name, host in self._fleet.hosts.items():
            last.add_metric([name], host.record.last_report_at)
            stale = self._fleet.is_stale(name, now, factor)
            current = Severity.STALE if stale else worst.get(name, Severity.OK)
            for severity in Severity:
                state.add_metric([name, severity.name], 1.0 if severity is current else 0.0)
            for check, status in host.checks.items():
                failing.add_metric([name, check], 0.0 if status.error is None else 1.0)
        yield last
        yield state
        yield failing
        info = GaugeMetricFamily(f"{PREFIX}build_info", "The running runwatch version.",
                                 labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info

    def _rules(self) -> Iterator[Metric]:
        # One sample per series (not a state set of five): it is the bulk of a large fleet's
        # exposition. `runwatch_rule_severity > 0` selects the problems.
        severity = GaugeMetricFamily(
            f"{PREFIX}rule_severity",
            "A rule's state as a number: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, 4 STALE.",
            labels=["host", "rule", "series"])
        # Flapping and silenced states are few: a sample for each of them only, plus counts
        # that are always there (so an alert can say "none" as 0).
        flapping = GaugeMetricFamily(
            f"{PREFIX}rule_flapping",
            "1 for each rule series that is flapping (its one call stays open until stable).",
            labels=["host", "rule", "series"])
        silenced = GaugeMetricFamily(
            f"{PREFIX}rule_silenced",
            "1 for each rule series whose calls a maintenance window holds back.",
            labels=["host", "rule", "series"])
        flapping_count = silenced_count = 0
        for (rule, host, key), rule_state in self._fleet.states.items():
            series = _series_label(key)
            severity.add_metric([host, rule, series], float(rule_state.severity))
            if rule_state.flapping:
                flapping.add_metric([host, rule, series], 1.0)
                flapping_count += 1
            if rule_state.silenced:
                silenced.add_metric([host, rule, series], 1.0)
                silenced_count += 1
        yield severity
        yield flapping
        yield silenced
        yield GaugeMetricFamily(f"{PREFIX}rules_flapping",
                                "Rule series that are flapping now.", value=flapping_count)
        yield GaugeMetricFamily(f"{PREFIX}rules_silenced",
                                "Rule series held back by a maintenance window now.",
                                value=silenced_count)
        if self._calendar is not None:
            yield GaugeMetricFamily(f"{PREFIX}maintenance_windows_active",
                                    "Silences and weekly maintenance windows in force now.",
                                    value=len(self._calendar.active(self._clock())))

    def _calls(self) -> Iterator[Metric]:
        names = {
            "opened": "Calls opened.",
            "reopened": "Resolved calls reopened because the problem came back in the window.",
            "updated": "Calls updated (severity change, comment).",
            "resolved": "Calls resolved after recovery.",
            "suppressed": "Problems held back by storm control and listed on an umbrella call.",
        }
        groups = sorted(self._config.groups)
        for kind, text in names.items():
            family = CounterMetricFamily(f"{PREFIX}calls_{kind}", text, labels=["group"])
            counts: dict[str, int] = getattr(self._counters, kind)
            for group in groups:
                family.add_metric([group], float(counts.get(group, 0)))
            yield family
        open_now = GaugeMetricFamily(f"{PREFIX}calls_open", "Calls open now, by owner group.",
                                     labels=["group"])
        counts = self._store.open_calls_by_group()
        for group in sorted(set(groups) | set(counts)):
            open_now.add_metric([group], float(counts.get(group, 0)))
        yield open_now
        pending = GaugeMetricFamily(f"{PREFIX}outbox_pending",
                                    "Call operations waiting for delivery to a help desk.",
                                    labels=["sink"])
        dead = GaugeMetricFamily(f"{PREFIX}outbox_dead_letters",
                                 "Call operations a help desk refused; see runwatch calls --dead.",
                                 labels=["sink"])
        outbox = self._store.outbox_counts()
        external = sorted(name for name, sink in self._config.sinks.items()
                          if sink_type(sink) != "builtin")
        for sink in external:
            pending.add_metric([sink], float(outbox.get((sink, "pending"), 0)))
            dead.add_metric([sink], float(outbox.get((sink, "dead"), 0)))
        yield pending
        yield dead

    def _measurements(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        reserved = _RESERVED_NAMES
        for (host, name, _), series in self._fleet.series.items():
            metric = PREFIX + name
            if metric in reserved:
                continue
            family = families.get(metric)
            if family is None:
                family = families[metric] = GaugeMetricFamily(
                    metric, f"Measurement {name} as reported by agents.", labels=[])
            labels = {"host": host, "check": series.check, **series.labels}
            family.samples.append(Sample(metric, labels, series.value, None, None))
        yield from families.values()


_RESERVED_NAMES = frozenset({
    f"{PREFIX}host_last_report_timestamp_seconds", f"{PREFIX}host_state",
    f"{PREFIX}check_failing", f"{PREFIX}build_info", f"{PREFIX}rule_severity",
    f"{PREFIX}rule_flapping", f"{PREFIX}rule_silenced", f"{PREFIX}rules_flapping",
    f"{PREFIX}rules_silenced", f"{PREFIX}maintenance_windows_active",
    f"{PREFIX}calls_open",
} | {f"{PREFIX}calls_{k}" for k in ("opened", "reopened", "updated", "resolved", "suppressed")}
  | {f"{PREFIX}reports_ingested", f"{PREFIX}reports_duplicate", f"{PREFIX}reports_rejected",
     f"{PREFIX}measurements_ingested", f"{PREFIX}ingest_duration_seconds",
     f"{PREFIX}outbox_pending", f"{PREFIX}outbox_dead_letters", f"{PREFIX}outbox_deliveries",
     f"{PREFIX}outbox_delivery_seconds"})


@functools.lru_cache(maxsize=65536)
def _series_label(key: str) -> str:
    """Render a labels key (`{"mountpoint":"/"}`) as `mountpoint=/` for a label value."""
    labels = json.loads(key)
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def build_registry(fleet: Fleet, config: CollectorConfig, counters: CallCounters,
                   store: Store, clock: Callable[[], float] = time.time, *,
                   calendar: MaintenanceCalendar | None = None
                   ) -> tuple[CollectorRegistry, IngestMetrics, PrometheusDeliveryMetrics]:
    """A fresh registry (never the global one) with the fleet collector and ingest metrics."""
    registry = CollectorRegistry(auto_describe=False)
    ingest = IngestMetrics(registry)
    delivery = PrometheusDeliveryMetrics(registry)
    registry.register(FleetCollector(fleet, config, counters, store, clock,
                                     calendar=calendar))
    return registry, ingest, delivery
