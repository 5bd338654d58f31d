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
    collector_get,
    collector_send,
    operator_token,
)


def cmd_host(args: argparse.Namespace) -> int:
    """Retiring a host resolves its open calls with a note saying who retired it and why, drops
    its series from /metrics and the fleet, keeps its history for the reports, and makes the
    collector refuse its reports (409) until `runwatch host restore` or a new deploy. Changes
    need an operator token."""
    if args.host_action == "list":
        params = {"all": "true"} if args.all else None
        hosts = collector_get(args.collector, "/api/v1/hosts", params)
        if args.json:
            print(json.dumps([_summary(h) for h in hosts], indent=2))
        else:
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
    from runwatch import units

    if not hosts:
        print("no hosts have reported")
        return
    print(f"{'HOST':24}  {'STATE':8}  {'LAST REPORT':14}  {'AGENT':10}  LABELS")
    for host in hosts:
        last = host.get("last_report_at")
        labels = ",".join(f"{k}={v}" for k, v in sorted((host.get("labels") or {}).items()))
        line = (
            f"{host['host'][:24]:24}  {host['state']:8}  "
            f"{units.ago(last, now) if last is not None else '-':14}  "
            f"{(host.get('agent_version') or '-')[:10]:10}  {labels or '-'}"
        )
        retired = host.get("retired")
        if retired:
            why = f" ({retired['reason']})" if retired.get("reason") else ""
            line += f"  retired {units.ago(retired['at'], now)} by {retired['by']}{why}"
        print(line)


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
