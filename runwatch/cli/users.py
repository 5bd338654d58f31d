"""`runwatch user add|list|remove`: the console's users."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

from runwatch.cli.audit import audit_trail, remove_recorded
from runwatch.cli.common import EXIT_OK, CommandError, add_command, add_config_option, log
from runwatch.cli.output import Column, print_json, print_table


def cmd_user(args: argparse.Namespace) -> int:
    """Console users sign in with a name and password (stored as PBKDF2 hashes in the users
    file)."""
    import getpass

    from collector.auth import (
        ROLE_OPERATOR,
        ROLE_READ_ONLY,
        TokenFileError,
        read_users,
        remove_user,
        set_user,
    )

    path, config = _users_file(args)
    try:
        if args.user_verb == "add":
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            else:
                password = getpass.getpass(f"password for {args.name}: ")
                if getpass.getpass("again: ") != password:
                    raise CommandError("the passwords differ")
            role = ROLE_READ_ONLY if args.read_only else ROLE_OPERATOR
            with audit_trail(config) as record:
                set_user(path, args.name, password, role)
                print(f"user {args.name} ({role}) stored in {path}", file=sys.stderr)
                record("user.add", f"user {args.name}", role)
        elif args.user_verb == "remove":
            missing = f"no user {args.name} in {path}"
            done = f"user {args.name} removed; their console sessions end"
            remove = functools.partial(remove_user, path, args.name)
            return remove_recorded(
                config, remove, missing, done, ("user.remove", f"user {args.name}")
            )
        else:
            rows = [{"name": u.name, "role": u.role} for u in read_users(path)]
            if args.json:
                return print_json(rows)
            columns = [Column("name", lambda r: r["name"]), Column("role", lambda r: r["role"])]
            print_table(rows, columns, empty=f"no users in {path}")
    except TokenFileError as exc:
        log.error("user %s failed: %s", args.user_verb, exc)
        raise CommandError(str(exc)) from None
    return EXIT_OK


def _users_file(args: argparse.Namespace) -> tuple[Path, Any]:
    """The users file, and the collector config it came from (None for --users-file)."""
    if args.users_file:
        return Path(args.users_file), None
    from collector.config import load_collector_config

    config = load_collector_config(args.config)
    return config.users_file, config


def register(sub: Any) -> None:
    user = add_command(sub, "user", cmd_user, "add, list or remove console users")
    user_verbs = user.add_subparsers(dest="user_verb", required=True, metavar="VERB")
    user_add = user_verbs.add_parser("add", help="add a user, or change their password/role")
    user_add.add_argument("name")
    user_add.add_argument(
        "--read-only", action="store_true", help="sees everything in the console, changes nothing"
    )
    user_add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    user_remove = user_verbs.add_parser("remove", help="remove a user")
    user_remove.add_argument("name")
    user_list = user_verbs.add_parser("list", help="list users and their roles")
    user_list.add_argument("--json", action="store_true", help="print JSON")
    for command in (user_add, user_remove, user_list):
        add_config_option(command, "collector", " naming the users file")
        command.add_argument(
            "--users-file", help="the users file itself (default: from the config, DATA_DIR/users)"
        )
