"""`runwatch calls`: list the calls of the built-in register, or the dead letters."""

from __future__ import annotations

import argparse
import time
from typing import Any

from runwatch.cli.common import EXIT_OK, add_collector_options, ago, collector_get
from runwatch.cli.outbox import print_outbox
from runwatch.cli.output import Column, print_json, print_table


def cmd_calls(args: argparse.Namespace) -> int:
    if args.dead:
        return print_outbox(args.collector, "dead", args.json, args.limit)
    params = {"status": "open" if args.open else "all", "limit": str(args.limit)}
    if args.group:
        params["group"] = args.group
    calls = collector_get(args.collector, "/api/v1/calls", params)
    if args.json:
        return print_json(calls)
    now = time.time()
    columns = [
        Column("id", lambda c: str(c["id"]), right=True),
        Column("status", lambda c: c["status"], coloured=True),
        Column("severity", lambda c: c["severity"], coloured=True),
        Column("priority", lambda c: c["priority"]),
        Column("group", lambda c: c["group"]),
        Column("host", lambda c: c["host"]),
        Column("opened", lambda c: ago(c["opened_at"], now)),
        Column("summary", lambda c: c["summary"]),
    ]
    print_table(calls, columns, empty="no calls" if not args.open else "no open calls")
    return EXIT_OK


def register(sub: Any) -> None:
    text = "list calls in the built-in register"
    command = sub.add_parser("calls", help=text, description="List calls in the built-in register.")
    add_collector_options(command)
    command.add_argument("--open", action="store_true", help="only open calls")
    command.add_argument(
        "--dead", action="store_true", help="operations a help desk refused (dead letters)"
    )
    command.add_argument("--group", help="only calls owned by this group")
    command.add_argument(
        "--limit",
        type=int,
        default=200,
        help="at most this many, newest first (default: %(default)s)",
    )
    command.set_defaults(func=cmd_calls)
