"""`runwatch status`: the hosts a collector knows, their states and problems; `--watch` keeps
the picture current in place until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import Any

from checks.settings import Duration
from runwatch import units
from runwatch.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_collector_options,
    ago,
    collector_get,
    duration_arg,
)
from runwatch.cli.output import Column, colour, is_terminal, print_json, table

# Worst first: the order of the counts in the summary line.
STATES = ("CRITICAL", "STALE", "UNKNOWN", "WARNING", "OK")
# On a terminal: cursor home, then clear what is left below the picture (no flicker).
HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"


def cmd_status(args: argparse.Namespace) -> int:
    """Show the hosts a collector knows with their states, each problem with its value (in its
    unit), since when, and its call, and the number of open calls. With --watch, refresh in
    place every --every (default 5 s) until Ctrl-C; a collector that stops answering is said on
    the screen, and watching goes on."""
    if args.watch:
        if args.json:
            print(
                "runwatch: --watch redraws for people and --json is for scripts: give one",
                file=sys.stderr,
            )
            return EXIT_USAGE
        return _watch(args)
    hosts, open_calls = _fetch(args.collector)
    if args.json:
        return print_json(
            {
                "hosts": [{k: v for k, v in h.items() if k != "measurements"} for h in hosts],
                "open_calls": len(open_calls),
            }
        )
    print(status_text(hosts, len(open_calls), time.time(), terminal=is_terminal()))
    return EXIT_OK


def _fetch(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    hosts = collector_get(url, "/api/v1/hosts")
    open_calls = collector_get(url, "/api/v1/calls", {"status": "open", "limit": "5000"})
    return hosts, open_calls


def status_text(hosts: list[dict[str, Any]], open_calls: int, now: float, terminal: bool) -> str:
    """The picture `runwatch status` prints: a summary line, the hosts, then their problems."""
    if not hosts:
        return f"no hosts have reported yet\n{_calls_line(open_calls)}"
    counts = Counter(host["state"] for host in hosts)
    summary = ", ".join(
        colour(f"{counts[state]} {state}", state, terminal) for state in STATES if counts[state]
    )
    host_columns = [
        Column("host", lambda h: h["host"]),
        Column("state", lambda h: h["state"], coloured=True),
        Column("last report", lambda h: ago(h.get("last_report_at"), now)),
        Column("problems", lambda h: str(len(h.get("problems", ()))), right=True),
        Column("failing checks", _failing),
    ]
    problems = [{"host": h["host"], **p} for h in hosts for p in h.get("problems", ())]
    problem_columns = [
        Column("host", lambda p: p["host"]),
        Column("rule", lambda p: p["rule"]),
        Column("labels", lambda p: _labels(p.get("labels") or {})),
        Column("state", lambda p: p["state"], coloured=True),
        Column("value", lambda p: _value(p, now)),
        Column("since", lambda p: _since(p, now)),
        Column("call", lambda p: f"#{p['call_id']}" if p.get("call_id") else "-"),
        Column("notes", _notes),
    ]
    parts = [
        f"{len(hosts)} host(s): {summary}",
        "",
        table(hosts, host_columns, empty="", terminal=terminal),
    ]
    if problems:
        parts += ["", table(problems, problem_columns, empty="", terminal=terminal)]
    parts += ["", _calls_line(open_calls)]
    return "\n".join(parts)


def _calls_line(open_calls: int) -> str:
    return f"{open_calls} open call(s)"


def _failing(host: dict[str, Any]) -> str:
    return ", ".join(c["check"] for c in host.get("checks", ()) if c.get("error")) or "-"


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _value(problem: dict[str, Any], now: float) -> str:
    if problem.get("value") is None:
        return "-"
    return units.value(
        problem["value"], problem.get("unit", ""), problem.get("metric", ""), now=now
    )


def _since(problem: dict[str, Any], now: float) -> str:
    if problem.get("since_first_report") or not problem.get("since"):
        return "the first report"
    return ago(problem["since"], now)


def _notes(problem: dict[str, Any]) -> str:
    notes = [word for word in ("flapping", "silenced") if problem.get(word)]
    if problem.get("in_parent_call"):
        notes.append(f"in call #{problem['in_parent_call']}")
    call_state = problem.get("call_state")
    if call_state and call_state != problem["state"]:
        notes.append(f"call {call_state}")
    return ", ".join(notes)


def _watch(args: argparse.Namespace) -> int:
    """Redraw the picture every `args.every` until Ctrl-C (exit 0). On a terminal it is drawn
    in place; piped, each picture follows the last, after a line with its time."""
    every = max(1.0, float(args.every))
    terminal = is_terminal()
    out = sys.stdout
    if terminal:
        out.write(HIDE_CURSOR)
    try:
        while True:
            now = time.time()
            try:
                hosts, open_calls = _fetch(args.collector)
                picture = status_text(hosts, len(open_calls), now, terminal)
            except CommandError as exc:
                picture = f"runwatch: {exc} (trying again every {units.duration(every)})"
            heading = (
                f"runwatch status of {args.collector}, {units.timestamp(now)}, "
                f"every {units.duration(every)} (Ctrl-C to stop)"
            )
            if terminal:
                lines = _fit([heading, "", *picture.splitlines()])
                out.write(HOME + "".join(f"{line}{CLEAR_LINE}\n" for line in lines) + CLEAR_BELOW)
            else:
                out.write(f"{heading}\n\n{picture}\n\n")
            out.flush()
            time.sleep(max(0.0, every - (time.time() - now)))
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl-C is how a watch ends
    finally:
        if terminal:
            out.write(SHOW_CURSOR + "\n")
            out.flush()


def _fit(lines: list[str]) -> list[str]:
    """The lines that fit the terminal's height, the last one saying how many did not: a
    picture taller than the window would scroll, and the next one be drawn over the middle."""
    import shutil

    rows = shutil.get_terminal_size().lines
    if len(lines) < rows:
        return lines
    keep = max(1, rows - 2)
    hidden = len(lines) - keep
    return [*lines[:keep], f"... {hidden} more line(s): a taller window, or without --watch"]


def register(sub: Any) -> None:
    text = "show hosts, their states and problems"
    command = sub.add_parser(
        "status", help=text, description="Show hosts, their states and problems."
    )
    add_collector_options(command)
    command.add_argument(
        "--watch", action="store_true", help="refresh in place until Ctrl-C (not with --json)"
    )
    command.add_argument(
        "--every",
        type=duration_arg,
        default=Duration(5.0),
        metavar="DURATION",
        help="with --watch: how often, e.g. 2s or 1m (default: 5s)",
    )
    command.set_defaults(func=cmd_status)
