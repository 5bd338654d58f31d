"""The status page for users: /status (HTML), /status.json and /status.atom, with no sign-in.

It lists the services marked `public`, each with its state, and nothing internal unless a
service opts in (`status_details`). Every format is rendered once per `status_page.cache` for
all visitors (collector/services/status.py); `status_page: {enabled: false}` answers 404.
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get

from collector.api.console.pages import SECURITY_HEADERS, Console
from collector.services.status import StatusPage

MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "json": "application/json",
    "atom": "application/atom+xml; charset=utf-8",
}


def status_page_routes(console: Console) -> list[Any]:
    """GET /status, /status.json and /status.atom."""
    service = console.service
    config = service.config
    page = StatusPage(
        config.status_page,
        lambda: service.service_watch,
        service.clock,
        base_url=config.external_url or "",
        history=lambda since, until: (
            service.store.service_changes(since, until),
            {name: state for name, (_, state) in service.store.last_service_states(since).items()},
        ),
        messages=service.store.status_messages,
    )
    service.status_page = page  # for tests and tools: how often it rendered

    def html(snapshot: dict[str, Any]) -> str:
        # Times read relative to the collector's clock, as on every console page.
        return console.env.get_template("status.html").render(status=snapshot, now=service.clock())

    def answer(fmt: str) -> Response[bytes]:
        if not service.config.status_page.enabled:
            return Response(
                b'{"error": "not_found", "message": "the status page is switched off"}',
                status_code=404,
                media_type="application/json",
            )
        seconds = int(float(page.config.cache))
        headers = {**SECURITY_HEADERS, "Cache-Control": f"public, max-age={seconds}"}
        return Response(page.body(fmt, html), media_type=MEDIA_TYPES[fmt], headers=headers)

    @get("/status", include_in_schema=False)
    async def status_html() -> Response[bytes]:
        return answer("html")

    @get("/status.json", summary="The public services and their states (no sign-in)")
    async def status_json() -> Response[bytes]:
        return answer("json")

    @get("/status.atom", include_in_schema=False)
    async def status_atom() -> Response[bytes]:
        return answer("atom")

    return [status_html, status_json, status_atom]
