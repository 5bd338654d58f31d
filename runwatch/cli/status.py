"""`runwatch status`: the hosts a collector knows, their states and problems."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from runwatch.cli.common import EXIT_OK, add_collector_options, collector_get


def cmd_status(args: argparse.Namespace) -> int:
    hosts = collector_get(args.collector, "/api/v1/hosts")
    open_calls = collector_get(args.collector, "/api/v1/calls", {"status": "open"})
    if args.json:
        print(
            json.dumps(
                {
                    "hosts": [{k: v for k, v in h.items() if k != "measurements"} for h in hosts],
                    "open_calls": len(open_calls),
                },
                indent=2,
            )
        )
        return EXIT_OK
    if not hosts:
        print("no hosts have reported yet")
    for host in hosts:
        age = time.time() - host["last_report_at"]
        failing = [c["check"] for c in host["checks"] if c["error"]]
        extra = f"  failing checks: {', '.join(failing)}" if failing else ""
        print(
            f"{host['host']:30} {host['state']:9} last report {age:6.0f}s ago  "
            f"{len(host['problems'])} problem(s){extra}"
        )
        for problem in host["problems"]:
            labels = ",".join(f"{k}={v}" for k, v in sorted(problem["labels"].items()))
            marks = [word for word in ("flapping", "silenced") if problem.get(word)]
            if problem.get("in_parent_call"):
                marks.append(f"in call {problem['in_parent_call']}")
            extra = f"  ({', '.join(marks)})" if marks else ""
            print(f"    {problem['state']:9} {problem['rule']} {labels}{extra}")
    print(f"{len(open_calls)} open call(s)")
    return EXIT_OK


def register(sub: Any) -> None:
    text = "show hosts, their states and problems"
    command = sub.add_parser(
        "status", help=text, description="Show hosts, their states and problems."
    )
    add_collector_options(command)
    command.set_defaults(func=cmd_status)
