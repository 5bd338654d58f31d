"""The status page's content: the public services and their states, as JSON, Atom and the
context of the HTML page, rendered once per `status_page.cache` for every visitor.

What it shows of a service is its title, description, state, since when and its last 90 days
(the worst state of each day, from the stored state changes); its components, and the hosts and
rules of their problems, only for a service with `status_details: true`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape  # quote=True: also safe inside the attributes (href="…")
from typing import Any

from collector.services.config import StatusPageConfig
from collector.services.state import ServiceState
from collector.services.watch import ServiceWatch
from collector.store.records import StatusMessage

FORMATS = ("html", "json", "atom")
DAY = 86400
HISTORY_DAYS = 90

# The services' stored state changes in [since, until), and each one's last state before
# `since`: what the page's history is made of.
History = Callable[[float, float], tuple[list[tuple[str, float, int]], dict[str, int]]]


def daily_worst(
    changes: list[tuple[float, int]], before: int | None, first_day: float, days: int
) -> list[int | None]:
    """The worst state of each UTC day from `first_day` (a midnight) on: the state held when
    the day began and every state it changed to in it; None for a day before anything was
    known. `changes` are (when, state), oldest first; `before` the state held at the start."""
    out: list[int | None] = []
    current = before
    index = 0
    for day in range(days):
        start, end = first_day + day * DAY, first_day + (day + 1) * DAY
        while index < len(changes) and changes[index][0] < start:
            current = changes[index][1]
            index += 1
        worst = current
        while index < len(changes) and changes[index][0] < end:
            current = changes[index][1]
            worst = current if worst is None else max(worst, current)
            index += 1
        out.append(worst)
    return out


def status_snapshot(
    watch: ServiceWatch, title: str, history: History | None = None, now: float | None = None
) -> dict[str, Any]:
    """What users may see: the public services, by title, each with its last 90 days (when
    `history` is given): the worst state of each day."""
    days_of: dict[str, list[dict[str, Any]]] = {}
    if history is not None and now is not None:
        today = now - now % DAY
        first = today - (HISTORY_DAYS - 1) * DAY
        changes, before = history(first, now + 1)
        by_service: dict[str, list[tuple[float, int]]] = {}
        for name, at, state in changes:
            by_service.setdefault(name, []).append((at, state))
        for known in watch.model.services:
            worst = daily_worst(
                by_service.get(known.name, []), before.get(known.name), first, HISTORY_DAYS
            )
            days_of[known.name] = [
                {
                    "date": datetime.fromtimestamp(first + i * DAY, UTC).strftime("%Y-%m-%d"),
                    "state": ServiceState(state).word if state is not None else None,
                }
                for i, state in enumerate(worst)
            ]
    out = []
    for service in watch.services():
        shown = next(s for s in watch.model.services if s.name == service["service"])
        if not shown.public:
            continue
        item: dict[str, Any] = {
            "service": service["service"],
            "title": service["title"],
            "description": service["description"],
            "state": service["state"],
            "since": service["since"],
        }
        if service["service"] in days_of:
            item["days"] = days_of[service["service"]]
        if shown.status_details:
            item["components"] = [
                {
                    "name": c["name"],
                    "state": c["state"],
                    "problems": [
                        {"host": p["host"], "rule": p["rule"], "state": p["state"]}
                        for p in c["problems"]
                    ],
                }
                for c in service["components"]
            ]
        out.append(item)
    out.sort(key=lambda s: s["title"].lower())
    return {"title": title, "updated": watch.evaluated_at, "services": out}


def _rfc3339(ts: float | None) -> str:
    return datetime.fromtimestamp(ts or 0.0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def atom_feed(snapshot: dict[str, Any], base_url: str) -> str:
    """An Atom feed: one entry per public service, updated when its state changed."""
    since = [s["since"] for s in snapshot["services"] if s["since"] is not None]
    updated = max(since, default=snapshot["updated"])
    link = f"{base_url}/status" if base_url else "/status"
    entries = []
    for service in snapshot["services"]:
        text = f"{service['title']}: {service['state']}"
        entries.append(
            "<entry>"
            f"<id>urn:runwatch:status:{escape(service['service'])}</id>"
            f"<title>{escape(text)}</title>"
            f"<updated>{_rfc3339(service['since'])}</updated>"
            f'<link href="{escape(link)}"/>'
            f"<summary>{escape(service['description'] or text)}</summary>"
            "</entry>"
        )
    for message in snapshot.get("messages", []):
        about = f"{message['service']}: " if message["service"] else ""
        entries.append(
            "<entry>"
            f"<id>urn:runwatch:status:message:{message['id']}</id>"
            f"<title>{escape(about + message['text'][:80])}</title>"
            f"<updated>{_rfc3339(message['updated_at'])}</updated>"
            f'<link href="{escape(link)}"/>'
            f"<summary>{escape(message['text'])}</summary>"
            "</entry>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom">'
        "<id>urn:runwatch:status</id>"
        f"<title>{escape(snapshot['title'])}</title>"
        f"<updated>{_rfc3339(updated)}</updated>"
        f'<link href="{escape(link)}"/>'
        "<author><name>runwatch</name></author>" + "".join(entries) + "</feed>\n"
    )


def public_messages(messages: list[StatusMessage], titles: dict[str, str]) -> list[dict[str, Any]]:
    """The messages users may see: about every service, or about a public one (by its title);
    not who posted them."""
    return [
        {
            "id": m.id,
            "service": titles[m.service] if m.service else None,
            "text": m.text,
            "posted_at": m.posted_at,
            "updated_at": m.updated_at,
        }
        for m in messages
        if not m.service or m.service in titles
    ]


class StatusPage:
    """Each format of the page rendered at most once per `cache` seconds, whoever asks."""

    def __init__(
        self,
        config: StatusPageConfig,
        watch: Callable[[], ServiceWatch],
        clock: Callable[[], float],
        *,
        base_url: str = "",
        history: History | None = None,
        messages: Callable[[], list[StatusMessage]] | None = None,
    ) -> None:
        self.config = config
        self._watch = watch
        self._history = history
        self._messages = messages
        self._clock = clock
        self._base_url = base_url.rstrip("/")
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()
        self.renders = 0  # how many times a format was rendered (the cache's misses)

    def clear(self) -> None:
        """Render afresh at the next request (an operator's message changed)."""
        with self._lock:
            self._cache.clear()

    def body(self, fmt: str, html: Callable[[dict[str, Any]], str]) -> bytes:
        """The page in `fmt` (html, json or atom), from the cache while it is fresh."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(fmt)
            if cached is not None and cached[0] > now:
                return cached[1]
            snapshot = status_snapshot(self._watch(), self.config.title, self._history, now)
            snapshot["messages"] = self._public_messages(snapshot) if self._messages else []
            if fmt == "json":
                text = json.dumps(snapshot, indent=1)
            elif fmt == "atom":
                text = atom_feed(snapshot, self._base_url)
            else:
                text = html(snapshot)
            body = text.encode()
            self._cache[fmt] = (now + float(self.config.cache), body)
            self.renders += 1
            return body

    def _public_messages(self, snapshot: dict[str, Any]) -> list[dict[str, Any]]:
        assert self._messages is not None
        titles = {s["service"]: s["title"] for s in snapshot["services"]}
        return public_messages(self._messages(), titles)
