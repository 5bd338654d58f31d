"""A notification's words: subject and body, the same for every channel.

The body carries the call's own text (its description: host, rule, severity, value and
threshold in human units, first seen, the console and dashboard links) after a line saying what
happened, and ends with the links: acknowledge (notify/ack.py), console, ticket, dashboard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from runwatch import units

_DASHBOARD = re.compile(r"^Dashboard:\s+(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Message:
    """One notification about one call, ready for a channel."""

    event: str  # open, severity, escalation, resolve
    severity: str
    subject: str
    body: str
    call_id: int
    fingerprint: str
    at: float  # when it happened (the mail's Date)
    key: str  # unique per notification, kept across retries (the Message-ID's part)
    first: bool  # the thread's first message (the call opened)


def _where(labels: dict[str, str]) -> str:
    inner = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return f" {{{inner}}}" if inner else ""


def state_words(payload: dict[str, Any]) -> str:
    """The state a subject ends with: `CRITICAL`, `WARNING -> CRITICAL`, `RESOLVED (was …)`."""
    call = payload["call"]
    severity = call["severity"]
    match payload["event"]:
        case "open":
            return f"{severity} (reopened)" if payload.get("kind") == "reopened" else severity
        case "severity":
            was = payload.get("was")
            return f"{was} -> {severity}" if was else severity
        case "escalation":
            return f"{severity}, not acknowledged: escalated"
        case "update":
            return f"{severity}, updated"
        case _:
            return f"RESOLVED (was {severity})"


def subject(payload: dict[str, Any]) -> str:
    """`[runwatch #12] web01 disk_full {mountpoint=/}: CRITICAL`; replies start with `Re: `."""
    call = payload["call"]
    storm = payload.get("storm") or {}
    if "total" in storm:
        line = f"[runwatch #{call['id']}] {storm_words(payload)}"
    else:
        line = (
            f"[runwatch #{call['id']}] {call['host']} {call['rule']}{_where(call['labels'])}: "
            f"{state_words(payload)}"
        )
    return (
        line if payload["event"] == "open" and payload.get("kind") != "reopened" else f"Re: {line}"
    )


def _headline(payload: dict[str, Any]) -> str:
    call = payload["call"]
    when = units.timestamp(payload["at"])
    what = {
        "open": "reopened" if payload.get("kind") == "reopened" else "opened",
        "severity": "changed severity",
        "escalation": "was escalated",
        "update": "was updated",
        "resolve": "was resolved",
    }[payload["event"]]
    return f"Call #{call['id']} for {call['host']} ({call['rule']}) {what} at {when}."


def render(
    payload: dict[str, Any],
    *,
    console_url: str = "",
    ticket_url: str = "",
    ticket_id: str = "",
    ack_url: str = "",
) -> Message:
    """The message for one notification's outbox payload, with the links known at delivery."""
    call = payload["call"]
    description = str(call.get("description") or "").rstrip()
    lines = [_headline(payload)]
    text = str(payload.get("text") or "").strip()
    if text and text != call.get("summary"):
        lines += ["", text]
    if payload.get("storm") and "total" in payload["storm"]:
        lines += ["", *storm_lines(payload["storm"])]
    elif description:
        lines += ["", description]
    links = []
    if console_url:
        links.append(f"  Console:   {console_url}")
    if ticket_url or ticket_id:
        links.append(f"  Ticket:    {ticket_url or ticket_id}")
    if found := _DASHBOARD.search(description):
        links.append(f"  Dashboard: {found.group(1)}")
    if ack_url:
        # First, where a person on the move sees it; it opens a page that asks to confirm.
        links.insert(0, f"  Acknowledge: {ack_url}")
    if links:
        lines += ["", "Links:", *links]
    footer = f"-- runwatch, run group {call['group']} ({call['assign']})"
    if payload.get("oncall"):
        footer += f"; on call: {payload['oncall']}"
    lines += ["", footer]
    return Message(
        event=payload["event"],
        severity=call["severity"],
        subject=subject(payload),
        body="\n".join(lines) + "\n",
        call_id=int(call["id"]),
        fingerprint=str(call["fingerprint"]),
        at=float(payload["at"]),
        key=str(payload["key"]),
        first=payload["event"] == "open" and payload.get("kind") != "reopened",
    )


# -- digests: a storm's (the umbrella call's messages) and a rate limit's ---------------------


def storm_words(payload: dict[str, Any]) -> str:
    """`Storm in ops: 980 problems held back, 12 recovered`, or its end."""
    storm, call = payload["storm"], payload["call"]
    total = int(storm["total"]) + int(storm.get("folded_total", 0))
    if payload["event"] == "resolve":
        return f"Storm in {call['group']}: RESOLVED ({total} problems, every one recovered)"
    recovered = int(storm.get("recovered", 0)) + int(storm.get("folded_resolved", 0))
    still = f", {recovered} recovered" if recovered else ""
    return f"Storm in {call['group']}: {total} problems{still} ({call['severity']})"


def storm_lines(storm: dict[str, Any]) -> list[str]:
    """The storm's problems: those held back on the umbrella (the first ones, still failing
    first), and the calls opened just before it that its digest took in."""
    total, shown = int(storm["total"]), [str(line) for line in storm.get("shown", [])]
    lines = [f"Held back on this call ({total}, the first {len(shown)} listed):"]
    lines += [f"- {line}" for line in shown]
    if total > len(shown):
        lines.append(f"… and {total - len(shown)} more")
    folded_total, folded = int(storm.get("folded_total", 0)), storm.get("folded", [])
    if folded_total:
        lines += ["", f"Opened as calls of their own just before the storm ({folded_total}):"]
        lines += [f"- {line}" for line in folded]
        if folded_total > len(folded):
            lines.append(f"… and {folded_total - len(folded)} more")
    return lines


def render_digest(payload: dict[str, Any], *, console_url: str = "") -> Message:
    """A rate limit's digest: the notifications held back, one line each, oldest first."""
    items = payload["lines"]
    per = units.duration(float(payload["per"]))
    count = len(items)
    body = [
        f"This channel gets at most {payload['messages']} messages per {per}; "
        f"{count} notification(s) waited for this digest:",
        "",
        *(f"- {units.timestamp(at)}  {line}" for at, line in items),
    ]
    if console_url:
        body += ["", "Links:", f"  Console:   {console_url}"]
    body += ["", "-- runwatch"]
    return Message(
        event="digest",
        severity="CRITICAL" if any("CRITICAL" in line for _, line in items) else "WARNING",
        subject=f"[runwatch] {count} notification(s) held back by the rate limit",
        body="\n".join(body) + "\n",
        call_id=0,
        fingerprint="",
        at=float(payload["sealed_at"]),
        key=str(payload["key"]),
        first=True,
    )
