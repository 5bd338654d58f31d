#!/usr/bin/env python3
"""Benchmark the collector's ingest: reports/s, client-side latency and the collector's own view.

Starts the real collector (`runwatch collector --config F`) on loopback with the shipped groups
and rules, then several client processes POST reports of 50 realistic measurements over
keep-alive connections until `--reports` are sent or `--seconds` pass. Run from the repo root:

    python bench/ingest.py [--reports 20000] [--seconds 60] [--hosts 20] [--clients 2]
                               [--connections 1] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing
import os
import queue
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench.common is imported from the repository; bench/ itself is on sys.path when this runs
# as a script, and is not when another script loads this file by path.
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.append(_REPO)
from bench.common import (  # noqa: E402
    apply_setting,
    log,
    positive_float,
    positive_int,
    run_and_show,
    show,  # noqa: F401 (metrics.py imports it from here, as it does log)
)

MEASUREMENTS_PER_REPORT = 50
REQUEST_TIMEOUT_SECONDS = 10.0
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
REPORT_INTERVAL_SECONDS = 60.0  # what the simulated agents claim; keeps hosts from going STALE

# A rule with `for: 0s` on top of the shipped ones (whose `for` is 5m or more, longer than a
# run): without it no call would open during the benchmark and the call path would go untested.
INSTANT_RULE = {
    "name": "bench_var_full_now",
    "metric": "fs_used_ratio",
    "match": {"mountpoint": "/var"},
    "warning": 0.85,
    "critical": 0.95,
    "clear": 0.80,
    "for": "0s",
    "owner": "systems-administration",
    "description": "Benchmark rule: /var past 85%, with no `for` delay, so calls open at once.",
}


# -- the collector under test ------------------------------------------------------------------


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shipped_config_path(name: str) -> Path:
    """Path of a shipped file by its path in config/ (collector.yaml, rules)."""
    from runwatch.shipped import shipped_file

    return shipped_file(name)


def runwatch_command() -> str:
    """The `runwatch` console script next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("runwatch")
    if beside.exists():
        return str(beside)
    found = shutil.which("runwatch")
    if found is None:
        raise SystemExit("bench: `runwatch` not found; put the virtualenv's bin/ first on PATH")
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from VmRSS in /proc/PID/status."""
    return _status_field_bytes(pid, "VmRSS")


def peak_rss_bytes(pid: int) -> int:
    """Peak resident set size of a process, from VmHWM in /proc/PID/status."""
    return _status_field_bytes(pid, "VmHWM")


def _status_field_bytes(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {name} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the command name: field 3 is state, so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET a path from 127.0.0.1:PORT; return the status and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """Stop a process we started, by its PID: SIGTERM, wait, and SIGKILL if it will not go."""
    if process.poll() is not None:
        return process.returncode
    os.kill(process.pid, signal.SIGTERM)
    try:
        return process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        return process.wait(5)


@dataclass
class CollectorProcess:
    """A real `runwatch collector` subprocess on loopback, with its temp config and data dir."""

    workdir: Path
    port: int
    config_path: Path
    tokens_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the collector and wait until /healthz answers."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    runwatch_command(),
                    "--log-level",
                    "warning",
                    "collector",
                    "--config",
                    str(self.config_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"collector exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                status, _ = http_get(self.port, "/healthz", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"collector not healthy after {STARTUP_TIMEOUT_SECONDS:g}s:\n{self.log_tail()}"
        )

    def stop(self) -> int | None:
        """Stop the collector by its PID: SIGTERM, wait, and SIGKILL if it will not go."""
        return None if self.process is None else stop_process(self.process)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_problems(self) -> list[str]:
        """Lines of the collector's log at WARNING or above, and traceback headers."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        marks = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback")
        return [line for line in text.splitlines() if any(mark in line for mark in marks)]


def prepare_collector(workdir: Path, instant_rule: bool = True) -> CollectorProcess:
    """Write a collector config (shipped groups and rules, temp data dir, a free port)."""
    import yaml

    shipped = yaml.safe_load(shipped_config_path("collector.yaml").read_text())
    port = free_port()
    data_dir = workdir / "data"
    tokens_path = data_dir / "agents.tokens"
    config = dict(shipped)
    config["listen"] = f"127.0.0.1:{port}"
    config["data_dir"] = str(data_dir)
    config["agents"] = {"tokens_file": str(tokens_path)}
    config["rule_files"] = [str(shipped_config_path("rules") / "*.yaml")]
    config["rules"] = [INSTANT_RULE] if instant_rule else []
    # A few simulated hosts send thousands of reports each, as fast as they can: the rate
    # limit per token (2 a second after a burst of 600) would measure itself, not ingest.
    config["limits"] = {"agent_requests_per_second": 0}
    config_path = workdir / "collector.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return CollectorProcess(workdir, port, config_path, tokens_path, workdir / "collector.log")


