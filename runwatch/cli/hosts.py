"""`runwatch host list|retire|restore`: the hosts the collector knows, and their end of life."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from runwatch.cli.common import (
    EXIT_OK,
    add_collector_options,
    add_command,
    ago,
    collector_get,
    collector_send,
    operator_token,
)
from runwatch.cli.output import Column, print_json, print_table


def cmd_host(args: argparse.Namespace) -> int:
    """Retiring a host resolves its open calls with a note saying who retired it and why, drops
    its series from /metrics and the fleet, keeps its history for the reports, and makes the
    collector refuse its reports (409) until `runwatch host restore` or a new deploy. Changes
    need an operator token."""
    if args.host_action == "list":
        params = {"all": "true"} if args.all else None
        hosts = collector_get(args.collector, "/api/v1/hosts", params)
        if args.json:
            return print_json([_summary(h) for h in hosts])
        _print_hosts(hosts, time.time())
        return EXIT_OK
    token = operator_token(args)
    from urllib.parse import quote

    path = f"/api/v1/hosts/{quote(args.host, safe='')}/{args.host_action}"
    answer = collector_send(args.collector, path, "POST", token, {"reason": args.reason})
    if args.json:
        print(json.dumps(answer, indent=2))
    elif args.host_action == "retire":
        print(f"host {args.host} retired by {answer['retired_by']}: {_retired_text(answer)}")
    else:
        print(f"host {args.host} restored: its reports are taken again")
    return EXIT_OK


def _retired_text(answer: dict[str, Any]) -> str:
    from runwatch import units

    why = f" ({answer['reason']})" if answer.get("reason") else ""
    return f"on {units.timestamp(answer['retired_at'])}{why}; its open calls are resolved"


def _summary(host: dict[str, Any]) -> dict[str, Any]:
    """What `host list --json` shows of a host: its state, last report, agent and labels."""
    keys = ("host", "state", "last_report_at", "first_seen", "agent_version", "labels")
    out = {key: host.get(key) for key in keys}
    out["problems"] = len(host.get("problems", ()))
    if "retired" in host:
        out["retired"] = host["retired"]
    return out


def _print_hosts(hosts: list[dict[str, Any]], now: float) -> None:
    def labels(host: dict[str, Any]) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted((host.get("labels") or {}).items())) or "-"

    def retired(host: dict[str, Any]) -> str:
        gone = host.get("retired")
        if not gone:
            return ""
        why = f" ({gone['reason']})" if gone.get("reason") else ""
        return f"retired {ago(gone['at'], now)} by {gone['by']}{why}"

    columns = [
        Column("host", lambda h: h["host"]),
        Column("state", lambda h: h["state"], coloured=True),
        Column("last report", lambda h: ago(h.get("last_report_at"), now)),
        Column("agent", lambda h: h.get("agent_version") or "-"),
        Column("labels", labels),
    ]
    if any(host.get("retired") for host in hosts):
        columns.append(Column("retired", retired))
    print_table(hosts, columns, empty="no hosts have reported")


def register(sub: Any) -> None:
    host = add_command(sub, "host", cmd_host, "hosts: list them, retire one, restore one")
    actions = host.add_subparsers(dest="host_action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="every host with its state, last report, agent version and labels"
    )
    listing.add_argument("--all", action="store_true", help="include retired hosts")
    retire = actions.add_parser(
        "retire", help="retire a host: resolve its calls, drop its series, refuse its reports"
    )
    restore = actions.add_parser("restore", help="take a retired host's reports again")
    for command in (retire, restore):
        command.add_argument("host", help="the host's name")
        command.add_argument("--reason", default="", help="why: recorded with your operator name")
    for command in (listing, retire, restore):
        add_collector_options(command, changes=command is not listing)
