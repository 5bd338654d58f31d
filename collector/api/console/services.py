"""The console's services page: each service's state, and what is wrong with its components."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from collector.api.console.pages import Console


def service_page_routes(console: Console) -> list[Any]:
    """GET /services (every signed-in user sees them)."""
    service = console.service

    @get("/services", include_in_schema=False)
    async def services_page(request: Request[Any, Any, Any]) -> Response[Any]:
        session = console.session_of(request)
        if session is None:
            return console.to_login(request)
        return console.page("services.html", session, services=service.services())

    return [services_page]
