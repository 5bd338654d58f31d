"""`runwatch call ack|comment|resolve`: handle one call of the built-in register by hand."""

from __future__ import annotations

import argparse
import json
from typing import Any

from runwatch.cli.common import (
    EXIT_OK,
    CommandError,
    add_collector_options,
    add_command,
    collector_send,
    operator_token,
)


def cmd_call(args: argparse.Namespace) -> int:
    """Handle one call of the built-in register by hand, as the console does. Needs an operator
    token (not a read-only one); each action is recorded with your operator name in the call's
    history and the audit log. Calls in an external help desk are handled there."""
    token = operator_token(args)
    action = {"ack": "acknowledge", "comment": "comment", "resolve": "resolve"}[args.call_verb]
    text = getattr(args, "text", None) or ""
    if args.call_verb == "comment" and not text.strip():
        raise CommandError("say what to comment: --text TEXT")
    body = None if action == "acknowledge" else {"text": text}
    call = collector_send(args.collector, f"/api/v1/calls/{args.id}/{action}", "POST", token, body)
    if args.json:
        print(json.dumps(call, indent=2))
    else:
        done = {"acknowledge": "acknowledged", "comment": "commented on", "resolve": "resolved"}[
            action
        ]
        print(f"call {call['id']} {done}: {call['summary']}")
    return EXIT_OK


def register(sub: Any) -> None:
    call = add_command(
        sub,
        "call",
        cmd_call,
        "acknowledge, comment on or resolve a call in the built-in register",
        epilog="Exit codes: 0 done, 1 refused or the collector unreachable.",
    )
    verbs = call.add_subparsers(dest="call_verb", required=True, metavar="VERB")
    ack = verbs.add_parser(
        "ack", help="acknowledge: someone is on it (say more with `runwatch call comment`)"
    )
    comment = verbs.add_parser("comment", help="add a comment")
    comment.add_argument("--text", required=True, help="the comment")
    resolve = verbs.add_parser(
        "resolve", help="resolve by hand; a problem that persists opens a new call"
    )
    resolve.add_argument("--text", help="a note that goes with it")
    for command in (ack, comment, resolve):
        command.add_argument("id", type=int, help="the call's number")
        add_collector_options(command, changes=True, json_help="print the call as JSON")
