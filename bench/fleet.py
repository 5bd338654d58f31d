#!/usr/bin/env python3
"""Simulate a fleet: N agents, each reporting 50 measurements every T seconds, against one or
more collectors, on SQLite or on a shared PostgreSQL. Open loop: every agent keeps its own
schedule whatever the collector does, so a slow collector shows as latency and lag, not as a
quietly lower rate.

Prints reports/s and measurements/s sustained, p50/p99/max ingest latency and schedule lag,
each collector's CPU and RSS, and the store's growth per host per day. With `--breach K` it
then makes K hosts breach a rule at one moment, through all collectors, and counts calls.

Run from the repo root:

    python bench/fleet.py --agents 10000 --interval 60 --seconds 150
    python bench/fleet.py --agents 10000 --collectors 2 --store postgresql --breach 1000

Everything runs on loopback and stops by itself; collectors are stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]

DEFAULT_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
# `--breach` trips this rule (its metric is in no regular report), so each host's call is its own.
BREACH_RULE = {"name": "bench_breach", "metric": "bench_breach_ratio", "warning": 0.5,
               "critical": 0.9, "for": "0s", "owner": "systems-administration"}


def load_ingest_module() -> ModuleType:
    """bench/ingest.py by path: its collector process, report factory and /proc helpers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("runwatch_bench_ingest", BENCH_DIR / "ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def log(message: str) -> None:
    print(f"[fleet] {message}", file=sys.stderr, flush=True)


# -- the simulated agents (sender processes) ---------------------------------------------------


def sender(  # noqa: PLR0917 - the arguments of a spawned process
    index: int,
    ports: list[int],
    agents: list[tuple[int, str, str]],
    total: int,
    interval: float,
    t0: float,
    until: float,
    threads: int,
    out: Any,
    problem_share: float,
    spikes: float,
) -> None:
    """Send the given agents' reports on schedule over keep-alive connections; put results."""
    ingest = load_ingest_module()
    ingest.SPIKE_PROBABILITY = spikes
    troubled = ingest.host_series()  # /var hovers around its thresholds
    healthy = [spec if spec.labels.get("mountpoint") != "/var" or spec.name != "fs_used_ratio"
               else dataclasses.replace(spec, low=0.2, high=0.7, spike=0.9)
               for spec in troubled]
    rng = random.Random(index)
    lanes: list[list[tuple[int, str, str]]] = [agents[i::threads] for i in range(threads)]
    results: list[list[tuple[float, float, float, int]]] = [[] for _ in lanes]

    def lane(number: int) -> None:
        mine = lanes[number]
        factories = {host: ingest.ReportFactory(
            host, troubled if slot < problem_share * total else healthy,
            random.Random(rng.random())) for slot, host, _ in mine}
        conns: dict[int, http.client.HTTPConnection] = {}
        # Each agent's first report is at t0 + its offset, then every `interval`.
        schedule = sorted(
            (t0 + slot / total * interval, slot, host, token)
            for slot, host, token in mine)
        queue = [(due, slot, host, token) for due, slot, host, token in schedule]
        position = 0
        while queue:
            due, slot, host, token = queue[position % len(queue)]
            if due >= until:
                break
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            port = ports[slot % len(ports)]
            conn = conns.get(port)
            if conn is None:
                conn = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            body = factories[host].next_body()
            began = time.perf_counter()
            started = time.time()
            try:
                conn.request("POST", "/api/v1/reports", body=body, headers={
                    "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conns.pop(port, None)
            results[number].append((started, time.perf_counter() - began, started - due,
                                    status))
            queue[position % len(queue)] = (due + interval, slot, host, token)
            position += 1
        for conn in conns.values():
            conn.close()

    workers = [threading.Thread(target=lane, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put([item for part in results for item in part])


# -- collectors and store -----------------------------------------------------------------------


def write_tokens(path: Path, hosts: list[str]) -> dict[str, str]:
    """One token per host, written in one go (adding 10,000 one by one rewrites the file each
    time)."""
    import secrets

    from collector.auth import TOKEN_PREFIX, hash_token

    path.parent.mkdir(parents=True, exist_ok=True)
    tokens = {host: TOKEN_PREFIX + secrets.token_urlsafe(24) for host in hosts}
    now = time.time()
    path.write_text("".join(f"{host} {hash_token(token)} {now:.0f}\n"
                            for host, token in tokens.items()))
    return tokens


def start_collectors(ingest: ModuleType, workdir: Path, count: int, store: dict[str, Any],
                     tokens_path: Path) -> list[Any]:
    import yaml

    collectors = []
    for number in range(count):
        directory = workdir / f"collector{number}"
        directory.mkdir()
        collector = ingest.prepare_collector(directory)
        config = yaml.safe_load(collector.config_path.read_text())
        config["store"] = store
        config["agents"] = {"tokens_file": str(tokens_path)}
        # Storm control would hold back most of a 1,000-host breach: this run counts calls.
        config["storm"] = {"max_calls": 100000, "window": "5m"}
        config["rules"] = [*config.get("rules", []), BREACH_RULE]
        # This run measures ingest: /metrics (read twice for the collector's own latency
        # histogram) leaves the 500,000 measurement samples out, or each read would stall it.
        config["metrics"] = {"measurements": False}
        collector.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        collector.tokens_path = tokens_path
        collectors.append(collector)
    for collector in collectors:
        collector.start()
    return collectors


def store_bytes(store: dict[str, Any], workdir: Path) -> int:
    if store["backend"] == "sqlite":
        return sum(path.stat().st_size for path in workdir.glob("collector0/data/runwatch.db*"))
    import psycopg

    with psycopg.connect(store["dsn"]) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'").fetchone()
        return int(row[0]) if row else 0


# -- the run ------------------------------------------------------------------------------------


def own_histogram(ingest: ModuleType, collector: Any) -> list[tuple[float, float]]:
    """The collector's own ingest latency histogram: cumulative (le, count) buckets."""
    _, body = ingest.http_get(collector.port, "/metrics", timeout=60)
    samples = ingest.parse_own_metrics(body)
    return sorted((float(labels["le"]), value) for labels, value in
                  samples.get("runwatch_ingest_duration_seconds_bucket", []))


def bucket_quantiles(before: list[tuple[float, float]], after: list[tuple[float, float]]
                     ) -> dict[str, float | None]:
    """p50/p99 of the reports ingested between two readings, as bucket upper bounds (ms)."""
    counts = dict(before)
    window = [(bound, value - counts.get(bound, 0.0)) for bound, value in after]
    total = window[-1][1] if window else 0.0
    out: dict[str, float | None] = {"reports": total}
    for name, q in (("p50_le", 0.5), ("p99_le", 0.99)):
        out[name] = next((ms(bound) for bound, cumulative in window
                          if total and cumulative >= q * total), None)
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    ingest = load_ingest_module()
    schema = None
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-fleet-") as tmp:
        workdir = Path(tmp)
        store: dict[str, Any] = {"backend": "sqlite"}
        if args.store == "postgresql":
            import psycopg

            schema = f"runwatch_bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(args.dsn, autocommit=True) as admin:
                admin.execute(f'CREATE SCHEMA "{schema}"')
            store = {"backend": "postgresql",
                     "dsn": f"{args.dsn} options='-c search_path={schema}'"}
        hosts = [f"host{i:05d}" for i in range(args.agents)]
        tokens = write_tokens(workdir / "agents.tokens", hosts)
        collectors: list[Any] = []
        try:
            collectors = start_collectors(ingest, workdir, args.collectors, store,
                                          workdir / "agents.tokens")
            log(f"{len(collectors)} collector(s) on {args.store}: "
                + ", ".join(f"pid {c.pid} at {c.url}" for c in collectors))
            figures = drive(ingest, args, collectors, hosts, tokens, store, workdir)
            if args.breach:
                figures["breach"] = breach(ingest, args, collectors, hosts[:args.breach],
                                           tokens)
            figures["collector_exits"] = [c.stop() for c in collectors]
            figures["collector_log_problems"] = sum(len(c.log_problems()) for c in collectors)
            return figures
        finally:
            for collector in collectors:
                collector.stop()
            if schema is not None:
                import psycopg

                with psycopg.connect(args.dsn, autocommit=True) as admin:
                    admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def drive(  # noqa: PLR0917
        ingest: ModuleType, args: argparse.Namespace, collectors: list[Any],
          hosts: list[str], tokens: dict[str, str], store: dict[str, Any],
          workdir: Path) -> dict[str, Any]:
    ports = [c.port for c in collectors]
    agents = [(slot, host, tokens[host]) for slot, host in enumerate(hosts)]
    t0 = time.time() + 2.0
    until = t0 + args.seconds
    steady_from = t0 + min(args.interval, args.seconds / 2)  # after every host's first report
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    procs = [context.Process(target=sender, args=(
        n, ports, agents[n::args.senders], len(agents), args.interval, t0, until, args.threads,
        out, args.problem_share, args.spikes)) for n in range(args.senders)]
    for proc in procs:
        proc.start()
    log(f"{args.agents} agents every {args.interval:g}s for {args.seconds:g}s "
        f"({args.agents / args.interval:.0f} reports/s planned) from {args.senders} processes")
    time.sleep(max(0.0, steady_from - time.time() - 10.0))
    own_start = [own_histogram(ingest, c) for c in collectors]  # just before the window
    time.sleep(max(0.0, steady_from - time.time()))
    cpu_start = [ingest.cpu_seconds(c.pid) for c in collectors]
    bytes_start = store_bytes(store, workdir)
    steady_started = time.time()
    rss: list[list[int]] = [[] for _ in collectors]
    while time.time() < until:
        for number, collector in enumerate(collectors):
            rss[number].append(ingest.rss_bytes(collector.pid))
        time.sleep(min(5.0, max(0.1, until - time.time())))
    cpu_end = [ingest.cpu_seconds(c.pid) for c in collectors]
    steady_seconds = time.time() - steady_started
    own_end = [own_histogram(ingest, c) for c in collectors]  # just after it
    bytes_end = store_bytes(store, workdir)
    results: list[tuple[float, float, float, int]] = []
    for _ in procs:
        results.extend(out.get(timeout=args.seconds + 120))
    for proc in procs:
        proc.join(30)
    steady = [r for r in results if steady_started <= r[0] < steady_started + steady_seconds]
    latencies = sorted(r[1] for r in steady)
    lags = sorted(r[2] for r in steady)
    ok = sum(1 for r in steady if r[3] in (200, 202))
    errors = sum(1 for r in steady if r[3] not in (200, 202))
    per_host_day = ((bytes_end - bytes_start) / len(hosts) / steady_seconds * 86400
                    if steady_seconds > 0 else None)
    return {
        "agents": args.agents, "interval_seconds": args.interval,
        "problem_share": args.problem_share, "spike_probability": args.spikes,
        "collectors": len(collectors), "store": args.store,
        "planned_reports_per_second": round(args.agents / args.interval, 1),
        "steady_seconds": round(steady_seconds, 1),
        "reports_per_second": round(ok / steady_seconds, 1),
        "measurements_per_second": round(ok * ingest.MEASUREMENTS_PER_REPORT / steady_seconds),
        "errors": errors,
        "latency_ms": {"p50": ms(percentile(latencies, 0.50)),
                       "p99": ms(percentile(latencies, 0.99)),
                       "max": ms(latencies[-1] if latencies else None)},
        "collector_side_ms": [bucket_quantiles(before, after)
                              for before, after in zip(own_start, own_end, strict=True)],
        "schedule_lag_ms": {"p99": ms(percentile(lags, 0.99)),
                            "max": ms(lags[-1] if lags else None)},
        "collector_cpu_percent": [round((end - start) * 100 / steady_seconds, 1)
                                  for start, end in zip(cpu_start, cpu_end, strict=True)],
        "collector_rss_mib": [round(max(samples) / 1048576, 1) if samples else None
                              for samples in rss],
        "store_bytes": bytes_end,
        "store_growth_bytes_per_host_per_day": (round(per_host_day) if per_host_day is not None
                                                else None),
    }


def breach(ingest: ModuleType, args: argparse.Namespace, collectors: list[Any],
           hosts: list[str], tokens: dict[str, str]) -> dict[str, Any]:
    """K hosts report /var at 99% at once, each through every collector; count the calls."""
    from checks.schema import SCHEMA_VERSION, Measurement, Report, encode

    now = time.time()
    bodies = []
    for host in hosts:
        for seq_offset, collector in enumerate(collectors):
            report = Report(
                schema_version=SCHEMA_VERSION, host=host, agent_version="bench",
                boot_id=f"breach-{host}", seq=1 + seq_offset, sent_at=now,
                interval_seconds=args.interval,
                measurements=[Measurement(check="bench", name="bench_breach_ratio", value=0.99,
                                          unit="ratio", timestamp=now)],
                checks=[])
            bodies.append((collector.port, tokens[host], encode(report)))
    random.Random(7).shuffle(bodies)
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(32)

    def send(part: list[tuple[int, str, bytes]]) -> None:
        conns: dict[int, http.client.HTTPConnection] = {}
        barrier.wait(30)
        for port, token, body in part:
            status = 0
            for _ in range(3):  # a kept-alive connection the server has closed: reconnect
                conn = conns.setdefault(port, http.client.HTTPConnection("127.0.0.1", port,
                                                                         timeout=60))
                try:
                    conn.request("POST", "/api/v1/reports", body=body, headers={
                        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conns.pop(port, None)
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=send, args=(bodies[n::32],)) for n in range(32)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    took = time.monotonic() - began
    _, body = ingest.http_get(collectors[0].port, "/api/v1/calls?status=open&limit=100000",
                              timeout=60)
    calls = [c for c in json.loads(body) if c["rule"] == BREACH_RULE["name"]]
    per_host: dict[str, int] = {}
    for call in calls:
        per_host[call["host"]] = per_host.get(call["host"], 0) + 1
    return {"hosts": len(hosts), "reports": len(bodies), "seconds": round(took, 2),
            "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "hosts_with_a_call": len(per_host),
            "duplicate_calls": sum(n - 1 for n in per_host.values())}


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def print_figures(f: dict[str, Any]) -> None:
    print(f"runwatch fleet benchmark: {f['agents']} agents every {f['interval_seconds']:g}s, "
          f"{f['collectors']} collector(s) on {f['store']}; {f['problem_share']:.0%} of hosts "
          f"troubled, spikes {f['spike_probability']:g} per series and report")
    print(f"  sustained       {f['reports_per_second']} reports/s "
          f"(planned {f['planned_reports_per_second']}), {f['measurements_per_second']} "
          f"measurements/s over {f['steady_seconds']} s; {f['errors']} errors")
    lat, lag = f["latency_ms"], f["schedule_lag_ms"]
    print(f"  latency         p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms "
          f"at the agents (schedule lag p99 {lag['p99']} ms); inside each collector "
          + ", ".join(f"p50 <= {c['p50_le']} ms, p99 <= {c['p99_le']} ms"
                      for c in f["collector_side_ms"]))
    print(f"  collectors      CPU {f['collector_cpu_percent']} % of one core, "
          f"RSS {f['collector_rss_mib']} MiB")
    print(f"  store           {f['store_bytes'] / 1048576:.1f} MiB; growth "
          f"{f['store_growth_bytes_per_host_per_day']} bytes per host per day")
    if "breach" in f:
        b = f["breach"]
        print(f"  breach          {b['hosts']} hosts at once through every collector "
              f"({b['reports']} reports in {b['seconds']} s, {b['statuses']}): "
              f"{b['hosts_with_a_call']} hosts with a call, {b['duplicate_calls']} duplicates")
    print(f"  exits           {f['collector_exits']}; {f['collector_log_problems']} log lines "
          "at WARNING or above")
    target = (f["reports_per_second"] >= 0.98 * f["planned_reports_per_second"]
              and (lat["p99"] or 1e9) < 100 and f["errors"] == 0)
    print(f"  target          sustained with p99 < 100 ms: {'met' if target else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10000, help="simulated agents")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between reports")
    parser.add_argument("--seconds", type=float, default=150.0,
                        help="how long to run; the first interval is left out of the figures")
    parser.add_argument("--collectors", type=int, default=1, help="collector processes")
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--dsn", default=os.environ.get("RUNWATCH_BENCH_PG_DSN", DEFAULT_DSN),
                        help="PostgreSQL to use (a fresh schema is made and dropped)")
    parser.add_argument("--senders", type=int, default=2, help="sender processes")
    parser.add_argument("--threads", type=int, default=16, help="connections per sender")
    parser.add_argument("--problem-share", type=float, default=0.05, metavar="SHARE",
                        help="share of hosts whose /var hovers around its thresholds (calls "
                             "open, flap and resolve); the rest are healthy")
    parser.add_argument("--spikes", type=float, default=0.002, metavar="P",
                        help="chance that a series with a spike value draws it in a report")
    parser.add_argument("--breach", type=int, default=0, metavar="K",
                        help="afterwards, K hosts breach a rule at once via every collector")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.store == "sqlite" and args.collectors > 1:
        parser.error("several collectors need --store postgresql (SQLite has one writer)")
    figures = run(args)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_figures(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
