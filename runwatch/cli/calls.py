"""`runwatch calls`: list the calls of the built-in register, or the dead letters."""

from __future__ import annotations

import argparse
from typing import Any

from runwatch.cli.common import add_collector_options, collector_get, print_rows, when
from runwatch.cli.outbox import print_outbox


def cmd_calls(args: argparse.Namespace) -> int:
    if args.dead:
        return print_outbox(args.collector, "dead", args.json, args.limit)
    params = {"status": "open" if args.open else "all", "limit": str(args.limit)}
    if args.group:
        params["group"] = args.group
    calls = collector_get(args.collector, "/api/v1/calls", params)
    empty = "no calls" if not args.open else "no open calls"
    header = f"{'ID':>5}  {'STATUS':8}  {'PRIORITY':8}  {'GROUP':24}  {'OPENED':16}  SUMMARY"
    return print_rows(calls, args.json, empty, header, _call_row)


def _call_row(call: dict[str, Any]) -> str:
    return (
        f"{call['id']:>5}  {call['status']:8}  {call['priority']:8}  "
        f"{call['group'][:24]:24}  {when(call['opened_at']):16}  {call['summary']}"
    )


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
