#!/usr/bin/env python3
"""CPU per report of ingest, store and evaluation alone (no HTTP, no decoding), in process.

The realistic reports of bench/fleet.py --realistic (55 labelled values, all changing, 8 check
runs), from `--hosts` hosts for `--rounds` intervals of simulated time, handed to the
collector service in batches as the HTTP server would, with a tick between intervals. The
CPU time of this process (time.process_time, which other work on the machine does not
inflate much, unlike wall-clock latency) is divided by the reports of the measured rounds
(the first `--warmup` rounds, which create series and states, are left out).

Spikes (`--spikes`, a share of values far off their range) make rules change state and
recover: those states keep their recent changes for the flapping window, as a real fleet's do.

Run from the repo root:

    python bench/ingest_cpu.py --hosts 500 --rounds 20
    python bench/ingest_cpu.py --hosts 500 --rounds 20 --store postgresql
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(BENCH_DIR.parent) not in sys.path:
    sys.path.append(str(BENCH_DIR.parent))
from bench import fleet as fleet_bench  # noqa: E402
from bench.common import load_ingest_module, show  # noqa: E402


class SimulatedClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg
    import yaml

    from checks.schema import decode_report
    from collector.app import CollectorService
    from collector.config import load_collector_config

    ingest = load_ingest_module()
    ingest.SPIKE_PROBABILITY = args.spikes
    troubled = fleet_bench.realistic_series(ingest, True)
    healthy = fleet_bench.realistic_series(ingest, False)
    rng = random.Random(1)
    hosts = [f"host{n:05d}" for n in range(args.hosts)]
    factories = [
        ingest.ReportFactory(
            host, troubled if n < 0.05 * args.hosts else healthy, random.Random(rng.random())
        )
        for n, host in enumerate(hosts)
    ]
    schema = None
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-ingest-cpu-") as tmp:
        collector = ingest.prepare_collector(Path(tmp), instant_rule=False)
        config = yaml.safe_load(collector.config_path.read_text())
        if args.store == "postgresql":
            schema = f"runwatch_bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(args.dsn, autocommit=True) as admin:
                admin.execute(f'CREATE SCHEMA "{schema}"')
            config["store"] = {
                "backend": "postgresql",
                "dsn": f"{args.dsn} options='-c search_path={schema}'",
            }
        collector.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        clock = SimulatedClock()
        service = CollectorService(load_collector_config(collector.config_path), clock=clock)
        try:
            measured = 0.0
            reports = 0
            for round_number in range(args.rounds):
                bodies = [decode_report(factory.next_body(clock.now)) for factory in factories]
                began = time.process_time()
                for start in range(0, len(bodies), args.batch):
                    part = bodies[start : start + args.batch]
                    service.ingest_many([(r.host, r, None) for r in part])
                service.tick()
                spent = time.process_time() - began
                if round_number >= args.warmup:
                    measured += spent
                    reports += len(bodies)
                clock.now += args.interval
            states = list(service.fleet.states.values())
        finally:
            service.close()
            if schema is not None:
                with psycopg.connect(args.dsn, autocommit=True) as admin:
                    admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return {
        "store": args.store,
        "hosts": args.hosts,
        "rounds_measured": args.rounds - args.warmup,
        "batch": args.batch,
        "spikes": args.spikes,
        "reports": reports,
        "cpu_ms_per_report": round(measured * 1000 / reports, 3) if reports else None,
        "rule_states": len(states),
        "states_with_recent_changes": sum(1 for s in states if s.changes),
    }


def print_figures(f: dict[str, Any]) -> None:
    print(
        f"runwatch ingest CPU: {f['hosts']} hosts, {f['rounds_measured']} intervals measured, "
        f"batches of {f['batch']}, on {f['store']}; spikes {f['spikes']:g}"
    )
    print(
        f"  CPU             {f['cpu_ms_per_report']} ms per report (ingest, store, evaluation "
        "and the tick; no HTTP, no decoding)"
    )
    print(
        f"  rule states     {f['rule_states']}, {f['states_with_recent_changes']} with changes "
        "in their flapping window"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20, help="intervals of simulated time")
    parser.add_argument("--warmup", type=int, default=3, help="first rounds left out")
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=8, help="reports per ingest_many")
    parser.add_argument("--spikes", type=float, default=0.002)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--dsn", default=fleet_bench.DEFAULT_DSN)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    show(run(args), args.json, print_figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
