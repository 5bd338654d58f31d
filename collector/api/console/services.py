"""The console's services page: each service's state, and what is wrong with its components;
operators post messages on the status page there, and end them."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from collector.api.answers import PathId
from collector.api.console.pages import Console
from collector.api.console.session import Session
from collector.services.messages import UnknownService


def service_page_routes(console: Console) -> list[Any]:
    """GET /services (every signed-in user sees them), POST /services/messages and
    POST /services/messages/{id}/end (operators)."""
    service = console.service

    def page(session: Session, status: int = 200, error: str | None = None) -> Response[str]:
        return console.page(
            "services.html",
            session,
            status=status,
            services=service.services(),
            messages=service.status_messages.listed(),
            status_page=service.config.status_page.enabled,
            error=error,
        )

    @get("/services", include_in_schema=False)
    async def services_page(request: Request[Any, Any, Any]) -> Response[Any]:
        session = console.session_of(request)
        if session is None:
            return console.to_login(request)
        return page(session)

    @post("/services/messages", include_in_schema=False, status_code=303)
    async def post_message(request: Request[Any, Any, Any]) -> Response[Any]:
        session, form, refusal = await console.changing(request)
        if refusal is not None:
            return refusal
        assert session is not None
        text = form.get("text", "").strip()
        if not text or len(text) > 1000 or "\x00" in text:
            return page(session, 422, "write a message of at most 1,000 characters")
        try:
            service.status_messages.post(session.name, text, form.get("service", ""), via="console")
        except UnknownService as exc:
            return page(session, 422, str(exc))
        return Redirect("/services", status_code=303)

    @post("/services/messages/{message_id:int}/end", include_in_schema=False, status_code=303)
    async def end_message(request: Request[Any, Any, Any], message_id: PathId) -> Response[Any]:
        session, _form, refusal = await console.changing(request)
        if refusal is not None:
            return refusal
        assert session is not None
        if service.status_messages.end(message_id, session.name, via="console") is None:
            return console.refused(session, f"No status message {message_id} on the page.", 404)
        return Redirect("/services", status_code=303)

    return [services_page, post_message, end_message]
