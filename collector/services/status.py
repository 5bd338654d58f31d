"""The status page's content: the public services and their states, as JSON, Atom and the
context of the HTML page, rendered once per `status_page.cache` for every visitor.

What it shows of a service is its title, description, state and since when; its components,
and the hosts and rules of their problems, only for a service with `status_details: true`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from collector.services.config import StatusPageConfig
from collector.services.watch import ServiceWatch

FORMATS = ("html", "json", "atom")


def status_snapshot(watch: ServiceWatch, title: str) -> dict[str, Any]:
    """What users may see: the public services, by title."""
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
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom">'
        "<id>urn:runwatch:status</id>"
        f"<title>{escape(snapshot['title'])}</title>"
        f"<updated>{_rfc3339(updated)}</updated>"
        f'<link href="{escape(link)}"/>'
        "<author><name>runwatch</name></author>" + "".join(entries) + "</feed>\n"
    )


class StatusPage:
    """Each format of the page rendered at most once per `cache` seconds, whoever asks."""

    def __init__(
        self,
        config: StatusPageConfig,
        watch: Callable[[], ServiceWatch],
        clock: Callable[[], float],
        base_url: str = "",
    ) -> None:
        self.config = config
        self._watch = watch
        self._clock = clock
        self._base_url = base_url.rstrip("/")
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()
        self.renders = 0  # how many times a format was rendered (the cache's misses)

    def body(self, fmt: str, html: Callable[[dict[str, Any]], str]) -> bytes:
        """The page in `fmt` (html, json or atom), from the cache while it is fresh."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(fmt)
            if cached is not None and cached[0] > now:
                return cached[1]
            snapshot = status_snapshot(self._watch(), self.config.title)
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
