"""Service states at 10,000 hosts in 200 services: the cost of one evaluation tick's services
pass, in process (no collector, no store), and the longest slice it holds the event loop.

The fleet: HOSTS hosts named `sNNN-hMM` (each service's own hosts), with RULES rule states each
(180,000 at the defaults), a share of them problems (`--problems`). The services: one per
block of hosts, of two components: its hosts by glob with every rule, need all but one; and a
label component (`tier=front`) on a few of them with two rules, need any. Every tenth service
depends on the one before it. Progress goes to stderr, figures to stdout.

    python bench/services.py                     # ~10 s
    python bench/services.py --hosts 2000 --services 50 --json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.config import collector_config_from_dict
from collector.evaluation.rules import RuleState, Severity
from collector.evaluation.tick import settle_garbage_collector
from collector.services.watch import ServiceWatch
from collector.store.records import HostRecord
from collector.view.fleet import Fleet, HostState

SLICE = 0.002  # the tick's slice in the collector (collector/api/lifespan.py TICK_SLICE)


def build(hosts: int, services: int, rules: int, problems: float, seed: int) -> tuple[Any, Fleet]:
    rng = random.Random(seed)
    per = max(1, hosts // services)
    rule_names = [f"rule_{i:02d}" for i in range(rules)]
    config = collector_config_from_dict(
        {
            "sinks": {"desk": {"type": "builtin"}},
            "groups": {"ops": {"sink": "desk", "assign": "Operations"}},
            "rules": [
                {"name": name, "metric": f"m_{name}", "owner": "ops", "warning": 1}
                for name in rule_names
            ],
            "services": {
                f"s{i:03d}": {
                    "owner": "ops",
                    "title": f"Service {i}",
                    "components": [
                        {"hosts": [f"s{i:03d}-h*"], "need": max(1, per - 1)},
                        {
                            "labels": {"tier": "front", "service": f"s{i:03d}"},
                            "rules": rule_names[:2],
                            "need": "any",
                        },
                    ],
                    "depends_on": [f"s{i - 1:03d}"] if i % 10 == 9 else [],
                }
                for i in range(services)
            },
        }
    )
    fleet = Fleet()
    now = time.time()
    for n in range(hosts):
        name = f"s{n // per % services:03d}-h{n % per:02d}"
        labels = {"service": name.split("-", maxsplit=1)[0]}
        if n % per < 3:
            labels["tier"] = "front"
        fleet.hosts[name] = HostState(HostRecord(name, now, now, 60.0, "bench", "b", 1, labels))
        for rule in rule_names:
            severity = Severity.OK
            if rng.random() < problems:
                severity = rng.choice([Severity.WARNING, Severity.CRITICAL, Severity.UNKNOWN])
            fleet.states[(rule, name, "{}")] = RuleState(severity=severity, changed_at=now)
    return config, fleet


def run(args: argparse.Namespace) -> dict[str, Any]:
    print(f"building {args.hosts} hosts, {args.services} services ...", file=sys.stderr)
    config, fleet = build(args.hosts, args.services, args.rules, args.problems, args.seed)
    watch = ServiceWatch(config, fleet, lambda host, rule, now: False)
    settle_garbage_collector()  # as the collector does after each tick: the fleet is frozen
    figures: dict[str, Any] = {
        "hosts": len(fleet.hosts),
        "services": len(config.services),
        "rule_states": len(fleet.states),
    }
    for label in ("first tick (every host matched)", "later ticks"):
        totals, longest = [], []
        for _ in range(1 if label.startswith("first") else args.ticks):
            slices = []
            began = time.perf_counter()
            steps = watch.steps(time.time(), SLICE)
            while True:
                one = time.perf_counter()
                try:
                    next(steps)
                except StopIteration:
                    slices.append(time.perf_counter() - one)
                    break
                slices.append(time.perf_counter() - one)
            totals.append(time.perf_counter() - began)
            longest.append(max(slices))
        figures[label] = {
            "work_ms_median": round(1000 * statistics.median(totals), 1),
            "work_ms_max": round(1000 * max(totals), 1),
            "longest_slice_ms": round(1000 * max(longest), 2),
            "slices": len(slices),
        }
    states: dict[str, int] = {}
    for status in watch.statuses.values():
        states[status.state.word] = states.get(status.state.word, 0) + 1
    figures["states"] = states
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--rules", type=int, default=18, help="rule states per host")
    parser.add_argument("--problems", type=float, default=0.01, help="share of states not OK")
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = run(args)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:34} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
