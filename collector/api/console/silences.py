"""The console's maintenance windows: everyone sees them; operators set and end them.

Setting one is made safe: the form has no wildcard defaults (hosts, rules, duration and reason
are all asked for), "Preview" shows which hosts and rules the globs match now before anything
is saved (a page of its own without script; in place with static/silences.js), and a silence
over `silences.confirm_over` of the fleet is saved only with a ticked confirmation that names
the very globs previewed, checked by the server.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromQuery
from litestar.response import Redirect

from checks.settings import Duration
from collector.api.answers import PathId
from collector.api.console.pages import Console
from collector.api.console.session import Session
from collector.errors import Rejection
from collector.evaluation.silences import MAX_SILENCE_SECONDS, SilenceReach, check_pattern

FIELDS = ("host", "rule", "duration", "reason")


def silence_page_routes(console: Console) -> list[Any]:
    """GET and POST /silences, GET /silences/preview, POST /silences/{id}/end."""
    service = console.service

    def page(
        session: Session,
        form: dict[str, str],
        status: int = 200,
        error: str | None = None,
        reach: SilenceReach | None = None,
    ) -> Response[str]:
        return _page(console, session, form, status=status, error=error, reach=reach)

    @get("/silences", include_in_schema=False)
    async def silences_page(
        request: Request[Any, Any, Any], host: FromQuery[str] = "", rule: FromQuery[str] = ""
    ) -> Response[Any]:
        session = console.session_of(request)
        if session is None:
            return console.to_login(request)
        # A link may fill in the globs (a host's page: "silence this host"); never a default.
        return page(session, {"host": host[:255], "rule": rule[:255]})

    @get("/silences/preview", include_in_schema=False)
    async def preview_fragment(
        request: Request[Any, Any, Any],
        host: FromQuery[str] = "",
        rule: FromQuery[str] = "",
        duration: FromQuery[str] = "",
    ) -> Response[Any]:
        """The preview alone, for static/silences.js to put in place."""
        session = console.session_of(request)
        if session is None:
            return console.refused(None, "Your session has ended: sign in again.", 401)
        try:
            reach = service.silence_reach(check_pattern(host, "host"), check_pattern(rule, "rule"))
        except Rejection as rejection:
            return console.page(
                "_silence_preview.html",
                session,
                status=422,
                reach=None,
                ends_at=None,
                preview_error=rejection.message,
            )
        return console.page("_silence_preview.html", session, **_preview(console, reach, duration))

    @post("/silences", include_in_schema=False, status_code=303)
    async def add_silence(request: Request[Any, Any, Any]) -> Response[Any]:
        session, form, refusal = await console.changing(request)
        if refusal is not None:
            return refusal
        assert session is not None
        try:
            host = check_pattern(form.get("host", ""), "host")
            rule = check_pattern(form.get("rule", ""), "rule")
        except Rejection as rejection:
            return page(session, form, 422, rejection.message)
        reach = service.silence_reach(host, rule)
        if form.get("do") == "preview":
            return page(session, form, reach=reach)
        reason = form.get("reason", "").strip()
        try:
            duration = float(Duration.parse(form.get("duration", "").strip()))
            if not 0 < duration <= MAX_SILENCE_SECONDS:
                raise ValueError("the duration must be more than 0s and at most ten years")
            if not reason:
                raise ValueError("say why: the reason is recorded with your name")
        except ValueError as exc:
            return page(session, form, 422, str(exc), reach)
        # The confirmation holds only for the globs it was given for (the preview's).
        confirmed = form.get("confirm_fleet_share") == "yes" and (
            form.get("confirmed_host"),
            form.get("confirmed_rule"),
        ) == (host, rule)
        try:
            service.add_confirmed_silence(
                session.name,
                host=host,
                rule=rule,
                duration=duration,
                reason=reason[:1000],
                confirmed=confirmed,
                via="console",
            )
        except Rejection as rejection:
            return page(session, form, rejection.status, rejection.message, reach)
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

    return [silences_page, preview_fragment, add_silence, end_silence]


def _page(
    console: Console,
    session: Session,
    form: dict[str, str],
    *,
    status: int,
    error: str | None,
    reach: SilenceReach | None,
) -> Response[str]:
    """The silences page, every silence listed, ended ones too; the form as it was sent."""
    return console.page(
        "silences.html",
        session,
        status=status,
        silences=console.service.silences(include_ended=True),
        error=error,
        form={name: form.get(name, "") for name in FIELDS},
        **_preview(console, reach, form.get("duration", "")),
    )


def _preview(console: Console, reach: SilenceReach | None, duration: str) -> dict[str, Any]:
    """What the preview shows: the reach, and when the silence would end."""
    ends_at = None
    if reach is not None:
        try:
            seconds = float(Duration.parse(duration.strip()))
            if 0 < seconds <= MAX_SILENCE_SECONDS:
                ends_at = console.service.clock() + seconds
        except ValueError:
            pass
    return {"reach": reach, "ends_at": ends_at, "preview_error": None}
