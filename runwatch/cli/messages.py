"""`runwatch status-message post|update|end|list`: the status page's messages for users."""

from __future__ import annotations

import argparse
import json
from typing import Any

from runwatch.cli.common import (
    EXIT_OK,
    add_collector_options,
    add_command,
    collector_get,
    collector_send,
    operator_token,
    when,
)

PATH = "/api/v1/status/messages"


def cmd_status_message(args: argparse.Namespace) -> int:
    """Messages on the status page (/status) about an ongoing problem, in the users' words: about
    one service (--service) or every service. Users see the text and when it was posted, never
    who posted it. Changes need an operator token and go into the audit log."""
    action = args.status_message_action
    if action == "list":
        messages = collector_get(
            args.collector, PATH, {"all_messages": "true"} if args.all else None
        )
        if args.json:
            print(json.dumps(messages, indent=2))
        else:
            _print_messages(messages)
        return EXIT_OK
    token = operator_token(args)
    if action == "post":
        body: dict[str, Any] = {"text": args.text}
        if args.service:
            body["service"] = args.service
        answer = collector_send(args.collector, PATH, "POST", token, body)
    elif action == "update":
        answer = collector_send(
            args.collector, f"{PATH}/{args.id}", "PUT", token, {"text": args.text}
        )
    else:
        answer = collector_send(args.collector, f"{PATH}/{args.id}", "DELETE", token)
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        done = {"post": "posted", "update": "updated", "end": "taken off the status page"}
        print(f"message {answer['id']} {done[action]}: {answer['text']}")
    return EXIT_OK


def _print_messages(messages: list[dict[str, Any]]) -> None:
    if not messages:
        print("no messages on the status page")
        return
    print(f"{'ID':>4}  {'SERVICE':16}  {'POSTED':16}  {'BY':12}  {'ENDED':16}  TEXT")
    for m in messages:
        print(
            f"{m['id']:>4}  {(m['service'] or '(every)')[:16]:16}  {when(m['posted_at']):16}  "
            f"{m['posted_by'][:12]:12}  {when(m['ended_at']):16}  {m['text']}"
        )


def register(sub: Any) -> None:
    group = add_command(
        sub, "status-message", cmd_status_message, "messages for users on the status page"
    )
    actions = group.add_subparsers(dest="status_message_action", required=True, metavar="ACTION")
    post = actions.add_parser("post", help="post a message")
    post.add_argument("text", help="the message, in the users' words")
    post.add_argument("--service", help="the service it is about (default: every service)")
    update = actions.add_parser("update", help="change a message's text")
    update.add_argument("id", type=int, help="the message's ID (see status-message list)")
    update.add_argument("text", help="the new text")
    end = actions.add_parser("end", help="take a message off the status page")
    end.add_argument("id", type=int, help="the message's ID (see status-message list)")
    listing = actions.add_parser("list", help="the messages on the status page")
    listing.add_argument("--all", action="store_true", help="include ended messages")
    for command in (post, update, end, listing):
        add_collector_options(command, changes=command is not listing)
