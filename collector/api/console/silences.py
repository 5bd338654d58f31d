"""The console's maintenance windows: everyone sees them; operators set and end them."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from checks.settings import Duration
from collector.api.answers import PathId
from collector.api.console.pages import Console
from collector.api.console.session import Session


def silence_page_routes(console: Console) -> list[Any]:
    """GET and POST /silences, POST /silences/{id}/end."""
    service = console.service

    def page(session: Session, status: int = 200, error: str | None = None) -> Response[str]:
        """The silences page, every silence listed, ended ones too."""
        silences = service.silences(include_ended=True)
        return console.page("silences.html", session, status=status, silences=silences, error=error)

    @get("/silences", include_in_schema=False)
    async def silences_page(request: Request[Any, Any, Any]) -> Response[Any]:
        session = console.session_of(request)
        if session is None:
            return console.to_login(request)
        return page(session)

    @post("/silences", include_in_schema=False, status_code=303)
    async def add_silence(request: Request[Any, Any, Any]) -> Response[Any]:
        session, form, refusal = await console.changing(request)
        if refusal is not None:
            return refusal
        assert session is not None
        reason = form.get("reason", "").strip()
        try:
            duration = float(Duration.parse(form.get("duration", "").strip()))
            if duration <= 0 or not reason:
                raise ValueError("give a reason and a duration of more than 0s")
        except ValueError as exc:
            return page(session, 422, str(exc))
        service.add_silence(
            session.name,
            host=form.get("host", "").strip() or "*",
            rule=form.get("rule", "").strip() or "*",
            duration=duration,
            reason=reason[:1000],
            via="console",
        )
        return Redirect("/silences", status_code=303)

    @post("/silences/{silence_id:int}/end", include_in_schema=False, status_code=303)
    async def end_silence(request: Request[Any, Any, Any], silence_id: PathId) -> Response[Any]:
        session, _form, refusal = await console.changing(request)
        if refusal is not None:
            return refusal
        assert session is not None
        if service.end_silence(silence_id, session.name, via="console") is None:
            return console.refused(session, f"No silence {silence_id} in force or to come.", 404)
        return Redirect("/silences", status_code=303)

    return [silences_page, add_silence, end_silence]
