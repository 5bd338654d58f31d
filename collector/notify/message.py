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
        case _:
            return f"RESOLVED (was {severity})"


def subject(payload: dict[str, Any]) -> str:
    """`[runwatch #12] web01 disk_full {mountpoint=/}: CRITICAL`; replies start with `Re: `."""
    call = payload["call"]
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
    if description:
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
