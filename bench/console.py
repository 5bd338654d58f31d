"""Console server time at fleet scale: the overview and a host's page with 10,000 hosts and
2,000 open calls (the target: under 300 ms a render).

The collector runs in this process (the shipped config and rules, a temp data dir, SQLite or
`--dsn` PostgreSQL): each host sends one report of 50 measurements shaped like the shipped
system checks (bench/ingest.py's), in batches as the API takes them. Every `--call-every`th
host (default: every fifth) has /var at 97 %, which the benchmark's `for: 0s` rule turns into
an open call at once; `--stale` hosts last reported an hour before the others. Then a signed-in
console client asks for each page `--requests` times, in this process (Litestar's test
client: no sockets), and the time from request to the response read is the server's time per
render, rendering and every store query included. Figures: p50, p90, p99 and max per page,
and the response size.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/ off sys.path (bench/agent.py would hide the agent package), the repository on it.
BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(BENCH_DIR.parent) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR.parent))
from bench.common import load_ingest_module, log, positive_int, run_and_show  # noqa: E402

TARGET_MS = 300.0
PAGES = {
    "overview": "/",
    "overview, searched (role=db)": "/?q=role%3Ddb",
    "overview, page 100 by name": "/?sort=host&dir=asc&page=100",
    "host page": "/hosts/host00005",
    "calls, open": "/calls",
    "calls, searched (text)": "/calls?q=host0123&state=all",
    "live refresh of the overview": "/",
}


class Clock:
    """The collector's clock, moved by hand: stale hosts reported an hour ago."""

    def __init__(self) -> None:
        self.now = time.time() - 3600

    def __call__(self) -> float:
        return self.now


def build_service(workdir: Path, args: argparse.Namespace, clock: Clock) -> Any:
    import yaml

    from collector.app import CollectorService
    from collector.config import load_collector_config

    ingest = load_ingest_module()
    shipped = yaml.safe_load(ingest.shipped_config_path("collector.yaml").read_text())
    config = dict(shipped)
    config["data_dir"] = str(workdir / "data")
    config["agents"] = {"tokens_file": str(workdir / "data" / "agents.tokens")}
    config["rule_files"] = [str(ingest.shipped_config_path("rules") / "*.yaml")]
    config["rules"] = [ingest.INSTANT_RULE]
    config["limits"] = {"agent_requests_per_second": 0}
    config["listen"] = "127.0.0.1:8080"  # never opened: the console is asked in-process
    # 2,000 calls opened at once are a storm: let them all open, as over a day they would.
    config["storm"] = {"max_calls": 1_000_000}
    config["allowed_hosts"] = ["testserver.local"]  # the test client's name
    if args.dsn:
        config["store"] = {"backend": "postgresql", "dsn": args.dsn}
    path = workdir / "collector.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return CollectorService(load_collector_config(path), clock=clock)


def report_of(host: str, n: int, now: float, *, specs: list[Any], rng: Any, args: Any) -> Any:
    from checks.schema import SCHEMA_VERSION, CheckRun, Measurement, Report

    measurements = []
    for spec in specs:
        if spec.name == "fs_used_ratio" and spec.labels.get("mountpoint") == "/var":
            value = 0.97 if n % args.call_every == 0 else 0.5
        else:
            value = rng.uniform(spec.low, min(spec.high, spec.low + (spec.high - spec.low) * 0.5))
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
            interval_seconds=60.0,
            started_at=now - 0.01,
            duration_seconds=0.002,
        )
        for kind in (
            "cpu",
            "load",
            "memory",
            "filesystem",
            "diskio",
            "network",
            "processes",
            "uptime",
        )
    ]
    return Report(
        schema_version=SCHEMA_VERSION,
        host=host,
        agent_version="bench",
        boot_id="bench-boot",
        seq=1,
        sent_at=now,
        interval_seconds=60.0,
        measurements=measurements,
        checks=checks,
        labels={"role": ("web", "db", "app", "cache")[n % 4], "site": ("fra", "ams")[n % 2]},
    )


