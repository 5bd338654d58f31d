"""The audit log: `runwatch audit` lists it (from a running collector), and the audit trail of
changes made on the collector's host (tokens, users) is recorded in the collector's store as
changes through the API are."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from runwatch.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CommandError,
    add_collector_options,
    add_command,
    ago,
    collector_get,
)
from runwatch.cli.output import Column, print_json, print_table


def cmd_audit(args: argparse.Namespace) -> int:
    """List the changes people made (through the API, the console or this command on the
    collector's host), newest first: when, who, how, what and on what. Needs an operator token,
    a read-only one will do: $RUNWATCH_OPERATOR_TOKEN_FILE or $RUNWATCH_OPERATOR_TOKEN."""
    entries = collector_get(args.collector, "/api/v1/audit", {"limit": str(args.limit)})
    if args.json:
        return print_json(entries)
    now = time.time()
    columns = [
        Column("when", lambda e: ago(e["at"], now)),
        Column("who", lambda e: e["actor"]),
        Column("via", lambda e: e["via"]),
        Column("action", lambda e: e["action"]),
        Column("target", lambda e: e["target"]),
        Column("detail", lambda e: e.get("detail") or ""),
    ]
    print_table(entries, columns, empty="nothing has been changed yet")
    return EXIT_OK


def register(sub: Any) -> None:
    command = add_command(sub, "audit", cmd_audit, "list the audit log: who changed what, when")
    command.add_argument(
        "--limit",
        type=int,
        default=200,
        help="at most this many, newest first (default: %(default)s)",
    )
    add_collector_options(command)


@contextlib.contextmanager
def audit_trail(config: Any) -> Iterator[Callable[..., None]]:
    """Yield `record(action, target, detail="")`, which writes an entry (actor `cli:USER`, via
    `cli`) into the audit log of the collector `config` names, as changes through the API are.

    The store is opened before the change is made, so one that cannot be reached stops the
    change instead of leaving it out of the record. Without a config (--tokens-file,
    --users-file), or before the collector has ever run (no SQLite store yet), the change is
    made and not recorded, and the command says so."""

    def unrecorded(*_: str) -> None:
        return None

    if config is None:
        print(
            "(not recorded in an audit log: no collector config named; give --config to record it)",
            file=sys.stderr,
        )
        yield unrecorded
        return
    database = config.data_dir / "runwatch.db"
    if config.store.backend == "sqlite" and not database.exists():
        print(
            f"(not recorded in an audit log: the collector has no store at {database} yet)",
            file=sys.stderr,
        )
        yield unrecorded
        return
    import sqlite3

    from collector.store.opening import open_store
    from collector.store.records import AuditEntry

    errors: tuple[type[Exception], ...] = (sqlite3.Error, OSError)
    if config.store.backend == "postgresql":
        import psycopg

        errors = (*errors, psycopg.Error)
    try:
        store = open_store(config)
    except errors as exc:
        raise CommandError(
            f"cannot open the collector's store to record this change in its "
            f"audit log, so nothing was changed: {exc}"
        ) from None
    actor, sudo = _cli_actor()

    def record(action: str, target: str, detail: str = "") -> None:
        text = "; ".join(part for part in (detail, sudo) if part)
        try:
            with store.transaction():
                store.add_audit(AuditEntry(0, time.time(), actor, action, target, text, "cli"))
        except errors as exc:
            raise CommandError(
                f"{action} {target} is done, but could not be recorded in the audit log: {exc}"
            ) from None

    try:
        yield record
    finally:
        store.close()


def remove_recorded(
    config: Any, remove: Callable[[], bool], missing: str, done: str, entry: tuple[str, str]
) -> int:
    """Remove a user or a token (`remove()` says whether it was there), say what came of it on
    stderr, and record the removal (`entry`: action and target) in the audit log."""
    with audit_trail(config) as record:
        if not remove():
            print(missing, file=sys.stderr)
            return EXIT_FAILED
        print(done, file=sys.stderr)
        record(*entry)
    return EXIT_OK


def _cli_actor() -> tuple[str, str]:
    """Who runs this command, for the audit log: `cli:USER` (the effective user), and the
    user sudo was called by, if any."""
    import pwd

    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        name = str(os.geteuid())
    sudo = os.environ.get("SUDO_USER", "")
    return f"cli:{name}", (f"sudo from {sudo}" if sudo and sudo != name else "")
