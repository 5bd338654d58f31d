"""`runwatch token` (and `runwatch collector token`): add, list or revoke agent and operator
tokens in the collector's tokens files."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

from runwatch.cli.audit import audit_trail, remove_recorded
from runwatch.cli.common import EXIT_OK, CommandError, add_config_option, ago
from runwatch.cli.output import Column, print_json, print_table


def cmd_token(args: argparse.Namespace) -> int:
    from collector.auth import TokenFileError, add_token, read_tokens, revoke_token

    path, config = _tokens_file(args)
    kind, noun = ("operator_token", "operator") if args.operator else ("token", "host")
    try:
        if args.tokens_verb == "add":
            if args.read_only and not args.operator:
                raise CommandError(
                    "--read-only is for operator tokens (with --operator); agent tokens only report"
                )
            role = "read-only" if args.read_only else "operator"
            with audit_trail(config) as record:
                token = add_token(path, args.host, replace=args.replace, role=role)
                print(token)
                where = (
                    "Give it to `runwatch deploy` (the inventory's operator_token_file, mode 0600)."
                    if args.operator
                    else "Put it in the agent's token_file (mode 0600)."
                )
                print(
                    f"token for {args.host} stored (hashed) in {path}; it is shown only "
                    f"once. {where}",
                    file=sys.stderr,
                )
                details = [
                    role if args.operator and args.read_only else "",
                    "token replaced" if args.replace else "",
                ]
                record(f"{kind}.add", f"{noun} {args.host}", ", ".join(d for d in details if d))
        elif args.tokens_verb == "revoke":
            missing = f"{args.host} has no token in {path}"
            done = f"token for {args.host} revoked; its next report gets 401"
            revoke = functools.partial(revoke_token, path, args.host)
            audited = (f"{kind}.revoke", f"{noun} {args.host}")
            return remove_recorded(config, revoke, missing, done, audited)
        else:
            entries = read_tokens(path)
            rows = [{"host": e.host, "created_at": e.created_at, "role": e.role} for e in entries]
            if args.json:
                return print_json(rows)
            now = time.time()
            columns = [
                Column("operator" if args.operator else "host", lambda r: r["host"]),
                Column("created", lambda r: ago(r["created_at"], now)),
            ]
            if args.operator:
                columns.append(Column("role", lambda r: r["role"]))
            what = "operator tokens" if args.operator else "agent tokens"
            print_table(rows, columns, empty=f"no {what} in {path}")
    except TokenFileError as exc:
        raise CommandError(str(exc)) from None
    return EXIT_OK


def _tokens_file(args: argparse.Namespace) -> tuple[Path, Any]:
    """The tokens file, and the collector config it came from (None for --tokens-file)."""
    if args.tokens_file:
        return Path(args.tokens_file), None
    from collector.config import load_collector_config

    config = load_collector_config(args.config)
    return (config.operator_tokens_file if args.operator else config.tokens_file), config


def register(sub: Any) -> None:
    token = sub.add_parser(
        "token", help="add, list or revoke agent tokens (same as `collector token`)"
    )
    add_token_commands(token)
    token.set_defaults(func=cmd_token)


def add_token_commands(parser: argparse.ArgumentParser) -> None:
    tokens = parser.add_subparsers(dest="tokens_verb", required=True, metavar="ACTION")
    add = tokens.add_parser("add", help="create a token for a host; print it once")
    add.add_argument("host")
    add.add_argument("--replace", action="store_true", help="replace the host's existing token")
    add.add_argument(
        "--read-only",
        action="store_true",
        help="with --operator: a read-only operator token, which may read "
        "everything (the audit log too) and change nothing",
    )
    revoke = tokens.add_parser("revoke", help="revoke a host's token")
    revoke.add_argument("host")
    listing = tokens.add_parser("list", help="list hosts that have tokens")
    listing.add_argument("--json", action="store_true", help="print JSON")
    for sub in (add, revoke, listing):
        sub.add_argument(
            "--operator",
            action="store_true",
            help="operator tokens (for `runwatch deploy` to enrol agents through "
            "the API) instead of agent tokens; HOST is then the operator's "
            "name",
        )
        where = sub.add_mutually_exclusive_group()
        add_config_option(where, "collector", " naming the tokens file")
        where.add_argument("--tokens-file", help="the tokens file itself")
