"""The status page for users: /status (HTML), /status.json and /status.atom, with no sign-in.

It lists the services marked `public`, each with its state, and nothing internal unless a
service opts in (`status_details`). Every format is rendered once per `status_page.cache` for
all visitors (collector/services/status.py); `status_page: {enabled: false}` answers 404.
A served collector answers GET and HEAD of them from the cached bytes ahead of Litestar
(collector/api/status_path.py); the routes here answer what that path leaves to Litestar (a
Host to check against a token, test clients of the Litestar app alone)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import Request, Response, get

from collector.api.console.pages import SECURITY_HEADERS, Console
from collector.api.ops import accepts_gzip
from collector.services.status import Rendered, StatusPage

MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "json": "application/json",
    "atom": "application/atom+xml; charset=utf-8",
}
log = logging.getLogger(__name__)
SWITCHED_OFF = b'{"error": "not_found", "message": "the status page is switched off"}'


class StatusAnswers:
    """What a GET of the status page answers, whoever serves it: the cached render with its
    entity tag (304 to a visitor that holds it), or 404 while the page is switched off."""

    def __init__(self, console: Console) -> None:
        service = console.service
        self.service = service
        self.page = StatusPage(
            service.config.status_page,
            lambda: service.service_watch,
            service.clock,
            base_url=service.config.external_url or "",
            history=lambda since, until: (
                service.store.service_changes(since, until),
                {n: state for n, (_, state) in service.store.last_service_states(since).items()},
            ),
            messages=service.store.status_messages,
        )

        def html(snapshot: dict[str, Any]) -> str:
            # Times read relative to the collector's clock, as on every console page.
            return console.env.get_template("status.html").render(
                status=snapshot, now=service.clock()
            )

        self._html = html
        # The raw answer of each format, built once per render: (tag, headers).
        self._raw: dict[tuple[str, bool], tuple[str, list[tuple[bytes, bytes]]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}  # the refresh under way, per format

    @property
    def enabled(self) -> bool:
        return self.service.config.status_page.enabled

    def answer(
        self, fmt: str, if_none_match: str | None, accept_encoding: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of a GET of the page in `fmt`: gzipped when the visitor
        accepts it, 304 when it holds this render already."""
        if not self.enabled:
            return 404, {"Content-Type": "application/json"}, SWITCHED_OFF
        rendered = self.page.entry(fmt, self._html)
        zipped = accepts_gzip(accept_encoding or "")
        headers = self._headers(fmt, rendered, zipped)
        if if_none_match is not None and _matches(if_none_match, rendered.tag):
            return 304, headers, b""
        return 200, headers, rendered.gzipped if zipped else rendered.body

    def _headers(self, fmt: str, rendered: Rendered, zipped: bool) -> dict[str, str]:
        headers = {
            **SECURITY_HEADERS,
            "Cache-Control": f"public, max-age={int(float(self.page.config.cache))}",
            "ETag": gzip_tag(rendered.tag) if zipped else rendered.tag,
            "Vary": "Accept-Encoding",
            "Content-Type": MEDIA_TYPES[fmt],
        }
        if zipped:
            headers["Content-Encoding"] = "gzip"
        return headers

    async def raw(
        self, fmt: str, if_none_match: bytes | None, accept_encoding: bytes | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The same answer as ASGI wants it (status, header pairs, body), for the fast path:
        the last render while the next one is made (StatusPage.refresh), and the header
        pairs encoded once per render and encoding."""
        encoding = accept_encoding.decode("latin-1") if accept_encoding else None
        if not self.enabled:
            status, headers, body = self.answer(fmt, None)
            return status, _encode(headers, len(body)), body
        rendered, fresh = self.page.cached(fmt)
        if rendered is None:
            rendered = self.page.entry(fmt, self._html)
        elif not fresh:
            self._refresh(fmt)
        zipped = accepts_gzip(encoding or "")
        body = rendered.gzipped if zipped else rendered.body
        key = (fmt, zipped)
        built = self._raw.get(key)
        if built is None or built[0] != rendered.tag:
            headers = self._headers(fmt, rendered, zipped)
            built = (rendered.tag, _encode(headers, len(body)))
            self._raw[key] = built
        if if_none_match is not None and _matches(if_none_match.decode("latin-1"), rendered.tag):
            return 304, [pair for pair in built[1] if pair[0] != b"content-length"], b""
        return 200, built[1], body

    def _refresh(self, fmt: str) -> None:
        """Start rendering `fmt` again in the background, unless that is under way."""
        if fmt in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(self.page.refresh(fmt, self._html))
        self._tasks[fmt] = task  # held until done: the loop keeps only weak references
        task.add_done_callback(lambda done: self._refreshed(fmt, done))

    def _refreshed(self, fmt: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(fmt, None)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "rendering the status page failed: %s", task.exception(), exc_info=task.exception()
            )


def gzip_tag(tag: str) -> str:
    """The entity tag of the gzipped bytes: another representation, another tag."""
    return tag[:-1] + '-gz"'


def _matches(if_none_match: str, tag: str) -> bool:
    """Whether If-None-Match names this render, in either encoding (weak comparison, as RFC
    9110 asks for GET)."""
    wanted = if_none_match.strip()
    if wanted == "*":
        return True
    tags = (tag, gzip_tag(tag))
    return any(t.strip().removeprefix("W/") in tags for t in wanted.split(","))


def _encode(headers: dict[str, str], length: int) -> list[tuple[bytes, bytes]]:
    pairs = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return [*pairs, (b"content-length", str(length).encode())]


def status_page_routes(console: Console) -> list[Any]:
    """GET /status, /status.json and /status.atom."""
    answers = StatusAnswers(console)
    console.service.status_answers = answers  # for the fast path ahead of Litestar

    def answer(fmt: str, request: Request[Any, Any, Any]) -> Response[bytes]:
        status, headers, body = answers.answer(
            fmt, request.headers.get("if-none-match"), request.headers.get("accept-encoding")
        )
        media_type = headers.pop("Content-Type")
        if media_type.startswith("text/"):  # Litestar adds the charset to text/* itself
            media_type = media_type.removesuffix("; charset=utf-8")
        return Response(body, status_code=status, media_type=media_type, headers=headers)

    @get("/status", include_in_schema=False)
    async def status_html(request: Request[Any, Any, Any]) -> Response[bytes]:
        return answer("html", request)

    @get("/status.json", summary="The public services and their states (no sign-in)")
    async def status_json(request: Request[Any, Any, Any]) -> Response[bytes]:
        return answer("json", request)

    @get("/status.atom", include_in_schema=False)
    async def status_atom(request: Request[Any, Any, Any]) -> Response[bytes]:
        return answer("atom", request)

    return [status_html, status_json, status_atom]