def seed(service: Any, clock: Clock, args: argparse.Namespace) -> dict[str, Any]:
    """One report from every host, in batches; the stale ones an hour before the rest."""
    ingest = load_ingest_module()
    specs = ingest.host_series()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    names = [f"host{n:05d}" for n in range(args.hosts)]
    stale = set(names[-args.stale :]) if args.stale else set()
    for group, at in ((sorted(stale), clock.now), ([h for h in names if h not in stale], None)):
        if at is None:
            clock.now += 3600
        for i in range(0, len(group), args.batch):
            batch = group[i : i + args.batch]
            items = [
                (
                    host,
                    report_of(host, int(host[4:]), clock.now, specs=specs, rng=rng, args=args),
                    None,
                )
                for host in batch
            ]
            for outcome in service.ingest_many(items):
                if isinstance(outcome, Exception):
                    raise RuntimeError(f"a seed report was refused: {outcome}")
            if (i // args.batch) % 10 == 0:
                log(f"seeded {i + len(batch):,} of {len(group):,} hosts")
    service.tick()
    return {
        "hosts": len(service.fleet.hosts),
        "rule_states": len(service.fleet.states),
        "open_calls": sum(service.store.open_calls_by_group().values()),
        "seed_seconds": round(time.perf_counter() - started, 1),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from litestar.testing import TestClient

    from collector.api.application import create_app
    from collector.auth import add_token

    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-console-") as tmp:
        service = build_service(Path(tmp), args, clock)
        try:
            fleet = seed(service, clock, args)
            log(f"fleet: {fleet}")
            token = add_token(service.config.operator_tokens_file, "bench")
            pages: dict[str, Any] = {}
            with TestClient(create_app(service)) as client:
                signed = client.post("/login", data={"next": "/", "token": token})
                if signed.status_code != 200:
                    raise RuntimeError(f"cannot sign in: {signed.status_code}")
                for name, path in PAGES.items():
                    headers = {"X-Runwatch-Live": "1"} if name.startswith("live") else {}
                    times, cpu = [], []
                    size = 0
                    for i in range(args.requests + 1):
                        began, used = time.perf_counter(), time.process_time()
                        answer = client.get(path, headers=headers)
                        took = time.perf_counter() - began
                        spent = time.process_time() - used
                        if answer.status_code != 200:
                            raise RuntimeError(f"{path} answered {answer.status_code}")
                        size = len(answer.content)
                        if i:  # the first request warms the templates and caches up
                            times.append(took * 1000)
                            cpu.append(spent * 1000)
                    pages[name] = {
                        "path": path,
                        "p50_ms": round(statistics.median(times), 1),
                        "p90_ms": round(percentile(times, 0.9), 1),
                        "p99_ms": round(percentile(times, 0.99), 1),
                        "max_ms": round(max(times), 1),
                        "cpu_p50_ms": round(statistics.median(cpu), 1),
                        "cpu_p99_ms": round(percentile(cpu, 0.99), 1),
                        "bytes": size,
                    }
                    log(f"{name}: {pages[name]}")
        finally:
            service.close()
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    return {
        "store": "postgresql" if args.dsn else "sqlite",
        "fleet": fleet,
        "requests_per_page": args.requests,
        "pages": pages,
        "target_ms": TARGET_MS,
        "load_average": " ".join(load),
    }


def print_figures(figures: dict[str, Any]) -> None:
    fleet = figures["fleet"]
    print(
        f"fleet: {fleet['hosts']:,} hosts, {fleet['rule_states']:,} rule states, "
        f"{fleet['open_calls']:,} open calls ({figures['store']}; seeded in "
        f"{fleet['seed_seconds']} s)"
    )
    print(
        f"server time per render, {figures['requests_per_page']} requests each (ms; cpu: the "
        "process's CPU time per request)"
    )
    print(
        f"  {'page':<30} {'p50':>6} {'p90':>6} {'p99':>6} {'max':>6} {'cpu p50':>8} "
        f"{'cpu p99':>8} {'bytes':>8}"
    )
    for name, page in figures["pages"].items():
        print(
            f"  {name:<30} {page['p50_ms']:>6} {page['p90_ms']:>6} {page['p99_ms']:>6} "
            f"{page['max_ms']:>6} {page['cpu_p50_ms']:>8} {page['cpu_p99_ms']:>8} "
            f"{page['bytes']:>8,}"
        )
    worst = max(figures["pages"][name]["p99_ms"] for name in ("overview", "host page"))
    verdict = "met" if worst < figures["target_ms"] else "MISSED"
    print(f"target: overview and host page p99 < {figures['target_ms']:.0f} ms: {verdict}")
    print(f"load average at the end: {figures['load_average']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=positive_int, default=10_000)
    parser.add_argument(
        "--call-every", type=positive_int, default=5, help="every Nth host has an open call"
    )
    parser.add_argument("--stale", type=int, default=100, help="hosts that stopped reporting")
    parser.add_argument("--requests", type=positive_int, default=50, help="per page")
    parser.add_argument("--batch", type=positive_int, default=200, help="reports per batch")
    parser.add_argument("--dsn", default="", help="a PostgreSQL store instead of SQLite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    return parser


def main() -> int:
    args = build_parser().parse_args()
    return 0 if run_and_show(run, args, print_figures) is not None else 1


if __name__ == "__main__":
    sys.exit(main())
