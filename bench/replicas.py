#!/usr/bin/env python3
"""Two collector replicas on one PostgreSQL: steady latency per replica, the takeover after a
kill -9 of the leader, and how throughput grows from one replica to two.

Three runs of bench/fleet.py --realistic --store postgresql, one after the other:

1. steady and kill: two collectors, `--agents` in all (half through each), every `--interval`;
   the p99 from each report's due time per replica, CPU ms per report per replica, what a
   report costs PostgreSQL; then SIGKILL of the replica that runs the evaluation (the
   leader) and the seconds until every report is answered within 1 s of its due time again
   (the survivor's lag under 1 s), with the chaos counts (acknowledged but lost, duplicates);
2. and 3. throughput: one collector, then two, offered `--overload` reports/s (more than they
   can take): the reports/s answered is what they can take.

Run from the repo root (issue 22's figures; needs a quiet machine, as every load figure does):

    python bench/replicas.py --agents 10000 --interval 60 --seconds 240 --kill-after 120
    python bench/replicas.py --agents 600 --interval 10 --seconds 60 --kill-after 25 \
        --overload 150 --overload-seconds 40   # short: proves it works, judges nothing

Everything runs on loopback and stops by itself; each run makes and drops its own schema.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

FLEET = Path(__file__).resolve().parent / "fleet.py"


def fleet(*arguments: str, dsn: str | None) -> dict[str, Any]:
    """Run bench/fleet.py --realistic --store postgresql with these arguments; its figures."""
    command = [
        sys.executable,
        str(FLEET),
        "--realistic",
        "--store",
        "postgresql",
        "--json",
        *arguments,
        *(["--dsn", dsn] if dsn else []),
    ]
    print(f"[replicas] {' '.join(command[1:])}", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"fleet.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10000, help="agents in all")
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=240.0, help="the steady and kill run")
    parser.add_argument("--kill-after", type=float, default=120.0, metavar="S")
    parser.add_argument(
        "--overload", type=float, default=600.0, help="reports/s offered in the throughput runs"
    )
    parser.add_argument("--overload-seconds", type=float, default=90.0)
    parser.add_argument("--dsn", default=os.environ.get("RUNWATCH_BENCH_PG_DSN"))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    kill = fleet(
        "--collectors",
        "2",
        "--agents",
        str(args.agents),
        "--interval",
        f"{args.interval:g}",
        "--seconds",
        f"{args.seconds:g}",
        "--kill-after",
        f"{args.kill_after:g}",
        dsn=args.dsn,
    )
    # Overload: agents such that agents / interval is the rate offered.
    overload_interval = 10.0
    agents = str(round(args.overload * overload_interval))
    throughput = {
        replicas: fleet(
            "--collectors",
            str(replicas),
            "--agents",
            agents,
            "--interval",
            f"{overload_interval:g}",
            "--seconds",
            f"{args.overload_seconds:g}",
            dsn=args.dsn,
        )
        for replicas in (1, 2)
    }
    figures = {
        "agents": args.agents,
        "interval_seconds": args.interval,
        "per_replica_before_kill": kill["per_collector"],
        "postgresql_per_report": kill["postgresql_per_report"],
        "kill": {
            "leader": kill["kill"]["leader"],
            "caught_up_after_s": kill["kill"]["after"]["caught_up_after_s"],
            "after": kill["kill"]["after"],
            "acknowledged_but_lost": kill["kill"]["acknowledged_but_lost"],
            "duplicate_open_calls": kill["kill"]["duplicate_open_calls"],
            "keys_with_two_open_tickets": kill["kill"]["keys_with_two_open_tickets"],
            "takeovers": kill["kill"]["takeovers"],
        },
        "throughput": {
            str(replicas): {
                "offered": f["planned_reports_per_second"],
                "answered": f["reports_per_second"],
                "cpu_ms_per_report": [c["cpu_ms_per_report"] for c in f["per_collector"]],
            }
            for replicas, f in throughput.items()
        },
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"runwatch replicas: {args.agents} agents every {args.interval:g}s over 2 replicas")
    for number, replica in enumerate(figures["per_replica_before_kill"]):
        due = replica["from_schedule_ms"]
        print(
            f"  replica {number}       {replica['reports_per_second']} reports/s, p50 {due['p50']} "
            f"ms, p99 {due['p99']} ms from schedule; CPU {replica['cpu_ms_per_report']} ms "
            "per report"
        )
    k = figures["kill"]
    print(
        f"  kill -9         of {'the leader' if k['leader'] else 'a follower (!)'}: lag under "
        f"1 s again {k['caught_up_after_s']} s after it; after it p99 "
        f"{k['after']['latency_ms']['p99']} ms, {k['after']['reports_per_second']} reports/s; "
        f"acknowledged but lost {k['acknowledged_but_lost']}, duplicate open calls "
        f"{k['duplicate_open_calls']}, keys with two open tickets "
        f"{k['keys_with_two_open_tickets']}"
    )
    for line in k["takeovers"]:
        print(f"                  {line}")
    one, two = figures["throughput"]["1"], figures["throughput"]["2"]
    print(
        f"  throughput      offered {one['offered']} reports/s: one replica answered "
        f"{one['answered']}/s, two answered {two['answered']}/s "
        f"({two['answered'] / max(one['answered'], 1e-9):.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
