"""`runwatch silence add|preview|list|remove`: maintenance windows that hold back calls."""

from __future__ import annotations

import argparse
import json
import shlex
import time
from typing import Any

from runwatch import units
from runwatch.cli.common import (
    EXIT_OK,
    CommandError,
    add_collector_options,
    add_command,
    ago,
    collector_get,
    collector_send,
    duration_arg,
    operator_token,
    when,
)
from runwatch.cli.output import Column, print_json, print_table


def cmd_silence(args: argparse.Namespace) -> int:
    """While a silence is in force, matching rules are still evaluated and shown, but no call is
    opened or changed; when it ends, a problem still there gets its call. Changes need an operator
    token."""
    if args.silence_action == "preview":
        reach = collector_get(
            args.collector, "/api/v1/silences/preview", {"host": args.host, "rule": args.rule}
        )
        if args.json:
            print(json.dumps(reach, indent=2))
        else:
            _print_reach(reach)
        return EXIT_OK
    if args.silence_action == "list":
        params = {"include_ended": "true"} if args.all else None
        silences = collector_get(args.collector, "/api/v1/silences", params)
        if args.json:
            return print_json(silences)
        _print_silences(silences, time.time())
        return EXIT_OK
    token = operator_token(args)
    if args.silence_action == "add":
        return _add(args, token)
    ended = collector_send(args.collector, f"/api/v1/silences/{args.id}", "DELETE", token)
    if args.json:
        print(json.dumps(ended, indent=2))
    else:
        print(
            f"silence {ended['id']} ended by {ended['ended_by']}; problems still there get "
            "their calls now"
        )
    return EXIT_OK


def _add(args: argparse.Namespace, token: str) -> int:
    body = {
        "host": args.host,
        "rule": args.rule,
        "duration": float(args.duration),
        "reason": args.reason,
        "confirm_fleet_share": args.confirm_fleet_share,
    }
    try:
        silence = collector_send(args.collector, "/api/v1/silences", "POST", token, body)
    except CommandError as exc:
        if "silences.confirm_over" in str(exc):
            raise CommandError(
                f"{exc}\nsee what it matches with `runwatch silence preview --host "
                f"{shlex.quote(args.host)} --rule {shlex.quote(args.rule)}`; to save it "
                "the same, add --confirm-fleet-share"
            ) from None
        raise
    if args.json:
        print(json.dumps(silence, indent=2))
    else:
        print(
            f"silence {silence['id']}: host {silence['host']} rule {silence['rule']} "
            f"until {when(silence['ends_at'])} UTC, set by {silence['created_by']}"
        )
    return EXIT_OK


def _print_reach(reach: dict[str, Any]) -> None:
    share = units.percent(reach["share"])
    print(
        f"host {reach['host']} rule {reach['rule']}: {reach['host_count']} of "
        f"{reach['fleet_size']} hosts ({share} of the fleet), {len(reach['rules'])} rules"
    )
    print("hosts: " + (", ".join(reach["hosts"]) or "(none now)"))
    if reach["hosts_not_listed"]:
        print(f"       and {reach['hosts_not_listed']} more")
    print("rules: " + (", ".join(reach["rules"]) or "(none: the silence holds nothing back)"))
    if reach["needs_confirmation"]:
        print(
            f"more than {units.percent(reach['confirm_over'])} of the fleet "
            "(silences.confirm_over): `silence add` needs --confirm-fleet-share"
        )


def _print_silences(silences: list[dict[str, Any]], now: float) -> None:
    def until(item: dict[str, Any]) -> str:
        return ago(item["ends_at"], now) if item["ends_at"] is not None else "(weekly)"

    def by(item: dict[str, Any]) -> str:
        ended = f", ended by {item['ended_by']}" if item.get("ended_by") else ""
        return f"{item['created_by']}{ended}"

    columns = [
        Column("id", lambda i: str(i["id"]) if i["id"] is not None else i["name"], right=True),
        Column("active", lambda i: "yes" if i["active"] else "no"),
        Column("host", lambda i: i["host"]),
        Column("rule", lambda i: i["rule"]),
        Column("from", lambda i: ago(i.get("starts_at"), now)),
        Column("until", until),
        Column("by", by),
        Column("reason", lambda i: i["reason"]),
    ]
    print_table(silences, columns, empty="no silences or maintenance windows")


def register(sub: Any) -> None:
    silence = add_command(
        sub, "silence", cmd_silence, "maintenance windows: hold back calls for hosts and rules"
    )
    actions = silence.add_subparsers(dest="silence_action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="silence matching hosts and rules for a while")
    preview = actions.add_parser(
        "preview", help="which hosts and rules a silence would match now (nothing is saved)"
    )
    for command in (add, preview):
        command.add_argument(
            "--host",
            required=True,
            metavar="PATTERN",
            help="host name or glob, e.g. web01 or web* ('*' is every host: say so)",
        )
        command.add_argument(
            "--rule",
            required=True,
            metavar="PATTERN",
            help="rule name or glob, e.g. filesystem_* or host_stale ('*' is every rule)",
        )
    add.add_argument(
        "--for", dest="duration", type=duration_arg, required=True, help="how long, e.g. 30m or 2h"
    )
    add.add_argument("--reason", required=True, help="why: recorded with your operator name")
    add.add_argument(
        "--confirm-fleet-share",
        action="store_true",
        help="the silence matches more than silences.confirm_over of the fleet's hosts: "
        "save it anyway",
    )
    listing = actions.add_parser("list", help="list silences and weekly maintenance windows")
    listing.add_argument("--all", action="store_true", help="include silences that have ended")
    remove = actions.add_parser("remove", help="end a silence now")
    remove.add_argument("id", type=int, help="the silence's ID (see silence list)")
    for command in (add, preview, listing, remove):
        add_collector_options(command, changes=command in (add, remove))
