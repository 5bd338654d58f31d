#!/usr/bin/env python3
"""Benchmark the history the collector keeps for the console's graphs, at fleet scale.

Two parts, each run in a process of its own, so that each RSS is its own:

1. **The collector, with the history on and off.** One `CollectorService` in the worker (as
   bench/metrics.py does), the shipped groups and rules (`config/collector.yaml`,
   `config/rules/*.yaml`, plus bench/ingest.py's instant rule), SQLite in a temp data dir,
   `history: {resolution: 5m}` with `graphs: true`, then `false`. Each of `--hosts` hosts
   (10,000) sends `--rounds` (7) reports of bench/ingest.py's 50 measurements, one a minute in
   simulated time, the hosts spread over the minute; the sixth report of each host opens a new
   5-minute step, and so writes the step before it. An evaluation tick runs after each round.
   It prints the RSS (VmRSS at the end, VmHWM), the ruled series held in memory, the rows
   written, and each report's ingest time (mean, p99, max), the reports that wrote a step
   apart from the others.
2. **A day in the store.** `--day-hosts` (200) hosts, each with as many ruled series as part 1
   found per host, 288 steps of 5 minutes written as the collector writes them (one statement
   per host per step, a transaction per step), on SQLite and on PostgreSQL (a fresh schema in
   `--dsn`, dropped afterwards; skipped when it does not answer). It prints the table's size
   per host per day (SQLite: `dbstat`; PostgreSQL: `pg_total_relation_size`, indexes included)
   and what it comes to for 10,000 hosts, then times what pages and ticks do with a day in
   the store: a host page (read 24 h of every ruled series, draw each graph), a call page (one
   series over two hours), and one prune slice (100 hosts, 10 minutes of their steps out of
   retention, as in steady state).

Run from the repo root, with the project's virtualenv first on PATH:

    python bench/history.py                      # ~3 minutes at 10,000 hosts
    python bench/history.py --hosts 1000 --day-hosts 50    # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.append(_REPO)
from bench.common import load_ingest_module, log, positive_int, show  # noqa: E402

DEFAULT_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
RESOLUTION = 300
STEPS_PER_DAY = 86400 // RESOLUTION
FLEET = 10_000


# -- part 1: the collector --------------------------------------------------------------------


def collector_part(hosts: int, rounds: int, graphs: bool, seed: int) -> dict[str, Any]:
    """Run in a worker process: fill a collector in simulated time, measure it."""
    import yaml

    from checks.schema import decode_report
    from collector.app import CollectorService
    from collector.config import load_collector_config
    from collector.store.records import unpack_steps

    ingest = load_ingest_module()
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-history-") as tmp:
        workdir = Path(tmp)
        collector = ingest.prepare_collector(workdir)
        config = yaml.safe_load(collector.config_path.read_text())
        config["history"] = {"resolution": f"{RESOLUTION}s", "retention": "7d", "graphs": graphs}
        collector.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        now = [0.0]
        service = CollectorService(
            load_collector_config(collector.config_path), clock=lambda: now[0]
        )
        try:
            specs = ingest.host_series()
            rng = random.Random(seed)
            factories = [
                ingest.ReportFactory(f"host{i:05d}.example.net", specs, rng) for i in range(hosts)
            ]
            # Five reports in one step, the sixth opens the next (each host writes its steps).
            step = math.floor(time.time() / RESOLUTION) * RESOLUTION - RESOLUTION
            plain: list[float] = []
            writing: list[float] = []
            for round_ in range(rounds):
                minute = step + 5 + 60 * round_
                for index, factory in enumerate(factories):
                    at = minute + 50 * index / hosts
                    now[0] = at
                    report = decode_report(factory.next_body(at))
                    began = time.perf_counter()
                    service.ingest(factory.host, report)
                    spent = time.perf_counter() - began
                    (writing if at // RESOLUTION != (at - 60) // RESOLUTION else plain).append(
                        spent
                    )
                service.tick()
                log(f"history {'on' if graphs else 'off'}: round {round_ + 1} of {rounds} done")
            points = [
                step
                for host, at, packed in service.store._run(
                    "SELECT host, at, points FROM series_history"
                )
                for step in unpack_steps(host, at, bytes(packed))
            ]
            rows = len(points)
            ranged = sum(1 for p in points if p.low is not None)
            status = Path("/proc/self/status").read_text().splitlines()

            def field(name: str) -> int:
                line = next(line for line in status if line.startswith(name + ":"))
                return int(line.split()[1]) * 1024

            return {
                "graphs": graphs,
                "hosts": hosts,
                "reports": len(plain) + len(writing),
                "rss_bytes": field("VmRSS"),
                "peak_rss_bytes": field("VmHWM"),
                "steps_in_memory": len(service.fleet.steps),
                "ruled_series_per_host": len(service.fleet.steps) / hosts,
                "points_written": rows,
                "points_with_range": ranged,
                "ingest": _times(plain),
                "ingest_writing_steps": _times(writing),
            }
        finally:
            service.close()


def _times(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"count": 0, "mean_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(seconds)
    return {
        "count": len(ordered),
        "mean_ms": statistics.fmean(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


# -- part 2: a day in the store --------------------------------------------------------------


def store_part(
    backend: str, dsn: str, *, hosts: int, series: int, ranged: float, seed: int
) -> dict[str, Any]:
    """Run in a worker process: write a day of steps for `hosts`, measure size and reads."""
    from collector.store.records import HistoryStep
    from collector.view.history import series_id

    rng = random.Random(seed)
    names = [f"host{i:05d}.example.net" for i in range(hosts)]
    ids = [series_id(f"bench_metric_{k}", '{"mountpoint":"/"}') for k in range(series)]
    end = math.floor(time.time() / RESOLUTION) * RESOLUTION
    start = end - STEPS_PER_DAY * RESOLUTION
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-history-") as tmp:
        store, drop = _open_store(backend, dsn, Path(tmp))
        try:
            began = time.perf_counter()
            for number in range(STEPS_PER_DAY):
                at = start + number * RESOLUTION
                with store.transaction():
                    for host in names:
                        steps = []
                        for sid in ids:
                            value = rng.uniform(0, 1e9)
                            if rng.random() < ranged:
                                low, high = value * rng.uniform(0.9, 1), value * rng.uniform(1, 1.1)
                                steps.append(HistoryStep(host, sid, at, value, low, high))
                            else:
                                steps.append(HistoryStep(host, sid, at, value))
                        store.add_steps(steps)
                if number % 48 == 47:
                    log(f"{backend}: {(number + 1) / 12:.0f} h of {hosts} hosts written")
            write_seconds = time.perf_counter() - began
            size = _table_bytes(store, backend)
            figures: dict[str, Any] = {
                "backend": backend,
                "hosts": hosts,
                "series_per_host": series,
                "points": hosts * series * STEPS_PER_DAY,
                "write_seconds": write_seconds,
                "points_per_second": hosts * series * STEPS_PER_DAY / write_seconds,
                "table_bytes": size,
                "bytes_per_point": size / (hosts * series * STEPS_PER_DAY),
                "bytes_per_host_per_day": size / hosts,
            }
            figures.update(_reads(store, names, ids, start, end))
            return figures
        finally:
            store.close()
            drop()


def _open_store(backend: str, dsn: str, workdir: Path) -> tuple[Any, Any]:
    if backend == "sqlite":
        from collector.store.sqlite import SQLiteStore

        return SQLiteStore(workdir / "runwatch.db"), lambda: None
    import psycopg

    from collector.store.postgresql import PostgresStore

    schema = f"runwatch_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')

    return PostgresStore(f"{dsn} options='-c search_path={schema}'"), drop


def _table_bytes(store: Any, backend: str) -> int:
    if backend == "sqlite":
        store._run("PRAGMA wal_checkpoint(TRUNCATE)")
        row = store._run("SELECT sum(pgsize) FROM dbstat WHERE name='series_history'").fetchone()
    else:
        store._run("ANALYZE series_history")
        row = store._run("SELECT pg_total_relation_size('series_history')").fetchone()
    return int(row[0])


def _reads(
    store: Any, names: list[str], ids: list[int], start: float, end: float
) -> dict[str, Any]:
    """Time a host page, a call page and a prune slice against a day in the store."""
    from collector.view.graphs import Graph, draw

    host_page, call_page = [], []
    sample = names[:: max(1, len(names) // 20)][:20]
    for host in sample:
        began = time.perf_counter()
        steps = store.read_steps(host, end - 86400 - RESOLUTION, end)
        by_series: dict[int, list[Any]] = {}
        for step in steps:
            by_series.setdefault(step.series, []).append(step)
        for sid in ids:
            graph = Graph(
                host,
                "bench_metric",
                {},
                "bytes",
                end - 86400,
                end,
                RESOLUTION,
                tuple(by_series.get(sid, ())),
            )
            draw(graph)
        host_page.append(time.perf_counter() - began)
        began = time.perf_counter()
        one = store.read_steps(host, end - 7200, end, ids[0])
        draw(Graph(host, "bench_metric", {}, "bytes", end - 7200, end, RESOLUTION, tuple(one)))
        call_page.append(time.perf_counter() - began)
    with store.transaction():
        began = time.perf_counter()
        store.prune_steps(start + 600, "", 100)
        prune = time.perf_counter() - began
    return {
        "host_page_ms_median": statistics.median(host_page) * 1000,
        "host_page_ms_max": max(host_page) * 1000,
        "call_page_ms_median": statistics.median(call_page) * 1000,
        "prune_slice_ms": prune * 1000,
        "prune_slice_rows": min(100, len(names)) * 2,
    }


# -- the parent ---------------------------------------------------------------------------------


def worker(args: list[str]) -> dict[str, Any]:
    """Run one part in a fresh interpreter; its figures come back as JSON on stdout."""
    answer = subprocess.run(
        [sys.executable, __file__, "--worker", *args],
        check=True,
        stdout=subprocess.PIPE,
        timeout=3600,
    )
    return json.loads(answer.stdout)  # type: ignore[no-any-return]


def pg_answers(dsn: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 -- any failure means: no PostgreSQL here
        return False


def run(args: argparse.Namespace) -> dict[str, Any]:
    load = os.getloadavg()
    figures: dict[str, Any] = {"load_average_at_start": load[0]}
    common = ["--hosts", str(args.hosts), "--rounds", str(args.rounds), "--seed", str(args.seed)]
    on = worker(["collector", "on", *common])
    off = worker(["collector", "off", *common])
    figures["collector"] = {"on": on, "off": off}
    series = max(1, round(on["ruled_series_per_host"]))
    ranged = on["points_with_range"] / on["points_written"] if on["points_written"] else 1.0
    figures["store"] = []
    backends = ["sqlite"] + (["postgresql"] if pg_answers(args.dsn) else [])
    if "postgresql" not in backends:
        log(f"PostgreSQL does not answer at {args.dsn!r}: SQLite only")
    for backend in backends:
        figures["store"].append(
            worker(
                [
                    "store",
                    backend,
                    "--day-hosts",
                    str(args.day_hosts),
                    "--series",
                    str(series),
                    "--ranged",
                    f"{ranged:.3f}",
                    "--dsn",
                    args.dsn,
                ]
            )
        )
    figures["load_average_at_end"] = os.getloadavg()[0]
    return figures


def print_figures(f: dict[str, Any]) -> None:
    mib = 1024 * 1024
    on, off = f["collector"]["on"], f["collector"]["off"]
    print(
        f"load average (1 min): {f['load_average_at_start']:.2f} at the start, "
        f"{f['load_average_at_end']:.2f} at the end"
    )
    print(f"collector, {on['hosts']} hosts, {on['reports']} reports each run:")
    for name, part in (("history on", on), ("history off", off)):
        plain, writing = part["ingest"], part["ingest_writing_steps"]
        print(
            f"  {name}: RSS {part['rss_bytes'] / mib:.1f} MiB"
            f" (peak {part['peak_rss_bytes'] / mib:.1f}),"
            f" steps in memory {part['steps_in_memory']}, points written {part['points_written']};"
            f" ingest mean {plain['mean_ms']:.2f} ms, p99 {plain['p99_ms']:.2f} ms;"
            f" reports that wrote steps: mean {writing['mean_ms']:.2f} ms,"
            f" p99 {writing['p99_ms']:.2f} ms, max {writing['max_ms']:.2f} ms"
        )
    print(
        f"  ruled series per host: {on['ruled_series_per_host']:.1f};"
        f" RSS difference: {(on['rss_bytes'] - off['rss_bytes']) / mib:+.1f} MiB"
        f" ({(on['rss_bytes'] - off['rss_bytes']) / on['hosts'] / 1024:+.2f} KiB per host)"
    )
    for store in f["store"]:
        per_host = store["bytes_per_host_per_day"]
        print(
            f"store {store['backend']}: {store['hosts']} hosts x {store['series_per_host']} series"
            f" x {STEPS_PER_DAY} steps = {store['points']} points ({store['hosts'] * STEPS_PER_DAY}"
            f" rows) in {store['write_seconds']:.1f} s ({store['points_per_second']:.0f} points/s)"
        )
        print(
            f"  {store['bytes_per_point']:.1f} bytes per point,"
            f" {per_host / 1024:.1f} KiB per host per day;"
            f" 10,000 hosts: {per_host * FLEET / 1024**3:.2f} GiB per day,"
            f" {per_host * FLEET * 7 / 1024**3:.1f} GiB for the default 7 days"
        )
        print(
            f"  host page (24 h, every ruled series, read and drawn): median"
            f" {store['host_page_ms_median']:.1f} ms, max {store['host_page_ms_max']:.1f} ms;"
            f" call page (2 h of one series): {store['call_page_ms_median']:.1f} ms;"
            f" a prune slice ({store['prune_slice_rows']} rows of 100 hosts):"
            f" {store['prune_slice_ms']:.1f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=positive_int, default=FLEET, help="hosts in part 1")
    parser.add_argument("--rounds", type=positive_int, default=7, help="reports per host")
    parser.add_argument(
        "--day-hosts", type=positive_int, default=200, help="hosts given a day of steps (part 2)"
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("RUNWATCH_BENCH_PG_DSN", DEFAULT_DSN),
        help="PostgreSQL for part 2 (a fresh schema is made and dropped)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--series", type=positive_int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--ranged", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        part, which = args.worker
        if part == "collector":
            result = collector_part(args.hosts, args.rounds, which == "on", args.seed)
        else:
            result = store_part(
                which,
                args.dsn,
                hosts=args.day_hosts,
                series=args.series,
                ranged=args.ranged,
                seed=args.seed,
            )
        print(json.dumps(result))
        return 0
    show(run(args), args.json, print_figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
