"""`runwatch call ack|comment|resolve|silence ID...`: handle calls by hand, one or many."""

from __future__ import annotations

import argparse
import json
from typing import Any

from runwatch.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CommandError,
    add_collector_options,
    add_command,
    collector_send,
    duration_arg,
    operator_token,
)

_ACTIONS = {"ack": "acknowledge", "comment": "comment", "resolve": "resolve", "silence": "silence"}
_DONE = {"acknowledge": "acknowledged", "comment": "commented on", "resolve": "resolved"}
CONFIRM_HINT = "to silence them all the same, add --confirm-fleet-share"


def cmd_call(args: argparse.Namespace) -> int:
    """Handle calls by hand, as the console does: acknowledge, comment on or resolve calls of
    the built-in register, or silence the host and rule of any call for a while. Give one
    call's number or several; each call is done and recorded (call history, audit log, with
    your operator name) on its own, and a call that is refused does not stop the others.
    Needs an operator token (not a read-only one). Calls in an external help desk are
    acknowledged and resolved there."""
    token = operator_token(args)
    action = _ACTIONS[args.call_verb]
    text = getattr(args, "text", None) or ""
    if action == "comment" and not text.strip():
        raise CommandError("say what to comment: --text TEXT")
    if len(args.ids) == 1 and action != "silence":
        return _one(args, token, action, text)
    body: dict[str, Any] = {"action": action, "ids": args.ids, "text": text}
    if action == "silence":
        body.update(
            duration=float(args.duration),
            reason=args.reason,
            confirm_fleet_share=args.confirm_fleet_share,
        )
    try:
        answer = collector_send(args.collector, "/api/v1/calls/bulk", "POST", token, body)
    except CommandError as exc:
        if "silences.confirm_over" in str(exc):
            raise CommandError(f"{exc}\n{CONFIRM_HINT}") from None
        raise
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        for outcome in answer["calls"]:
            said = "" if outcome["done"] else "refused: "
            print(f"call {outcome['id']} {said}{outcome['message']}")
        print(f"{answer['done']} done, {answer['refused']} refused")
    return EXIT_OK if answer["refused"] == 0 else EXIT_FAILED


def _one(args: argparse.Namespace, token: str, action: str, text: str) -> int:
    """One call, through its own endpoint: the answer is the call."""
    body = None if action == "acknowledge" else {"text": text}
    call_id = args.ids[0]
    call = collector_send(args.collector, f"/api/v1/calls/{call_id}/{action}", "POST", token, body)
    if args.json:
        print(json.dumps(call, indent=2))
    else:
        print(f"call {call['id']} {_DONE[action]}: {call['summary']}")
    return EXIT_OK


def register(sub: Any) -> None:
    call = add_command(
        sub,
        "call",
        cmd_call,
        "acknowledge, comment on, resolve or silence calls",
        epilog="Exit codes: 0 done, 1 refused (for any of the calls) or the collector unreachable.",
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
    silence = verbs.add_parser(
        "silence", help="silence each call's host and rule for a while (a silence per call)"
    )
    silence.add_argument(
        "--for", dest="duration", type=duration_arg, required=True, help="how long, e.g. 2h"
    )
    silence.add_argument("--reason", required=True, help="why: recorded with your operator name")
    silence.add_argument(
        "--confirm-fleet-share",
        action="store_true",
        help="the calls lie on more than silences.confirm_over of the fleet's hosts: "
        "silence them anyway",
    )
    for command in (ack, comment, resolve, silence):
        command.add_argument("ids", type=int, nargs="+", metavar="ID", help="call numbers")
        add_collector_options(
            command, changes=True, json_help="print the call (or, for several, each outcome)"
        )