# The collector's own families; the rest of /metrics (megabytes for a large fleet) is skipped.
OWN_METRIC_PREFIXES = (
    "runwatch_ingest_",
    "runwatch_event_loop_",
    "runwatch_reports_",
    "runwatch_measurements_ingested",
    "runwatch_calls_",
)


def parse_own_metrics(body: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Parse the collector's own families from a /metrics body: {sample: [(labels, value)]}."""
    from prometheus_client.parser import text_string_to_metric_families

    def own(line: str) -> bool:
        name = line.split(" ", 3)[2] if line.startswith("# ") and line.count(" ") >= 2 else line
        return name.startswith(OWN_METRIC_PREFIXES)

    text = "\n".join(line for line in body.decode().splitlines() if own(line))
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text + "\n"):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def metric_sum(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(value for _, value in samples.get(name, []))


def histogram_summary(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str
) -> dict[str, float | None]:
    """Count, sum, mean and bucket-bound p50/p90/p99 (seconds) of a Prometheus histogram."""
    count = metric_sum(samples, f"{name}_count")
    total = metric_sum(samples, f"{name}_sum")
    buckets = sorted(
        (float(labels["le"]), value) for labels, value in samples.get(f"{name}_bucket", [])
    )
    summary: dict[str, float | None] = {
        "count": count,
        "sum_seconds": total,
        "mean_seconds": total / count if count else None,
    }
    for label, q in (("p50_le_seconds", 0.50), ("p90_le_seconds", 0.90), ("p99_le_seconds", 0.99)):
        # The upper bound of the first bucket holding the quantile: "at most this long".
        summary[label] = next(
            (bound for bound, cumulative in buckets if count and cumulative >= q * count), None
        )
    return summary


# -- simulated agents --------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesSpec:
    """One measured series of a simulated host: what it is and how its value is drawn."""

    check: str
    name: str
    unit: str
    labels: dict[str, str]
    low: float
    high: float
    spike: float | None = None  # a value past the rule thresholds, drawn now and then


def host_series() -> list[SeriesSpec]:
    """The 50 series a typical host reports, modelled on the shipped system checks."""
    gib = 1024**3
    specs = [SeriesSpec("cpu", "cpu_utilization_ratio", "ratio", {}, 0.02, 0.6, 0.97)]
    specs += [
        SeriesSpec("cpu", "cpu_mode_ratio", "ratio", {"mode": mode}, 0.0, 0.3)
        for mode in ("user", "system", "iowait", "idle", "nice", "irq", "softirq", "steal")
    ]
    specs += [
        SeriesSpec("load", name, "", {}, 0.0, 1.5, 4.5 if "per_core" in name else None)
        for name in (
            "load1",
            "load5",
            "load15",
            "load1_per_core",
            "load5_per_core",
            "load15_per_core",
        )
    ]
    specs += [
        SeriesSpec("memory", "memory_total_bytes", "bytes", {}, 16 * gib, 16 * gib),
        SeriesSpec("memory", "memory_available_bytes", "bytes", {}, 1 * gib, 12 * gib),
        SeriesSpec("memory", "memory_used_bytes", "bytes", {}, 2 * gib, 14 * gib),
        SeriesSpec("memory", "swap_total_bytes", "bytes", {}, 2 * gib, 2 * gib),
        SeriesSpec("memory", "swap_used_bytes", "bytes", {}, 0, 0.5 * gib),
        SeriesSpec("memory", "memory_used_ratio", "ratio", {}, 0.3, 0.85, 0.95),
        SeriesSpec("memory", "swap_used_ratio", "ratio", {}, 0.0, 0.3, 0.6),
    ]
    for mountpoint, device in (
        ("/", "/dev/sda1"),
        ("/var", "/dev/sda2"),
        ("/home", "/dev/sdb1"),
        ("/srv", "/dev/sdc1"),
    ):
        labels = {"mountpoint": mountpoint, "device": device, "fstype": "ext4"}
        # /var hovers around the thresholds so rules move between OK, WARNING and CRITICAL.
        used = (0.78, 0.9, 0.97) if mountpoint == "/var" else (0.2, 0.7, 0.9)
        specs += [
            SeriesSpec("filesystem", "fs_used_ratio", "ratio", labels, *used),
            SeriesSpec("filesystem", "fs_free_bytes", "bytes", labels, 5 * gib, 200 * gib),
            SeriesSpec("filesystem", "fs_inodes_used_ratio", "ratio", labels, 0.01, 0.4),
        ]
    for labels in ({"device": "sda"}, {"device": "sdb"}):
        specs += [
            SeriesSpec("diskio", "disk_read_bytes_per_second", "bytes/s", labels, 0, 5e7),
            SeriesSpec("diskio", "disk_written_bytes_per_second", "bytes/s", labels, 0, 5e7),
            SeriesSpec("diskio", "disk_busy_ratio", "ratio", labels, 0.0, 0.5, 0.95),
        ]
    for labels in ({"interface": "eth0"}, {"interface": "eth1"}):
        specs += [
            SeriesSpec("network", "net_received_bytes_per_second", "bytes/s", labels, 0, 1e8),
            SeriesSpec("network", "net_sent_bytes_per_second", "bytes/s", labels, 0, 1e8),
            SeriesSpec("network", "net_receive_errors_per_second", "1/s", labels, 0, 0.05, 12),
            SeriesSpec("network", "net_transmit_errors_per_second", "1/s", labels, 0, 0.05),
        ]
    specs += [
        SeriesSpec("processes", "processes", "", {}, 150, 400),
        SeriesSpec("uptime", "uptime_seconds", "seconds", {}, 1e5, 1e7),
    ]
    assert len(specs) == MEASUREMENTS_PER_REPORT, len(specs)
    return specs


CHECK_TYPES = ("cpu", "load", "memory", "filesystem", "diskio", "network", "processes", "uptime")
SPIKE_PROBABILITY = 0.05  # a series with a spike value draws it this often
CHECK_ERROR_PROBABILITY = 0.01  # a report carries a failed diskio check this often (UNKNOWN)


class ReportFactory:
    """Build successive reports for one simulated host, with seq increasing from 1."""

    def __init__(
        self,
        host: str,
        specs: list[SeriesSpec],
        rng: random.Random,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.labels = labels or {}  # the agent's labels (role, site), sent with each report
        self.boot_id = uuid.uuid4().hex
        self.seq = 0
        self.last_measurements = 0  # how many the last body carried
        self._specs = specs
        self._rng = rng

    def next_body(self, now: float | None = None) -> bytes:
        """Encode the next report as JSON (msgspec, as the agent does), taken `now` (default:
        the time now; bench/history.py runs simulated time)."""
        from checks.schema import SCHEMA_VERSION, CheckError, CheckRun, Measurement, Report, encode

        self.seq += 1
        now = time.time() if now is None else now
        rng = self._rng
        failed = "diskio" if rng.random() < CHECK_ERROR_PROBABILITY else None
        measurements = []
        for spec in self._specs:
            if spec.check == failed:
                continue
            if spec.spike is not None and rng.random() < SPIKE_PROBABILITY:
                value = spec.spike
            else:
                value = rng.uniform(spec.low, spec.high)
            measurements.append(
                Measurement(
                    check=spec.check,
                    name=spec.name,
                    value=value,
                    unit=spec.unit,
                    labels=spec.labels,
                    timestamp=now,
                )
            )
        checks = [
            CheckRun(
                check=kind,
                type=kind,
                interval_seconds=REPORT_INTERVAL_SECONDS,
                started_at=now - 0.01,
                duration_seconds=0.002,
                error=CheckError(kind="error", message="bench: simulated failure")
                if kind == failed
                else None,
            )
            for kind in CHECK_TYPES
        ]
        self.last_measurements = len(measurements)
        report = Report(
            schema_version=SCHEMA_VERSION,
            host=self.host,
            agent_version="bench",
            boot_id=self.boot_id,
            seq=self.seq,
            sent_at=now,
            interval_seconds=REPORT_INTERVAL_SECONDS,
            measurements=measurements,
            checks=checks,
            labels=self.labels,
        )
        return encode(report)


@dataclass
class ClientResult:
    """What one client process measured."""

    latencies_seconds: list[float] = field(default_factory=list)
    accepted: int = 0
    measurements_accepted: int = 0
    duplicates: int = 0
    errors: int = 0
    first_error: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0


@dataclass(frozen=True)
class ClientPlan:
    """What one client process sends: its hosts (name, token), how many reports, how long."""

    port: int
    hosts: list[tuple[str, str]]
    quota: int
    seconds: float
    connections: int
    seed: int


def run_client(plan: ClientPlan, start: Any, results: Any) -> None:
    """Send the plan's reports over `plan.connections` keep-alive connections, one per thread."""
    import threading

    connections = max(1, min(plan.connections, len(plan.hosts)))
    parts: list[ClientResult] = [ClientResult() for _ in range(connections)]
    start.wait()
    deadline = time.monotonic() + plan.seconds
    threads = [
        threading.Thread(
            target=send_reports,
            args=(
                plan.port,
                plan.hosts[i::connections],
                plan.quota // connections + (1 if i < plan.quota % connections else 0),
                deadline,
            ),
            kwargs={"rng": random.Random(plan.seed * 1000 + i), "result": parts[i]},
            daemon=True,
        )
        for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    merged = ClientResult(
        latencies_seconds=[x for part in parts for x in part.latencies_seconds],
        accepted=sum(part.accepted for part in parts),
        measurements_accepted=sum(part.measurements_accepted for part in parts),
        duplicates=sum(part.duplicates for part in parts),
        errors=sum(part.errors for part in parts),
        first_error=next((part.first_error for part in parts if part.first_error), ""),
        started_at=min(part.started_at for part in parts),
        finished_at=max(part.finished_at for part in parts),
    )
    results.put(merged)


def send_reports(
    port: int,
    hosts: list[tuple[str, str]],
    quota: int,
    deadline: float,
    *,
    rng: random.Random,
    result: ClientResult,
) -> None:
    """Send up to `quota` reports round-robin for `hosts` on one keep-alive connection."""
    specs = host_series()
    factories = [(ReportFactory(host, specs, rng), token) for host, token in hosts]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)
    result.started_at = time.time()
    sent = 0
    try:
        while sent < quota and time.monotonic() < deadline:
            factory, token = factories[sent % len(factories)]
            body = factory.next_body()
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            began = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/reports", body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                status, answer = 0, f"{type(exc).__name__}: {exc}".encode()
                conn.close()  # reconnects on the next request
            result.latencies_seconds.append(time.perf_counter() - began)
            sent += 1
            if status == 202:
                result.accepted += 1
                result.measurements_accepted += factory.last_measurements
            elif status == 200:
                result.duplicates += 1
            else:
                result.errors += 1
                if not result.first_error:
                    result.first_error = (
                        f"{factory.host} seq {factory.seq}: HTTP {status}: "
                        f"{answer[:500].decode(errors='replace')}"
                    )
    finally:
        conn.close()
        result.finished_at = time.time()


# -- the run ---------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def configure(collector: CollectorProcess, settings: list[str]) -> None:
    """Apply --set KEY.PATH=VALUE settings to the collector's config file."""
    if not settings:
        return
    import yaml

    config = yaml.safe_load(collector.config_path.read_text())
    for setting in settings:
        apply_setting(config, setting)
    collector.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Start the collector, drive it with client processes, and gather the figures."""
    from collector.auth import add_token

    clients = max(1, min(args.clients, args.hosts))
    connections = sum(
        min(args.connections, len(range(i, args.hosts, clients))) for i in range(clients)
    )
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-ingest-") as tmp:
        collector = prepare_collector(Path(tmp), instant_rule=not args.no_instant_rule)
        configure(collector, args.set)
        hosts = [f"bench-host-{i:04d}" for i in range(1, args.hosts + 1)]
        tokens = {host: add_token(collector.tokens_path, host) for host in hosts}
        try:
            collector.start()
            log(
                f"collector pid {collector.pid} on {collector.url}; {args.hosts} hosts, "
                f"{clients} client processes with {connections} connections in all, up to "
                f"{args.reports} reports or "
                f"{args.seconds:g}s"
            )
            rss_idle = rss_bytes(collector.pid)
            cpu_before = cpu_seconds(collector.pid)
            context = multiprocessing.get_context("fork")
            start = context.Event()
            result_queue = context.Queue()
            quotas = [
                args.reports // clients + (1 if i < args.reports % clients else 0)
                for i in range(clients)
            ]
            workers = [
                context.Process(
                    target=run_client,
                    name=f"bench-client-{i}",
                    args=(
                        ClientPlan(
                            collector.port,
                            [(h, tokens[h]) for h in hosts[i::clients]],
                            quotas[i],
                            args.seconds,
                            args.connections,
                            args.seed + i,
                        ),
                        start,
                        result_queue,
                    ),
                )
                for i in range(clients)
            ]
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            for worker in workers:
                worker.start()
            start.set()
            results = collect_results(workers, result_queue, args.seconds)
            for worker in workers:
                worker.join(5)
                if worker.is_alive() and worker.pid is not None:
                    os.kill(worker.pid, signal.SIGKILL)
                    worker.join(5)
            # The collector is not reaped yet, so this counts the client processes only.
            children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            client_cpu = (
                children_after.ru_utime
                + children_after.ru_stime
                - children_before.ru_utime
                - children_before.ru_stime
            )
            cpu_after = cpu_seconds(collector.pid)
            # What the collector spends with nothing sent (ticks, timers), to take out of the
            # per-report figure: on a busy machine a run takes longer, and that cost grows.
            idle_cpu_per_second = None
            if args.idle_seconds:
                time.sleep(args.idle_seconds)
                idle_cpu_per_second = (cpu_seconds(collector.pid) - cpu_after) / args.idle_seconds
            # The read side runs on the same event loop as ingest: time it once, loaded.
            began = time.perf_counter()
            status, metrics_body = http_get(collector.port, "/metrics", timeout=60)
            metrics_seconds = time.perf_counter() - began
            if status != 200:
                raise RuntimeError(f"GET /metrics: HTTP {status}: {metrics_body[:300]!r}")
            samples = parse_own_metrics(metrics_body)
            began = time.perf_counter()
            status, hosts_body = http_get(collector.port, "/api/v1/hosts", timeout=30)
            hosts_seconds = time.perf_counter() - began
            hosts_seen = len(json.loads(hosts_body)) if status == 200 else None
            rss_end = rss_bytes(collector.pid)
            rss_peak = peak_rss_bytes(collector.pid)
            problems = collector.log_problems()
        finally:
            exit_code = collector.stop()
    return summarize(
        args,
        clients,
        results,
        samples,
        {
            "connections": connections,
            "collector_pid": collector.pid,
            "collector_exit_code": exit_code,
            "collector_cpu_seconds": round(cpu_after - cpu_before, 3),
            "collector_idle_cpu_per_second": idle_cpu_per_second,
            "client_cpu_seconds": round(client_cpu, 3),
            "collector_rss_idle_bytes": rss_idle,
            "collector_rss_end_bytes": rss_end,
            "collector_rss_peak_bytes": rss_peak,
            "collector_log_problem_lines": len(problems),
            "collector_log_first_problem": problems[0] if problems else "",
            "hosts_seen": hosts_seen,
            "get_metrics_ms": ms(metrics_seconds),
            "get_metrics_bytes": len(metrics_body),
            "get_hosts_ms": ms(hosts_seconds),
            "get_hosts_bytes": len(hosts_body),
        },
    )


def collect_results(workers: list[Any], result_queue: Any, seconds: float) -> list[ClientResult]:
    """Take each client's result; give up on clients that died or hung well past the end."""
    results: list[ClientResult] = []
    give_up_at = time.monotonic() + seconds + REQUEST_TIMEOUT_SECONDS + 30
    while len(results) < len(workers) and time.monotonic() < give_up_at:
        try:
            results.append(result_queue.get(timeout=1.0))
        except queue.Empty:
            if not any(worker.is_alive() for worker in workers):
                break
    if len(results) < len(workers):
        log(f"bench: only {len(results)} of {len(workers)} client processes reported back")
    return results


def summarize(
    args: argparse.Namespace,
    clients: int,
    results: list[ClientResult],
    samples: dict[str, list[tuple[dict[str, str], float]]],
    collector: dict[str, Any],
) -> dict[str, Any]:
    """Turn the clients' results and the collector's metrics into one figures dict."""
    latencies = sorted(x for r in results for x in r.latencies_seconds)
    accepted = sum(r.accepted for r in results)
    measurements = sum(r.measurements_accepted for r in results)
    duplicates = sum(r.duplicates for r in results)
    errors = sum(r.errors for r in results)
    first_error = next((r.first_error for r in results if r.first_error), "")
    elapsed = max((r.finished_at for r in results), default=0.0) - min(
        (r.started_at for r in results), default=0.0
    )
    ok = accepted + duplicates
    ingest = histogram_summary(samples, "runwatch_ingest_duration_seconds")
    return {
        "hosts": args.hosts,
        "clients": clients,
        "client_processes_finished": len(results),
        "measurements_per_report": MEASUREMENTS_PER_REPORT,
        "elapsed_seconds": round(elapsed, 3),
        "requests": len(latencies),
        "reports_accepted": accepted,
        "reports_duplicate": duplicates,
        "measurements_accepted": measurements,
        "errors": errors,
        "first_error": first_error,
        "reports_per_second": round(ok / elapsed, 1) if elapsed > 0 else None,
        "measurements_per_second": (round(measurements / elapsed, 1) if elapsed > 0 else None),
        "latency_ms": {
            "p50": ms(percentile(latencies, 0.50)),
            "p90": ms(percentile(latencies, 0.90)),
            "p99": ms(percentile(latencies, 0.99)),
            "max": ms(latencies[-1] if latencies else None),
            "mean": ms(sum(latencies) / len(latencies) if latencies else None),
        },
        "collector_ingest_duration": {
            "count": ingest["count"],
            "sum_seconds": round(ingest["sum_seconds"] or 0.0, 3),
            "mean_ms": ms(ingest["mean_seconds"]),
            "p50_le_ms": ms(ingest["p50_le_seconds"]),
            "p90_le_ms": ms(ingest["p90_le_seconds"]),
            "p99_le_ms": ms(ingest["p99_le_seconds"]),
        },
        "collector_metrics": {
            "reports_ingested": metric_sum(samples, "runwatch_reports_ingested_total"),
            "reports_duplicate": metric_sum(samples, "runwatch_reports_duplicate_total"),
            "reports_rejected": metric_sum(samples, "runwatch_reports_rejected_total"),
            "measurements_ingested": metric_sum(samples, "runwatch_measurements_ingested_total"),
            "calls_opened": metric_sum(samples, "runwatch_calls_opened_total"),
            "calls_updated": metric_sum(samples, "runwatch_calls_updated_total"),
            "calls_resolved": metric_sum(samples, "runwatch_calls_resolved_total"),
            "calls_reopened": metric_sum(samples, "runwatch_calls_reopened_total"),
            "calls_open": metric_sum(samples, "runwatch_calls_open"),
        },
        **collector,
    }


def print_figures(figures: dict[str, Any]) -> None:
    """Print the figures as a readable block."""
    latency = figures["latency_ms"]
    ingest = figures["collector_ingest_duration"]
    metrics = figures["collector_metrics"]
    mib = 1024 * 1024

    def num(value: float | None, spec: str = ".2f") -> str:
        return "n/a" if value is None else format(value, spec)

    print("runwatch collector ingest benchmark")
    print(
        f"  setup              {figures['hosts']} hosts, {figures['clients']} client "
        f"processes, {figures['connections']} keep-alive connections in all, "
        f"{figures['measurements_per_report']} measurements/report"
    )
    print(
        f"  elapsed            {figures['elapsed_seconds']:.2f} s, {figures['requests']} "
        f"requests ({figures['reports_accepted']} accepted, {figures['reports_duplicate']} "
        "duplicate)"
    )
    print(
        f"  throughput         {num(figures['reports_per_second'], '.1f')} reports/s, "
        f"{num(figures['measurements_per_second'], '.0f')} measurements/s"
    )
    print(
        f"  latency (client)   p50 {num(latency['p50'])} ms  p90 {num(latency['p90'])} ms  "
        f"p99 {num(latency['p99'])} ms  max {num(latency['max'])} ms  "
        f"mean {num(latency['mean'])} ms"
    )
    print(f"  errors             {figures['errors']}")
    if figures["first_error"]:
        print(f"  first error        {figures['first_error']}")
    print(
        f"  collector ingest   runwatch_ingest_duration_seconds: count {ingest['count']:.0f}, "
        f"sum {ingest['sum_seconds']:.3f} s, mean {num(ingest['mean_ms'], '.3f')} ms "
        f"(buckets: p50 <= {num(ingest['p50_le_ms'], 'g')} ms, p90 <= "
        f"{num(ingest['p90_le_ms'], 'g')} ms, p99 <= {num(ingest['p99_le_ms'], 'g')} ms)"
    )
    print(
        f"  collector counters ingested {metrics['reports_ingested']:.0f}, duplicate "
        f"{metrics['reports_duplicate']:.0f}, rejected {metrics['reports_rejected']:.0f}, "
        f"measurements {metrics['measurements_ingested']:.0f}"
    )
    print(
        f"  calls              opened {metrics['calls_opened']:.0f}, updated "
        f"{metrics['calls_updated']:.0f}, resolved {metrics['calls_resolved']:.0f}, "
        f"reopened {metrics['calls_reopened']:.0f}, open now {metrics['calls_open']:.0f}"
    )
    requests = figures["requests"] or 1
    print(
        f"  CPU                collector {figures['collector_cpu_seconds']:.2f} s "
        f"({figures['collector_cpu_seconds'] * 1000 / requests:.2f} ms/report), clients "
        f"{figures['client_cpu_seconds']:.2f} s, over {figures['elapsed_seconds']:.2f} s"
    )
    idle = figures.get("collector_idle_cpu_per_second")
    if idle is not None:
        net = figures["collector_cpu_seconds"] - idle * figures["elapsed_seconds"]
        print(
            f"  CPU per report     {net * 1000 / requests:.2f} ms without the idle collector's "
            f"{idle * 1000:.1f} ms a second (ticks, timers)"
        )
    print(
        f"  collector RSS      {figures['collector_rss_end_bytes'] / mib:.1f} MiB at the end "
        f"(idle {figures['collector_rss_idle_bytes'] / mib:.1f} MiB, peak "
        f"{figures['collector_rss_peak_bytes'] / mib:.1f} MiB)"
    )
    print(
        f"  collector log      {figures['collector_log_problem_lines']} warning/error lines"
        + (
            f"; first: {figures['collector_log_first_problem']}"
            if figures["collector_log_first_problem"]
            else ""
        )
    )
    print(
        f"  read side          GET /metrics {figures['get_metrics_ms']:.1f} ms "
        f"({figures['get_metrics_bytes'] / 1024:.0f} KiB), GET "
        f"/api/v1/hosts {figures['get_hosts_ms']:.1f} ms ({figures['hosts_seen']} hosts, "
        f"{figures['get_hosts_bytes'] / 1024:.0f} KiB)"
    )
    print(f"  collector exit     {describe_exit(figures['collector_exit_code'])} after SIGTERM")


def describe_exit(code: int | None) -> str:
    """Say how a process ended: an exit status, or the signal that ended it."""
    if code is None:
        return "unknown"
    if code < 0:
        return f"ended by signal {signal.Signals(-code).name} (returncode {code})"
    return f"exit status {code}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark the collector's report ingest on loopback: start a real "
        "collector, send reports of 50 measurements from several client processes "
        "over keep-alive connections, and print throughput, latency, the "
        "collector's own ingest histogram and its RSS."
    )
    parser.add_argument(
        "--reports",
        type=positive_int,
        default=20_000,
        help="stop after this many reports in total (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=positive_float,
        default=60.0,
        help="or after this many seconds, whichever comes first (default: %(default)s)",
    )
    parser.add_argument(
        "--hosts",
        type=positive_int,
        default=20,
        help="simulated hosts, each with its own token (default: %(default)s)",
    )
    parser.add_argument(
        "--clients",
        type=positive_int,
        default=2,
        help="client processes (default: %(default)s)",
    )
    parser.add_argument(
        "--connections",
        type=positive_int,
        default=1,
        help="keep-alive connections per client process, one thread each; every host is "
        "sent by one connection only, so seq stays in order (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--no-instant-rule",
        action="store_true",
        help="use only the shipped rules (their `for` of 5m+ means no call opens during a run)",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=0.0,
        help="afterwards, measure the collector's CPU with nothing sent for this long, and "
        "give the CPU per report without it (default: %(default)s, not measured)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="set a collector config key (VALUE as YAML), e.g. server.http=h11; repeatable",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    return parser


def main() -> int:
    args = build_parser().parse_args()
    figures = run_and_show(run_bench, args, print_figures)
    return 0 if figures is not None and figures["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
