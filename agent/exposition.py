"""An optional local /metrics on the agent, for direct Prometheus scraping (off by default).

Where the agent measures what node_exporter measures, it uses node_exporter's name and labels,
so existing dashboards and alerts work; everything else is `runwatch_<name>`. Rates stay rates
(node_exporter's counters have no equivalent here).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from checks.schema import Measurement

# runwatch measurement -> node_exporter name. The labels need no renaming: the filesystem
# check's mountpoint, device and fstype are node_exporter's label names too.
NODE_EXPORTER_NAMES: dict[str, str] = {
    "load1": "node_load1",
    "load5": "node_load5",
    "load15": "node_load15",
    "memory_total_bytes": "node_memory_MemTotal_bytes",
    "memory_available_bytes": "node_memory_MemAvailable_bytes",
    "swap_total_bytes": "node_memory_SwapTotal_bytes",
    "fs_size_bytes": "node_filesystem_size_bytes",
    "fs_free_bytes": "node_filesystem_avail_bytes",
    "fs_inodes": "node_filesystem_files",
    "fs_inodes_free": "node_filesystem_files_free",
    "boot_time_seconds": "node_boot_time_seconds",
    "processes": "node_procs_total",
}


class LatestMeasurements:
    """The latest value of every series the agent reported, for the local /metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, tuple[tuple[str, str], ...]], Measurement] = {}

    def update(self, measurements: Iterable[Measurement]) -> None:
        with self._lock:
            for m in measurements:
                self._latest[(m.name, tuple(sorted(m.labels.items())))] = m

    def snapshot(self) -> list[Measurement]:
        with self._lock:
            return list(self._latest.values())


class AgentCollector:
    """A prometheus_client collector over the latest measurements."""

    def __init__(self, latest: LatestMeasurements, host: str) -> None:
        self._latest = latest
        self._host = host

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily
        from prometheus_client.samples import Sample

        families: dict[str, GaugeMetricFamily] = {}
        for m in self._latest.snapshot():
            name = NODE_EXPORTER_NAMES.get(m.name, f"runwatch_{m.name}")
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(
                    name, f"{m.name} as measured by the runwatch agent ({m.unit or 'count'})."
                )
            labels = dict(m.labels)
            if not name.startswith("node_"):
                labels["check"] = m.check
            family.samples.append(Sample(name, labels, m.value, None, None))
        yield from families.values()


def serve_metrics(latest: LatestMeasurements, host: str, listen: str) -> Any:
    """Start the /metrics server in a daemon thread; return the server (for shutdown)."""
    # Imported here: an agent without a local /metrics never loads prometheus_client.
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(latest, host))
    address, _, port = listen.rpartition(":")
    server, _thread = start_http_server(
        int(port), addr=address.strip("[]") or "127.0.0.1", registry=registry
    )
    return server
