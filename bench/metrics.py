#!/usr/bin/env python3
"""Benchmark /metrics at fleet scale: render time, body size, and gzip serving.

Fills a collector's store with `--hosts` hosts (default 10,000) through the real ingest path
(`CollectorService.ingest`: validation, SQLite store, rule evaluation), each host sending the
50 measurements of bench/ingest.py. Then it times `/metrics`:
- rendered in-process, as the route does (`CollectorMetrics.render`), and gzipped;
- served over HTTP on loopback by the collector's app under uvicorn, as `runwatch collector`
  serves it, fetched plain and with `Accept-Encoding: gzip` (time to the last byte).

Run from the repo root, with the project's virtualenv first on PATH:

    python bench/metrics.py [--hosts 10000] [--repeat 5] [--no-measurements] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ingest import (  # bench/ is this script's directory, so its sibling imports directly
    ReportFactory,
    host_series,
    log,
    prepare_collector,
    show,
)


def fill(config_path: Path, hosts: int, seed: int, repeat: int) -> dict[str, float]:
    """Ingest one report per host through the collector's own ingest path, then time
    /metrics rendered in-process and served over HTTP by the same collector."""
    from checks.schema import decode_report
    from collector.app import CollectorService
    from collector.config import load_collector_config

    service = CollectorService(load_collector_config(config_path))
    specs = host_series()
    rng = random.Random(seed)
    started = time.perf_counter()
    factories = []
    try:
        for index in range(hosts):
            factory = ReportFactory(f"host{index:05d}.example.net", specs, rng)
            factories.append(factory)
            service.ingest(factory.host, decode_report(factory.next_body()))
            if index and index % 2000 == 0:
                log(f"{index} hosts ingested")
        figures = {"fill_seconds": time.perf_counter() - started}
        figures.update(render_in_process(service, repeat))
        figures.update(render_cold(service, repeat))
        figures.update(render_steady(service, factories, repeat))
        log("serving /metrics over HTTP")
        figures.update(serve(service, hosts, repeat))
        return figures
    finally:
        service.close()


def render_in_process(service: Any, repeat: int) -> dict[str, float]:
    from collector.api.ops import gzip_body

    renders, zips = [], []
    body = zipped = b""
    for _ in range(repeat):
        started = time.perf_counter()
        body = service.metrics.render()
        renders.append(time.perf_counter() - started)
        started = time.perf_counter()
        zipped = gzip_body(body)
        zips.append(time.perf_counter() - started)
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    states_only = render_states_only(service, repeat)
    return {
        **states_only,
        "render_seconds_min": min(renders),
        "render_seconds_median": statistics.median(renders),
        "gzip_seconds_median": statistics.median(zips),
        "body_bytes": len(body),
        "gzip_bytes": len(zipped),
        "samples": samples,
    }


def render_cold(service: Any, repeat: int) -> dict[str, float]:
    """Time a render with nothing kept from earlier scrapes or reports: the first scrape after
    a restart (each host's measurement text is then rendered, and kept)."""
    from collector.metrics.instruments import CollectorMetrics

    renders = []
    for _ in range(repeat):
        metrics = CollectorMetrics(service.config)
        metrics.watch(service.fleet, service.config, service.counters, service.store, service.clock)
        started = time.perf_counter()
        metrics.render()
        renders.append(time.perf_counter() - started)
    return {"cold_render_seconds_median": statistics.median(renders)}


def render_steady(service: Any, factories: list[Any], repeat: int) -> dict[str, float]:
    """Between renders, half the hosts report again, as with Prometheus scraping every 30 s
    and agents reporting every 60 s. Times those reports' ingest (their /metrics text is
    rendered there) and the render after them."""
    from checks.schema import decode_report

    renders, ingests = [], []
    half = len(factories) // 2
    for round_ in range(repeat):
        bodies = [
            (f.host, decode_report(f.next_body()))
            for f in factories[(round_ % 2) * half :][: half or 1]
        ]
        started = time.perf_counter()
        for host, report in bodies:
            service.ingest(host, report)
        ingests.append((time.perf_counter() - started) / len(bodies))
        started = time.perf_counter()
        service.metrics.render()
        renders.append(time.perf_counter() - started)
    return {
        "steady_render_seconds_median": statistics.median(renders),
        "steady_render_seconds_max": max(renders),
        "steady_ingest_seconds_per_report": statistics.median(ingests),
    }


def render_states_only(service: Any, repeat: int) -> dict[str, float]:
    """Time the same render with `metrics: {measurements: false}`: the hosts' and rules'
    state, calls and the collector's own figures, without the measurements themselves."""
    import msgspec

    from collector.config import MetricsConfig
    from collector.metrics.instruments import CollectorMetrics

    config = msgspec.structs.replace(service.config, metrics=MetricsConfig(measurements=False))
    metrics = CollectorMetrics(config)
    metrics.watch(service.fleet, config, service.counters, service.store, service.clock)
    renders = []
    body = b""
    for _ in range(repeat):
        started = time.perf_counter()
        body = metrics.render()
        renders.append(time.perf_counter() - started)
    return {
        "states_render_seconds_median": statistics.median(renders),
        "states_body_bytes": len(body),
        "states_samples": sum(
            1 for line in body.splitlines() if line and not line.startswith(b"#")
        ),
    }


def fetch(port: int, gzip_ok: bool) -> tuple[float, bytes, str | None]:
    """GET /metrics; return the time to the last byte, the body as sent, its encoding."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Accept-Encoding": "gzip"} if gzip_ok else {}
    try:
        started = time.perf_counter()
        conn.request("GET", "/metrics", headers=headers)
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"/metrics answered {response.status}")
        return elapsed, body, response.getheader("Content-Encoding")
    finally:
        conn.close()


def serve(service: Any, hosts: int, repeat: int) -> dict[str, float]:
    """Time /metrics served by the collector's app under uvicorn on loopback, as
    `runwatch collector` serves it, from the filled service (a thread of this process, so
    the state is exactly the one just rendered)."""
    import uvicorn

    from collector.api.application import create_app
    from collector.server import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.05)
        plain, zipped = [], []
        plain_body = zipped_body = b""
        for _ in range(repeat):
            seconds, plain_body, encoding = fetch(port, gzip_ok=False)
            assert encoding is None
            plain.append(seconds)
            seconds, zipped_body, encoding = fetch(port, gzip_ok=True)
            assert encoding == "gzip", encoding
            zipped.append(seconds)
        states = gzip.decompress(zipped_body).count(b"runwatch_host_state{")
        if states != 5 * hosts:
            raise RuntimeError(f"expected {5 * hosts} host_state samples, got {states}")
        return {
            "served_plain_seconds_median": statistics.median(plain),
            "served_gzip_seconds_median": statistics.median(zipped),
            "served_plain_bytes": len(plain_body),
            "served_gzip_bytes": len(zipped_body),
        }
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="runwatch-bench-metrics-"))
    try:
        collector = prepare_collector(workdir, instant_rule=True)
        if args.no_measurements:
            import yaml

            config = yaml.safe_load(collector.config_path.read_text())
            config["metrics"] = {"measurements": False}
            collector.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        log(f"filling the store with {args.hosts} hosts through the ingest path")
        figures: dict[str, Any] = {"hosts": args.hosts, "measurements": not args.no_measurements}
        figures.update(fill(collector.config_path, args.hosts, args.seed, args.repeat))
        return figures
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def print_figures(figures: dict[str, Any]) -> None:
    mib = 1024 * 1024
    print(
        f"hosts                 {figures['hosts']} (measurements on /metrics: "
        f"{'yes' if figures['measurements'] else 'no'})"
    )
    print(f"fill                  {figures['fill_seconds']:.1f} s through the ingest path")
    print(f"samples               {figures['samples']}")
    print(
        f"render (in process)   median {figures['render_seconds_median'] * 1000:.0f} ms, "
        f"min {figures['render_seconds_min'] * 1000:.0f} ms"
    )
    print(
        f"render, half the hosts reported since the last: median "
        f"{figures['steady_render_seconds_median'] * 1000:.0f} ms, "
        f"max {figures['steady_render_seconds_max'] * 1000:.0f} ms "
        f"(ingest {figures['steady_ingest_seconds_per_report'] * 1000:.2f} ms a report)"
    )
    print(
        f"render, cold (first scrape after a restart): median "
        f"{figures['cold_render_seconds_median'] * 1000:.0f} ms"
    )
    print(
        f"render, states only   median {figures['states_render_seconds_median'] * 1000:.0f} ms"
        f" for {figures['states_samples']} samples, "
        f"{figures['states_body_bytes'] / mib:.1f} MiB (metrics: {{measurements: false}})"
    )
    print(f"gzip (level 1)        median {figures['gzip_seconds_median'] * 1000:.0f} ms")
    print(
        f"body                  {figures['body_bytes'] / mib:.1f} MiB plain, "
        f"{figures['gzip_bytes'] / mib:.1f} MiB gzip "
        f"({figures['body_bytes'] / figures['gzip_bytes']:.1f}x)"
    )
    print(
        f"served plain          median {figures['served_plain_seconds_median'] * 1000:.0f} ms"
        f" for {figures['served_plain_bytes'] / mib:.1f} MiB"
    )
    print(
        f"served gzip           median {figures['served_gzip_seconds_median'] * 1000:.0f} ms"
        f" for {figures['served_gzip_bytes'] / mib:.1f} MiB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-measurements",
        action="store_true",
        help="metrics: {measurements: false}, as for a very large fleet",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = run(args)
    show(figures, args.json, print_figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
