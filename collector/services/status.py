"""The status page's content: the public services and their states, as JSON, Atom and the
context of the HTML page, rendered once per `status_page.cache` for every visitor.

What it shows of a service is its title, description, state, since when and its last 90 days
(the worst state of each day, from the stored state changes); its components, and the hosts and
rules of their problems, only for a service with `status_details: true`.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
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
    public = [known for known in watch.model.services if known.public]
    if history is not None and now is not None and public:
        today = now - now % DAY
        first = today - (HISTORY_DAYS - 1) * DAY
        changes, before = history(first, now + 1)
        by_service: dict[str, list[tuple[float, int]]] = {}
        for name, at, state in changes:
            by_service.setdefault(name, []).append((at, state))
        # The same 90 dates and a handful of state words for every service: worked out once
        # (formatting them for each service and day cost 50-110 ms at 50 public services).
        dates = [
            datetime.fromtimestamp(first + i * DAY, UTC).strftime("%Y-%m-%d")
            for i in range(HISTORY_DAYS)
        ]
        words = {state.value: state.word for state in ServiceState}
        for known in public:
            worst = daily_worst(
                by_service.get(known.name, []), before.get(known.name), first, HISTORY_DAYS
            )
            days_of[known.name] = [
                {"date": date, "state": words[state] if state is not None else None}
                for date, state in zip(dates, worst, strict=True)
            ]
    out = []
    shown_by_name = {known.name: known for known in public}
    for service in watch.services():
        shown = shown_by_name.get(service["service"])
        if shown is None:
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


class Rendered:
    """One render of a format: its bytes, gzipped (the 90 days of bars compress some 80 to
    1, and every browser asks for gzip), and its entity tag (a digest of the bytes)."""

    __slots__ = ("body", "gzipped", "tag")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.gzipped = gzip.compress(body, compresslevel=6, mtime=0)
        self.tag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


class StatusPage:
    """Each format of the page rendered at most once per `cache` seconds, whoever asks.

    `entry()` renders in the caller when the cache is stale. A server on an event loop uses
    `cached()` and `refresh()` instead: visitors keep getting the last render while the next
    one is made (the snapshot on the loop, the text in a worker thread), as a cache with
    stale-while-revalidate does, so that no report waits behind a render."""

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
        self._cache: dict[str, tuple[float, Rendered]] = {}
        self._lock = threading.Lock()
        self._generation = 0  # moves on at clear(): a render begun before it is not kept
        self.renders = 0  # how many times a format was rendered (the cache's misses)

    def clear(self) -> None:
        """Render afresh at the next request (an operator's message changed)."""
        with self._lock:
            self._cache.clear()
            self._generation += 1

    def body(self, fmt: str, html: Callable[[dict[str, Any]], str]) -> bytes:
        """The page in `fmt` (html, json or atom), from the cache while it is fresh."""
        return self.entry(fmt, html).body

    def entry(self, fmt: str, html: Callable[[dict[str, Any]], str]) -> Rendered:
        """The page in `fmt`, compressed too, with its entity tag, from the cache while it
        is fresh; rendered here when it is not."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(fmt)
            if cached is not None and cached[0] > now:
                return cached[1]
            rendered = self.render(fmt, self.snapshot(now), html)
            self._cache[fmt] = (now + float(self.config.cache), rendered)
            self.renders += 1
            return rendered

    def cached(self, fmt: str) -> tuple[Rendered | None, bool]:
        """The last render of `fmt` (None before the first or after clear()), and whether
        it is still fresh."""
        with self._lock:
            cached = self._cache.get(fmt)
        if cached is None:
            return None, False
        return cached[1], cached[0] > self._clock()

    async def refresh(self, fmt: str, html: Callable[[dict[str, Any]], str]) -> None:
        """Render `fmt` again, its text in a worker thread; the cache keeps the last render
        meanwhile. The caller starts one refresh of a format at a time."""
        now = self._clock()
        generation = self._generation
        snapshot = self.snapshot(now)  # reads the store and the watch: on the loop
        rendered = await asyncio.to_thread(self.render, fmt, snapshot, html)
        with self._lock:
            if generation == self._generation:
                self._cache[fmt] = (now + float(self.config.cache), rendered)
                self.renders += 1

    def snapshot(self, now: float) -> dict[str, Any]:
        """What the page shows now (status_snapshot), with the operators' messages."""
        snapshot = status_snapshot(self._watch(), self.config.title, self._history, now)
        snapshot["messages"] = self._public_messages(snapshot) if self._messages else []
        return snapshot

    def render(
        self, fmt: str, snapshot: dict[str, Any], html: Callable[[dict[str, Any]], str]
    ) -> Rendered:
        """The snapshot as `fmt`: text, gzip and tag (touches nothing shared)."""
        if fmt == "json":
            text = json.dumps(snapshot, indent=1)
        elif fmt == "atom":
            text = atom_feed(snapshot, self._base_url)
        else:
            text = html(snapshot)
        return Rendered(text.encode())

    def _public_messages(self, snapshot: dict[str, Any]) -> list[dict[str, Any]]:
        assert self._messages is not None
        titles = {s["service"]: s["title"] for s in snapshot["services"]}
        return public_messages(self._messages(), titles)
