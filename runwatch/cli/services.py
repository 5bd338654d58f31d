"""`runwatch services`: each service's state as its users know it, and what is wrong with it."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from runwatch.cli.common import EXIT_OK, add_collector_options, add_command, collector_get


def cmd_services(args: argparse.Namespace) -> int:
    """A service is operational, in maintenance (all that is wrong with it is covered by a
    silence or maintenance window), degraded or in outage, from the states of the rules on its
    hosts and of the services it depends on (see the collector config's `services`)."""
    services = collector_get(args.collector, "/api/v1/services")
    if args.json:
        print(json.dumps(services, indent=2))
        return EXIT_OK
    if not services:
        print("no services are configured (see `services:` in the collector config)")
        return EXIT_OK
    _print_services(services, time.time())
    return EXIT_OK


def causes(service: dict[str, Any]) -> list[str]:
    """What makes a service less than operational, in words: the dependencies that are not
    operational, then each component's problems."""
    out = [
        f"depends on {d['service']} ({d['state']})"
        for d in service["depends_on"]
        if d["state"] != "operational"
    ]
    for component in service["components"]:
        if component["state"] == "operational":
            continue
        if component["service"] is not None:
            out.append(f"{component['name']} ({component['state']})")
            continue
        if component["members"] == 0:
            out.append(f"{component['name']}: matches no host")
            continue
        for problem in component["problems"]:
            labels = ",".join(f"{k}={v}" for k, v in sorted(problem["labels"].items()))
            where = f" {{{labels}}}" if labels else ""
            planned = " (in a window)" if problem["planned"] else ""
            out.append(f"{problem['host']}: {problem['rule']}{where} {problem['state']}{planned}")
    return out


def _print_services(services: list[dict[str, Any]], now: float) -> None:
    from runwatch import units

    width = max(len("SERVICE"), *(len(s["service"]) for s in services))
    owner_width = max(len("OWNER"), *(len(s["owner"]) for s in services))
    print(f"{'SERVICE':{width}}  {'STATE':11}  {'SINCE':14}  {'OWNER':{owner_width}}  WHY")
    for service in services:
        since = units.ago(service["since"], now) if service.get("since") else "-"
        why = causes(service)
        print(
            f"{service['service']:{width}}  {service['state']:11}  {since:14}  "
            f"{service['owner']:{owner_width}}  {why[0] if why else '-'}"
        )
        indent = " " * (width + 2 + 11 + 2 + 14 + 2 + owner_width + 2)
        for line in why[1:]:
            print(f"{indent}{line}")


def register(sub: Any) -> None:
    command = add_command(
        sub, "services", cmd_services, "show services as users know them, and their states"
    )
    add_collector_options(command)
