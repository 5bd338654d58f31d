"""What every console page shares: the session of a request, the checks of a form that changes
something, and rendering a page with the console's security headers.

Operators sign in with an operator token or as a configured user. The session is a signed,
HttpOnly, SameSite=Strict cookie that names who signed in and how (`session.py`); it is checked
against the tokens and users files on every request, so revoking a token or removing a user
ends their sessions, and against the store's record of live sessions, so signing out ends it
for good (at every replica). Sign-ins are limited per address and per name, and the password
checks run off the event loop, a few at a time (collector/api/limits.py). Every form that
changes something carries the session's CSRF token. Read-only sessions see every page and no
form that changes anything; the server refuses such changes too.

The routes are in `signin.py`, `overview.py`, `calls.py`, `silences.py` and `report.py`.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from litestar import MediaType, Request, Response
from litestar.response import Redirect

from collector.api.console.filters import FILTERS
from collector.api.console.graphs import ConsoleGraphs
from collector.api.console.session import COOKIE, Session, SessionCodec, session_key
from collector.app import CollectorService
from collector.auth import TokenFileError, hash_token, read_users, verify_password
from collector.errors import Rejection

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
# Everything the console loads comes from the collector itself; no inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# A valid hash of a random password: signing in as an unknown user costs the same time.
_DUMMY_HASH = (
    "pbkdf2_sha256$600000$00000000000000000000000000000000$"
    "0000000000000000000000000000000000000000000000000000000000000000"
)


class Console:
    """The service, the session cookie's codec and the templates, shared by the routes."""

    def __init__(self, service: CollectorService) -> None:
        self.service = service
        self.config = service.config
        self.codec = SessionCodec.from_file(self.config.data_dir / "console.secret")
        self.env = _environment()
        self.env.globals["graphs"] = ConsoleGraphs(service)
        self.secure = self.config.tls is not None
        self.lifetime = float(self.config.operators.session_hours) * 3600

    def session_of(self, request: Request[Any, Any, Any]) -> Session | None:
        """The request's live session, or None."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        service = self.service
        session = self.codec.decode(value, service.clock())
        if session is None:
            return None
        # Still valid? A revoked token, a removed user or a changed role ends the session.
        if session.kind == "token":
            role = service.operators.has_fingerprint(session.name, session.fingerprint)
        else:
            try:
                user = next(
                    (u for u in read_users(self.config.users_file) if u.name == session.name), None
                )
            except TokenFileError as exc:
                log.error("console: cannot read the users file: %s", exc)
                return None
            role = user.role if user and user.fingerprint == session.fingerprint else None
        if role is None or role != session.role:
            return None
        # Signed out (here or at another replica): refused as an expired cookie is.
        if not service.store.session_live(session_key(session), service.clock()):
            return None
        return session

    async def sign_in(self, client: str, token: str, name: str, password: str) -> Session | None:
        """The session for a token or a name and password, or None; Throttled when a limit
        refuses the attempt (before any password is checked)."""
        service = self.service
        service.limits.check_address(client)
        now = service.clock()
        if token:
            found = service.operators.identify(token)
            if found is None:
                return None
            fingerprint = hash_token(token)[len("sha256:") :][:16]
            return Session(
                "token",
                found[0],
                found[1],
                fingerprint,
                now + self.lifetime,
                secrets.token_urlsafe(24),
                secrets.token_urlsafe(24),
            )
        if not name:
            return None
        service.limits.check_signin(name)
        try:
            users = read_users(self.config.users_file)
        except TokenFileError as exc:
            log.error("console: cannot read the users file: %s", exc)
            users = []
        user = next((u for u in users if u.name == name), None)
        # Hash even for an unknown name, so timing does not tell which names exist.
        stored = user.password_hash if user else _DUMMY_HASH
        if (
            not await service.limits.check_password(verify_password, password, stored)
            or user is None
        ):
            return None
        service.limits.signed_in(name)
        return Session(
            "user",
            user.name,
            user.role,
            user.fingerprint,
            service.clock() + self.lifetime,
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(24),
        )

    def page(
        self,
        template: str,
        session: Session | None,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> Response[str]:
        """A template rendered as an HTML page, with the security headers."""
        body = self.render(template, session, **context)
        return Response(
            body,
            status_code=status,
            media_type=MediaType.HTML,
            headers={**SECURITY_HEADERS, **(headers or {})},
        )

    def render(
        self, template: str, session: Session | None, block: str | None = None, **context: Any
    ) -> str:
        """A template as text: the whole page, or only one of its blocks (live.py)."""
        page = self.env.get_template(template)
        values = {
            "session": session,
            "now": self.service.clock(),
            "groups": sorted(self.config.groups),
            **context,
        }
        if block is None:
            return page.render(values)
        return "".join(page.blocks[block](page.new_context(values)))

    @staticmethod
    def to_login(request: Request[Any, Any, Any]) -> Response[Any]:
        """Off to the sign-in page, and back here after it."""
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(f"/login?next={quote(target)}", status_code=303)

    def refused(self, session: Session | None, message: str, status: int) -> Response[str]:
        """The error page, saying why."""
        return self.page("error.html", session, status=status, message=message)

    async def act(
        self,
        request: Request[Any, Any, Any],
        action: str,
        actions: Mapping[str, Callable[[str, dict[str, str]], object]],
        noun: str,
        then: str,
    ) -> Response[Any]:
        """Do the named action for the session's user with the posted form, then show `then`;
        the error page when the form or the action is refused."""
        session, form, refusal = await self.changing(request)
        if refusal is not None:
            return refusal
        assert session is not None
        do = actions.get(action)
        if do is None:
            return self.refused(session, f"No action {action!r} on {noun}.", 404)
        try:
            do(session.name, form)
        except Rejection as rejection:
            return self.refused(session, rejection.message, rejection.status)
        return Redirect(then, status_code=303)

    async def changing(
        self, request: Request[Any, Any, Any]
    ) -> tuple[Session | None, dict[str, str], Response[Any] | None]:
        """Check a form that changes something: a live session, its CSRF token, its role."""
        session = self.session_of(request)
        form = await form_of(request)
        if not same_origin(request):
            log.warning(
                "console: refused a form posted from another site (%s)",
                request.headers.get("origin"),
            )
            return session, form, self.refused(session, "The form came from another site.", 403)
        if session is None:
            return None, form, self.refused(None, "Your session has ended: sign in again.", 401)
        if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
            log.warning("console: %s sent a form without a valid CSRF token", session.name)
            return (
                session,
                form,
                self.refused(
                    session, "The form was stale or not from this console (CSRF check failed).", 403
                ),
            )
        if not session.can_change:
            log.warning(
                "console: read-only %s refused a change at %s", session.name, request.url.path
            )
            return (
                session,
                form,
                self.refused(
                    session,
                    "Your role is read-only: you can see everything and change nothing.",
                    403,
                ),
            )
        return session, form, None


async def form_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The posted form's fields, as text."""
    return {key: str(value) for key, value in (await request.form()).items()}


def same_origin(request: Request[Any, Any, Any]) -> bool:
    """Whether a form post came from this site: browsers send Origin with every POST, and
    one naming another host is a cross-site request (login CSRF and the like)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or an old one: the CSRF token still guards changes
    return urlsplit(origin).netloc == request.headers.get("host", "")


def safe_next(target: str) -> str:
    """Only a path on this site: never an open redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(FILTERS)  # values and times in human units (filters.py)
    env.filters["labels"] = lambda labels: ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return env
