"""`runwatch oncall show`: who is on call for each run group, now or at any time, from the
rotas in the collector's config (`notifications.rotas`)."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from runwatch.cli.common import (
    EXIT_OK,
    CommandError,
    add_command,
    add_config_option,
    add_group,
)
from runwatch.cli.output import Column, print_json, print_table


def _at(text: str | None, zone: str) -> float:
    """`--at`: ISO 8601 with an offset (`2027-01-15T08:00+01:00`, `…Z`) is that moment; without
    one (`2027-01-15 08:00`) it is read in the rota's own time zone. None: now."""
    import zoneinfo  # here: `runwatch agent` imports this module and never needs it

    if text is None:
        return datetime.now().timestamp()
    try:
        parsed = datetime.fromisoformat(text.strip().replace(" ", "T"))
    except ValueError:
        raise CommandError(
            f"--at {text!r}: expected a time such as '2027-01-15 08:00' or 2027-01-15T08:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return parsed.timestamp()


def _local(ts: float, zone: str) -> str:
    import zoneinfo

    return datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def cmd_oncall_show(args: argparse.Namespace) -> int:
    """Print who is on call for each group with a rota (or --group G), now or --at TIME, since
    and until when (in the rota's time zone), the channels that reach them and, for an
    override, its reason."""
    from collector.config import load_collector_config
    from collector.notify.oncall import on_call

    notify = load_collector_config(args.config).notifications
    if args.group is not None and args.group not in notify.rotas:
        known = ", ".join(sorted(notify.rotas)) or "none"
        raise CommandError(f"group {args.group!r} has no rota (groups with one: {known})")
    rows: list[dict[str, Any]] = []
    for group in [args.group] if args.group else sorted(notify.rotas):
        zone = notify.rotas[group].timezone
        duty = on_call(notify, group, _at(args.at, zone))
        assert duty is not None
        rows.append(
            {
                "group": group,
                "person": duty.person,
                "since": _local(duty.since, zone),
                "until": _local(duty.until, zone),
                "channels": list(duty.channels),
                "reason": duty.reason,
                "timezone": zone,
            }
        )
    if args.json:
        return print_json(rows)

    def channels(row: dict[str, Any]) -> str:
        note = f" ({row['reason']})" if row["reason"] else ""
        return ", ".join(row["channels"]) + note

    columns = [
        Column("group", lambda r: r["group"]),
        Column("on call", lambda r: r["person"]),
        Column("since", lambda r: r["since"]),
        Column("until", lambda r: r["until"]),
        Column("channels", channels),
    ]
    print_table(rows, columns, empty="no run group has a rota")
    return EXIT_OK


def register(sub: Any) -> None:
    actions = add_group(sub, "oncall", "who is on call for each run group")
    show = add_command(actions, "show", cmd_oncall_show, "who is on call, now or at any time")
    add_config_option(show, "collector", " (its rotas)")
    show.add_argument("--group", help="only this run group")
    show.add_argument(
        "--at",
        metavar="TIME",
        help="at this time instead of now: '2027-01-15 08:00' in the rota's time zone, "
        "or ISO 8601 with an offset",
    )
    show.add_argument("--json", action="store_true", help="print JSON")
