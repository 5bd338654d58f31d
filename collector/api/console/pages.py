"""The console's pages and forms: the overview, hosts, calls, silences, audit log and report.

Operators sign in with an operator token or as a configured user. The session is a signed,
HttpOnly, SameSite=Strict cookie that names who signed in and how; it is checked against the
tokens and users files on every request, so revoking a token or removing a user ends their
sessions, and against the store's record of live sessions, so signing out ends it for good
(at every replica). Sign-ins are limited per address and per name, and the password checks
run off the event loop, a few at a time (collector/api/limits.py). Every form that changes
something carries the session's CSRF token. Read-only sessions see every page and no form
that changes anything; the server refuses such changes too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from litestar import MediaType, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath, FromQuery, PathParameter
from litestar.response import Redirect

from checks.settings import Duration
from collector.api.limits import Throttled, peer_address
from collector.app import CollectorService
from collector.auth import ROLE_OPERATOR, TokenFileError, hash_token, read_users, verify_password
from collector.errors import Rejection
from collector.incidents.calls import Call
from collector.service_levels import (
    FORMATS,
    ReportError,
    build_report,
    parse_period,
    render,
    render_html,
)

log = logging.getLogger(__name__)

COOKIE = "runwatch_session"
_HERE = Path(__file__).parent
_STATIC = {"console.css": "text/css", "console.js": "text/javascript", "favicon.svg":
           "image/svg+xml"}
# Everything the console loads comes from the collector itself; no inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# Ids as both stores keep them (signed 64-bit): a bigger one is a 400, not a store error.
PathId = Annotated[int, PathParameter(ge=0, le=2**63 - 1)]


@dataclass(frozen=True, slots=True)
class Session:
    kind: str          # "token" or "user"
    name: str
    role: str
    fingerprint: str   # of the token or user entry it was made from
    expires: float
    csrf: str
    sid: str           # the session's id: the store keeps the live ones (see session_key)

    @property
    def can_change(self) -> bool:
        return self.role == ROLE_OPERATOR


class SessionCodec:
    """Sign and check session cookies with a secret kept in the data dir (HMAC-SHA256)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def from_file(cls, path: Path) -> SessionCodec:
        """The secret in `path`, created (0600) on first use. Replicas share one data dir's."""
        try:
            return cls(bytes.fromhex(path.read_text(encoding="ascii").strip()))
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return cls(bytes.fromhex(path.read_text(encoding="ascii").strip()))
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secret.hex() + "\n")
        return cls(secret)

    def _mac(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()

    def encode(self, session: Session) -> str:
        body = base64.urlsafe_b64encode(json.dumps(
            [session.kind, session.name, session.role, session.fingerprint, session.expires,
             session.csrf, session.sid]).encode()).decode().rstrip("=")  # "=" would need quoting
        return f"{body}.{self._mac(body)}"

    def decode(self, value: str, now: float) -> Session | None:
        body, _, mac = value.partition(".")
        if not body or not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            kind, name, role, fingerprint, expires, csrf, sid = json.loads(
                base64.urlsafe_b64decode(body.encode() + b"=" * (-len(body) % 4)))
            session = Session(str(kind), str(name), str(role), str(fingerprint),
                              float(expires), str(csrf), str(sid))
        except (ValueError, TypeError):
            return None
        return session if session.expires > now else None


def session_key(session: Session) -> str:
    """The key the store keeps a live session under: a hash of its id, so that a copy of the
    database holds nothing a cookie could be made from."""
    return hashlib.sha256(session.sid.encode()).hexdigest()


# What a sign-in refused with 429 says, by the limit that refused it.
_SIGNIN_REFUSALS = {
    "address": "Too many failed sign-ins or unknown tokens from your address: try again in "
               "{seconds} seconds.",
    "signin": "Too many sign-in attempts for this name: try again in {seconds} seconds.",
    "busy": "The collector is busy checking other sign-ins: try again in {seconds} seconds.",
}


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    env.filters["labels"] = lambda labels: ", ".join(f"{k}={v}" for k, v in
                                                     sorted(labels.items()))
    return env


# One closure per page, all sharing the session helpers above them: long, but flat.
def console_routes(service: CollectorService) -> list[Any]:  # noqa: PLR0915
    """The console's pages and forms, served at / by the collector."""
    config = service.config
    codec = SessionCodec.from_file(config.data_dir / "console.secret")
    env = _environment()
    secure = config.tls is not None
    lifetime = float(config.operators.session_hours) * 3600

    def session_of(request: Request[Any, Any, Any]) -> Session | None:
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        session = codec.decode(value, service.clock())
        if session is None:
            return None
        # Still valid? A revoked token, a removed user or a changed role ends the session.
        if session.kind == "token":
            role = service.operators.has_fingerprint(session.name, session.fingerprint)
        else:
            try:
                user = next((u for u in read_users(config.users_file)
                             if u.name == session.name), None)
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

    def page(template: str, session: Session | None, status: int = 200,
             headers: dict[str, str] | None = None, **context: Any) -> Response[str]:
        body = env.get_template(template).render(
            session=session, now=service.clock(), groups=sorted(config.groups), **context)
        return Response(body, status_code=status, media_type=MediaType.HTML,
                        headers={**SECURITY_HEADERS, **(headers or {})})

    def to_login(request: Request[Any, Any, Any]) -> Response[Any]:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(f"/login?next={quote(target)}", status_code=303)

    def refused(session: Session | None, message: str, status: int) -> Response[str]:
        return page("error.html", session, status=status, message=message)

    async def changing(request: Request[Any, Any, Any]
                       ) -> tuple[Session | None, dict[str, str], Response[Any] | None]:
        """Check a form that changes something: a live session, its CSRF token, its role."""
        session = session_of(request)
        form = {key: str(value) for key, value in (await request.form()).items()}
        if not _same_origin(request):
            log.warning("console: refused a form posted from another site (%s)",
                        request.headers.get("origin"))
            return session, form, refused(session, "The form came from another site.", 403)
        if session is None:
            return None, form, refused(None, "Your session has ended: sign in again.", 401)
        if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
            log.warning("console: %s sent a form without a valid CSRF token", session.name)
            return session, form, refused(session, "The form was stale or not from this "
                                                   "console (CSRF check failed).", 403)
        if not session.can_change:
            log.warning("console: read-only %s refused a change at %s", session.name,
                        request.url.path)
            return session, form, refused(session, "Your role is read-only: you can see "
                                                   "everything and change nothing.", 403)
        return session, form, None

    # -- signing in -------------------------------------------------------------------------

    @get("/login", include_in_schema=False)
    async def login_page(request: Request[Any, Any, Any]) -> Response[str]:
        return page("login.html", None, next=_safe_next(request.query_params.get("next", "/")),
                    error=None)

    @post("/login", include_in_schema=False, status_code=303)
    async def login(request: Request[Any, Any, Any]) -> Response[Any]:
        form = {key: str(value) for key, value in (await request.form()).items()}
        if not _same_origin(request):
            log.warning("console: refused a sign-in posted from another site (%s)",
                        request.headers.get("origin"))
            return refused(None, "The form came from another site.", 403)
        target = _safe_next(form.get("next", "/"))
        client = peer_address(request.scope)
        token = form.get("token", "").strip()
        name = form.get("user", "").strip()
        try:
            session = await sign_in(client, token, name, form.get("password", ""))
        except Throttled as exc:
            # Counted in runwatch_auth_refused_total; a line each would let a storm fill the log.
            log.debug("console: sign-in from %s refused: %s", client or "?", exc)
            message = _SIGNIN_REFUSALS.get(exc.role, "{seconds}").format(
                seconds=exc.retry_after_header)
            return page("login.html", None, status=429,
                        headers={"Retry-After": exc.retry_after_header}, next=target,
                        error=message)
        if session is None:
            if token or name:  # a blank form guesses nothing
                service.limits.failed(client, "console")
            log.warning("console: failed sign-in from %s", client or "?")
            return page("login.html", None, status=401, next=target,
                        error="Unknown token, or wrong name or password.")
        now = service.clock()
        with service.store.transaction():
            service.store.prune_sessions(now)
            service.store.add_session(session_key(session), session.name, session.expires)
        log.info("console: %s signed in (%s, %s)", session.name, session.kind, session.role)
        cookie = Cookie(COOKIE, value=codec.encode(session), httponly=True, samesite="strict",
                        secure=secure, max_age=int(lifetime), path="/")
        return Redirect(target, status_code=303, cookies=[cookie])

    async def sign_in(client: str, token: str, name: str, password: str) -> Session | None:
        """The session for a token or a name and password, or None; Throttled when a limit
        refuses the attempt (before any password is checked)."""
        service.limits.check_address(client)
        now = service.clock()
        if token:
            found = service.operators.identify(token)
            if found is None:
                return None
            fingerprint = hash_token(token)[len("sha256:"):][:16]
            return Session("token", found[0], found[1], fingerprint, now + lifetime,
                           secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        if not name:
            return None
        service.limits.check_signin(name)
        try:
            users = read_users(config.users_file)
        except TokenFileError as exc:
            log.error("console: cannot read the users file: %s", exc)
            users = []
        user = next((u for u in users if u.name == name), None)
        # Hash even for an unknown name, so timing does not tell which names exist.
        stored = user.password_hash if user else _DUMMY_HASH
        if not await service.limits.check_password(verify_password, password, stored) \
                or user is None:
            return None
        service.limits.signed_in(name)
        return Session("user", user.name, user.role, user.fingerprint, service.clock() + lifetime,
                       secrets.token_urlsafe(24), secrets.token_urlsafe(24))

    @post("/logout", include_in_schema=False, status_code=303)
    async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
        session = session_of(request)
        await request.form()
        # The cookie is SameSite=Strict: another site cannot send it, so no CSRF token is
        # needed to end the session, and a stale page can still sign out.
        if session is not None and _same_origin(request):
            with service.store.transaction():
                service.store.end_session(session_key(session))
            log.info("console: %s signed out", session.name)
        cookie = Cookie(COOKIE, value="", max_age=0, httponly=True, samesite="strict",
                        secure=secure, path="/")
        return Redirect("/login", status_code=303, cookies=[cookie])

    @get("/static/{name:str}", include_in_schema=False)
    async def static(name: FromPath[str]) -> Response[bytes]:
        if name not in _STATIC:
            return Response(b"not found", status_code=404, media_type=MediaType.TEXT)
        return Response((_HERE / "static" / name).read_bytes(), media_type=_STATIC[name],
                        headers={"Cache-Control": "max-age=300",
                                 "X-Content-Type-Options": "nosniff"})

    # -- pages ------------------------------------------------------------------------------

    @get("/", include_in_schema=False)
    async def overview(request: Request[Any, Any, Any]) -> Response[Any]:
        session = session_of(request)
        if session is None:
            return to_login(request)
        hosts = service.hosts()
        by_state: dict[str, list[str]] = {}
        for host in hosts:
            by_state.setdefault(host["state"], []).append(host["host"])
        open_calls = service.calls("open", None, 5000)
        by_group: dict[str, list[Call]] = {}
        for call in open_calls:
            by_group.setdefault(call.group, []).append(call)
        silences = [s for s in service.silences() if s["active"]]
        return page("overview.html", session, hosts=hosts, by_state=by_state,
                    by_group=by_group, stale=[h for h in hosts if h["state"] == "STALE"],
                    silences=silences)

    @get("/hosts/{host:str}", include_in_schema=False)
    async def host_page(request: Request[Any, Any, Any], host: FromPath[str]
                        ) -> Response[Any]:
        session = session_of(request)
        if session is None:
            return to_login(request)
        found = service.hosts(host)
        if not found:
            return refused(session, f"No host {host} has reported.", 404)
        states = [{"rule": rule, "labels": json.loads(key), "state": state.severity.name,
                   "value": state.value, "since": state.changed_at, "call_id": state.call_id,
                   "silenced": state.silenced, "flapping": state.flapping}
                  for (rule, name, key), state in sorted(service.fleet.states.items())
                  if name == host]
        calls = [c for c in service.calls(None, None, 5000) if c.host == host]
        return page("host.html", session, host=found[0], states=states, calls=calls)

    @get("/calls", include_in_schema=False)
    async def calls_page(request: Request[Any, Any, Any], group: FromQuery[str] = "",
                         sink: FromQuery[str] = "") -> Response[Any]:
        state = request.query_params.get("state", "open")  # `state` is Litestar's own name
        session = session_of(request)
        if session is None:
            return to_login(request)
        status = state if state in ("open", "resolved") else None
        calls = service.calls(status, group or None, 1000)  # type: ignore[arg-type]
        if sink:
            calls = [c for c in calls if c.group in config.groups
                     and config.groups[c.group].sink == sink]
        rows = [_call_row(service, c) for c in calls]
        return page("calls.html", session, calls=rows, group=group, state=state, sink=sink,
                    sinks=sorted(config.sinks))

    @get("/calls/{call_id:int}", include_in_schema=False)
    async def call_page(request: Request[Any, Any, Any], call_id: PathId
                        ) -> Response[Any]:
        session = session_of(request)
        if session is None:
            return to_login(request)
        call = service.store.get_call(call_id)
        if call is None:
            return refused(session, f"No call {call_id}.", 404)
        events = service.store.call_events(call_id)
        row = _call_row(service, call)
        acked = any(e.kind == "acknowledged" for e in events)
        return page("call.html", session, call=call, row=row, events=events, acked=acked)

    @post("/calls/{call_id:int}/{action:str}", include_in_schema=False, status_code=303)
    async def call_action(request: Request[Any, Any, Any], call_id: PathId,
                          action: FromPath[str]) -> Response[Any]:
        session, form, refusal = await changing(request)
        if refusal is not None:
            return refusal
        assert session is not None
        try:
            if action == "acknowledge":
                service.acknowledge_call(call_id, session.name, via="console")
            elif action == "comment":
                service.comment_call(call_id, session.name, form.get("text", ""),
                                     via="console")
            elif action == "resolve":
                service.resolve_call(call_id, session.name, form.get("text", ""),
                                     via="console")
            else:
                return refused(session, f"No action {action!r} on calls.", 404)
        except Rejection as rejection:
            return refused(session, rejection.message, rejection.status)
        return Redirect(f"/calls/{call_id}", status_code=303)

    @get("/silences", include_in_schema=False)
    async def silences_page(request: Request[Any, Any, Any]) -> Response[Any]:
        session = session_of(request)
        if session is None:
            return to_login(request)
        return page("silences.html", session, silences=service.silences(include_ended=True),
                    error=None)

    @post("/silences", include_in_schema=False, status_code=303)
    async def add_silence(request: Request[Any, Any, Any]) -> Response[Any]:
        session, form, refusal = await changing(request)
        if refusal is not None:
            return refusal
        assert session is not None
        reason = form.get("reason", "").strip()
        try:
            duration = float(Duration.parse(form.get("duration", "").strip()))
            if duration <= 0 or not reason:
                raise ValueError("give a reason and a duration of more than 0s")
        except ValueError as exc:
            return page("silences.html", session, status=422,
                        silences=service.silences(include_ended=True), error=str(exc))
        service.add_silence(session.name, host=form.get("host", "").strip() or "*",
                            rule=form.get("rule", "").strip() or "*", duration=duration,
                            reason=reason[:1000], via="console")
        return Redirect("/silences", status_code=303)

    @post("/silences/{silence_id:int}/end", include_in_schema=False, status_code=303)
    async def end_silence(request: Request[Any, Any, Any], silence_id: PathId
                          ) -> Response[Any]:
        session, _form, refusal = await changing(request)
        if refusal is not None:
            return refusal
        assert session is not None
        if service.end_silence(silence_id, session.name, via="console") is None:
            return refused(session, f"No silence {silence_id} in force or to come.", 404)
        return Redirect("/silences", status_code=303)

    @get("/audit", include_in_schema=False)
    async def audit_page(request: Request[Any, Any, Any]) -> Response[Any]:
        session = session_of(request)
        if session is None:
            return to_login(request)
        return page("audit.html", session, entries=service.store.list_audit(500))

    @get("/report", include_in_schema=False)
    async def report_page(request: Request[Any, Any, Any], period: FromQuery[str] = "",
                          group: FromQuery[str] = "") -> Response[Any]:
        format_ = request.query_params.get("format", "")
        session = session_of(request)
        if session is None:
            return to_login(request)
        label = period or datetime.fromtimestamp(service.clock(), UTC).strftime("%Y-%m")
        try:
            report = build_report(service.store, config, parse_period(label), group or None,
                                  as_of=service.clock())
        except ReportError as exc:
            return refused(session, str(exc), 422)
        if format_ in FORMATS:
            media = {"json": MediaType.JSON, "csv": "text/csv", "md": "text/markdown",
                     "html": MediaType.HTML}[format_]
            name = f"runwatch-report-{label}{'-' + group if group else ''}.{format_}"
            return Response(render(report, format_), media_type=media, headers={
                **SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})
        query = urlencode({"period": label, **({"group": group} if group else {})})
        return page("report.html", session, report_html=render_html(report, standalone=False),
                    period=label, group=group, query=query, formats=FORMATS,
                    host_groups=sorted(g.name for g in config.host_groups))

    return [login_page, login, logout, static, overview, host_page, calls_page, call_page,
            call_action, silences_page, add_silence, end_silence, audit_page, report_page]


# A valid hash of a random password: signing in as an unknown user costs the same time.
_DUMMY_HASH = ("pbkdf2_sha256$600000$00000000000000000000000000000000$"
               "0000000000000000000000000000000000000000000000000000000000000000")


def _same_origin(request: Request[Any, Any, Any]) -> bool:
    """Whether a form post came from this site: browsers send Origin with every POST, and
    one naming another host is a cross-site request (login CSRF and the like)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or an old one: the CSRF token still guards changes
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _safe_next(target: str) -> str:
    """Only a path on this site: never an open redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _call_row(service: CollectorService, call: Call) -> dict[str, Any]:
    group = service.config.groups.get(call.group)
    sink = group.sink if group else ""
    builtin = service.is_builtin_call(call)
    link = None if builtin or not sink else service.store.get_link(call.id, sink)
    return {"call": call, "sink": sink, "builtin": builtin,
            "ticket_url": link.url if link else None,
            "ticket_id": link.remote_id if link else None}
