"""`runwatch outbox list|retry|discard|check-sinks`: look at and retry deliveries to help
desks, and check the help desks' setup."""

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
    add_config_option,
    add_group,
    collector_get,
    collector_send,
    operator_token,
)
from runwatch.cli.output import Column, print_json, print_table


def cmd_outbox_list(args: argparse.Namespace) -> int:
    return print_outbox(args.collector, args.status, args.json, args.limit)


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    """Retry a dead letter by ID, or all of them; exit 1 if none was retried. Needs an operator
    token (not a read-only one); recorded in the audit log."""
    if args.id is None and not args.all:
        raise CommandError("say which dead letter to retry (an ID) or --all")
    query = f"?op_id={args.id}" if args.id is not None else ""
    return _on_dead_letters(args, f"/api/v1/outbox/retry{query}", "retried", "put back in line")


def cmd_outbox_discard(args: argparse.Namespace) -> int:
    """Give up on one dead letter (e.g. a reopen the help desk refuses for good), so the call's
    later operations can go. Exit 1 if it was not dead. Needs an operator token (not a
    read-only one); recorded in the audit log."""
    path = f"/api/v1/outbox/discard?op_id={args.id}"
    return _on_dead_letters(args, path, "discarded", "discarded")


def _on_dead_letters(args: argparse.Namespace, path: str, key: str, done: str) -> int:
    """POST `path` as an operator; say how many dead letters it changed (the answer's `key`),
    exit 1 if none."""
    count = collector_send(args.collector, path, "POST", operator_token(args))[key]
    print(f"{count} dead letter(s) {done}")
    return EXIT_OK if count else EXIT_FAILED


def cmd_outbox_check_sinks(args: argparse.Namespace) -> int:
    """Probe each configured help desk with read-only calls, and the mail server of each e-mail
    notification channel (log in, send nothing); print each problem with its fix. Exit 1 if one
    has an error (or, with --strict, a warning)."""
    from collector.config import load_collector_config
    from collector.notify.delivery import build_channels
    from collector.sinks.adapters import build_sinks
    from collector.sinks.selfcheck import as_json, check_sinks

    config = load_collector_config(args.config)
    sinks = build_sinks(config.sinks)
    # Notification channels too: an e-mail channel logs in to its server and sends nothing.
    channels = build_channels(config.notifications)
    checked = {
        **sinks,
        **{f"notify:{name}": c for name, c in channels.items() if hasattr(c, "check")},
    }
    try:
        found = check_sinks(checked)
    finally:
        for sink in sinks.values():
            close = getattr(sink, "close", None)
            if close is not None:
                close()
    if args.json:
        print(json.dumps(as_json(found), indent=2))
    elif not found:
        print("no help desk is configured")
    for name, problems in found.items() if not args.json else ():
        print(f"{name}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(f"  {problem.severity.upper()}: {problem.what}")
            print(f"    fix: {problem.fix}")
    failing = {"error", "warning"} if args.strict else {"error"}
    bad = any(p.severity in failing for problems in found.values() for p in problems)
    return EXIT_FAILED if bad else EXIT_OK


def print_outbox(url: str, status: str, as_json: bool, limit: int) -> int:
    ops = collector_get(url, "/api/v1/outbox", {"status": status, "limit": str(limit)})
    if as_json:
        return print_json(ops)
    columns = [
        Column("id", lambda o: str(o["id"]), right=True),
        Column("call", lambda o: str(o["call_id"]), right=True),
        Column("sink", lambda o: o["sink"]),
        Column("op", lambda o: o["op"]),
        Column("status", lambda o: o["status"], coloured=True),
        Column("tries", lambda o: str(o["attempts"]), right=True),
        Column("error", lambda o: o["last_error"] or ""),
    ]
    empty = f"no {status} operations" if status != "all" else "the outbox is empty"
    print_table(ops, columns, empty=empty)
    return EXIT_OK


def register(sub: Any) -> None:
    outbox_actions = add_group(sub, "outbox", "look at and retry deliveries to help desks")
    outbox_list = add_command(
        outbox_actions, "list", cmd_outbox_list, "list call operations in the outbox"
    )
    outbox_list.add_argument(
        "--status",
        choices=["pending", "dead", "done", "all"],
        default="pending",
        help="which ones (default: %(default)s)",
    )
    outbox_list.add_argument("--limit", type=int, default=200, help="at most this many")
    outbox_retry = add_command(
        outbox_actions,
        "retry",
        cmd_outbox_retry,
        "put dead letters back in line once the cause is fixed",
    )
    outbox_retry.add_argument("id", nargs="?", type=int, help="the operation's ID")
    outbox_retry.add_argument("--all", action="store_true", help="every dead letter")
    outbox_discard = add_command(
        outbox_actions,
        "discard",
        cmd_outbox_discard,
        "give up on a dead letter that can never be delivered",
    )
    outbox_discard.add_argument("id", type=int, help="the operation's ID")
    check_sinks = add_command(
        outbox_actions,
        "check-sinks",
        cmd_outbox_check_sinks,
        "probe each configured help desk read-only: access, queue or project, permissions",
    )
    add_config_option(check_sinks, "collector", " (its sinks)")
    check_sinks.add_argument("--json", action="store_true", help="print JSON")
    check_sinks.add_argument(
        "--strict", action="store_true", help="exit 1 on warnings too, not only on errors"
    )
    add_collector_options(outbox_list)
    for command in (outbox_retry, outbox_discard):
        add_collector_options(command, changes=True, json_help=None)
