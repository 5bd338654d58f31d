"""Signing in and out of the console, and its static files (the sign-in page needs them too)."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath
from litestar.response import Redirect

from collector.api.console.pages import HERE, Console, form_of, safe_next, same_origin
from collector.api.console.session import COOKIE, session_key
from collector.api.limits import Throttled, peer_address

log = logging.getLogger(__name__)

_STATIC = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "bulk.js": "text/javascript",
    "silences.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
    "live.js": "text/javascript",
    "lists.css": "text/css",
}

# What a sign-in refused with 429 says, by the limit that refused it.
_SIGNIN_REFUSALS = {
    "address": "Too many failed sign-ins or unknown tokens from your address: try again in "
    "{seconds} seconds.",
    "signin": "Too many sign-in attempts for this name: try again in {seconds} seconds.",
    "busy": "The collector is busy checking other sign-ins: try again in {seconds} seconds.",
}


def signin_routes(console: Console) -> list[Any]:
    """GET and POST /login, POST /logout, GET /static/{name}."""
    service = console.service

    @get("/login", include_in_schema=False)
    async def login_page(request: Request[Any, Any, Any]) -> Response[str]:
        return console.page(
            "login.html", None, next=safe_next(request.query_params.get("next", "/")), error=None
        )

    @post("/login", include_in_schema=False, status_code=303)
    async def login(request: Request[Any, Any, Any]) -> Response[Any]:
        form = await form_of(request)
        if not same_origin(request):
            log.warning(
                "console: refused a sign-in posted from another site (%s)",
                request.headers.get("origin"),
            )
            return console.refused(None, "The form came from another site.", 403)
        target = safe_next(form.get("next", "/"))
        client = peer_address(request.scope)
        token = form.get("token", "").strip()
        name = form.get("user", "").strip()
        try:
            session = await console.sign_in(client, token, name, form.get("password", ""))
        except Throttled as exc:
            # Counted in runwatch_auth_refused_total; a line each would let a storm fill the log.
            log.debug("console: sign-in from %s refused: %s", client or "?", exc)
            message = _SIGNIN_REFUSALS.get(exc.role, "{seconds}").format(
                seconds=exc.retry_after_header
            )
            return console.page(
                "login.html",
                None,
                status=429,
                headers={"Retry-After": exc.retry_after_header},
                next=target,
                error=message,
            )
        if session is None:
            if token or name:  # a blank form guesses nothing
                service.limits.failed(client, "console")
            log.warning("console: failed sign-in from %s", client or "?")
            return console.page(
                "login.html",
                None,
                status=401,
                next=target,
                error="Unknown token, or wrong name or password.",
            )
        now = service.clock()
        with service.store.transaction():
            service.store.prune_sessions(now)
            service.store.add_session(session_key(session), session.name, session.expires)
        log.info("console: %s signed in (%s, %s)", session.name, session.kind, session.role)
        cookie = Cookie(
            COOKIE,
            value=console.codec.encode(session),
            httponly=True,
            samesite="strict",
            secure=console.secure,
            max_age=int(console.lifetime),
            path="/",
        )
        return Redirect(target, status_code=303, cookies=[cookie])

    @post("/logout", include_in_schema=False, status_code=303)
    async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
        session = console.session_of(request)
        await request.form()
        # The cookie is SameSite=Strict: another site cannot send it, so no CSRF token is
        # needed to end the session, and a stale page can still sign out.
        if session is not None and same_origin(request):
            with service.store.transaction():
                service.store.end_session(session_key(session))
            log.info("console: %s signed out", session.name)
        cookie = Cookie(
            COOKIE,
            value="",
            max_age=0,
            httponly=True,
            samesite="strict",
            secure=console.secure,
            path="/",
        )
        return Redirect("/login", status_code=303, cookies=[cookie])

    @get("/static/{name:str}", include_in_schema=False)
    async def static(name: FromPath[str]) -> Response[bytes]:
        if name not in _STATIC:
            return Response(b"not found", status_code=404, media_type=MediaType.TEXT)
        return Response(
            (HERE / "static" / name).read_bytes(),
            media_type=_STATIC[name],
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    return [login_page, login, logout, static]
