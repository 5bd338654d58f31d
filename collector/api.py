"""The collector's HTTP API (Litestar): the agents' door, the read side, health and metrics."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import gzip
import logging
import sqlite3
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

import msgspec
from litestar import Litestar, MediaType, Request, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter, QueryParameter

from checks.schema import MAX_TIMESTAMP, Report, decode_report
from checks.settings import Duration, key_path
from collector.access import HostPolicy, exposure_warnings
from collector.auth import (
    TokenExists,
    TokenFileError,
    add_token,
    check_host_name,
    read_tokens,
    revoke_token,
    token_fingerprint,
)
from collector.batching import IngestQueue
from collector.calls import Call
from collector.console import console_routes
from collector.limits import Throttled, peer_address
from collector.service import CollectorService, Rejection
from collector.store import AuditEntry, OutboxOp, Silence
from runwatch import __version__

log = logging.getLogger(__name__)

# Ids of calls, silences and outbox operations: both stores keep them as signed 64-bit integers,
# so a bigger number is refused with 400 rather than overflowing in the store.
_MAX_ID = 2**63 - 1
PathId = Annotated[int, PathParameter(ge=0, le=_MAX_ID)]
QueryId = Annotated[int, QueryParameter(ge=0, le=_MAX_ID)]
OptionalQueryId = Annotated[int | None, QueryParameter(ge=0, le=_MAX_ID)]
# The longest silence: ten years.
_MAX_SILENCE_SECONDS = 10 * 366 * 86400.0

# The text format /metrics writes (Litestar adds the charset).
METRICS_MEDIA_TYPE = "text/plain; version=0.0.4"
# The event loop's lag is sampled with a timer this often (runwatch_event_loop_lag_seconds).
LAG_PERIOD = 0.25
# A tick gives the event loop back after this much work. Each step of a report (read, parse,
# ingest, answer) can wait one slice behind it, so the slice is short: 10 ms slices added
# 50 ms and more to a report that came during a tick at 10,000 hosts.
TICK_SLICE = 0.002
# Between slices the tick waits this long, so reports get the loop for at least as long as the
# tick does. With no pause, each step of a report (a step is one turn of the loop) waited for
# a slice, and a slice that holds a replica's host (a database round trip or a reload) can run
# well past 2 ms: reports arriving during a tick at 10,000 hosts waited 100-300 ms.
TICK_PAUSE = 0.002


def _error(rejection: Rejection) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"error": rejection.reason, "message": rejection.message}
    if rejection.field is not None:
        body["field"] = rejection.field
    headers = {"WWW-Authenticate": "Bearer"} if rejection.status == 401 else None
    return Response(body, status_code=rejection.status, headers=headers)


def _throttled(request: Request[Any, Any, Any], exc: Throttled) -> Response[dict[str, Any]]:
    """Answer a request over its token's rate limit: 429, and when to come back."""
    # An address refused after failed authentications was logged once, when it was refused:
    # a line for each of its requests would let it fill the log.
    log.log(logging.DEBUG if exc.role == "address" else logging.INFO,
            "%s request %s %s throttled; retry after %ss", exc.role, request.method,
            request.url.path, exc.retry_after_header)
    return Response({"error": "throttled", "message": str(exc)}, status_code=429,
                    headers={"Retry-After": exc.retry_after_header})


async def _read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    """Read the body, refusing more than `limit` bytes before or after gzip (no zip bombs)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejection(413, "too_large", f"body of {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejection(413, "too_large", f"body over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise Rejection(400, "malformed", f"body is not valid gzip: {exc}") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise Rejection(413, "too_large", f"body inflates past the limit of {limit} bytes")
    elif encoding != "identity":
        raise Rejection(415, "malformed", f"unsupported Content-Encoding {encoding!r}; "
                                          "use gzip or none")
    return body


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (and does not refuse it with q=0)."""
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip"):
            continue
        quality = params.strip().lower().removeprefix("q=")
        try:
            return not params.strip() or float(quality) > 0
        except ValueError:
            return False
    return False


def gzip_body(body: bytes) -> bytes:
    """Compress a /metrics body. Level 1: text this repetitive shrinks ~9x at level 1, and
    higher levels cost several times the CPU for a few percent."""
    return gzip.compress(body, compresslevel=1, mtime=0)


def _decode(body: bytes) -> Report:
    try:
        return decode_report(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        message, _, where = text.partition(" - at `$")
        path = key_path(where.rstrip("`")) if where else None
        raise Rejection(422, "invalid", message, path) from None
    except msgspec.DecodeError as exc:
        raise Rejection(400, "malformed", f"body is not valid JSON: {exc}") from None


def _call_json(call: Call) -> dict[str, Any]:
    return {
        "id": call.id, "fingerprint": call.fingerprint, "host": call.host, "rule": call.rule,
        "labels": call.labels, "group": call.group, "assign": call.assign,
        "severity": call.severity, "priority": call.priority, "status": call.status,
        "summary": call.summary, "description": call.description,
        "first_seen": call.first_seen, "opened_at": call.opened_at,
        "updated_at": call.updated_at, "resolved_at": call.resolved_at,
        "reopened": call.reopened,
    }


def _op_json(op: OutboxOp) -> dict[str, Any]:
    return {"id": op.id, "call_id": op.call_id, "sink": op.sink, "op": op.op,
            "status": op.status, "attempts": op.attempts, "created_at": op.created_at,
            "next_attempt_at": op.next_attempt_at, "delivered_at": op.delivered_at,
            "last_error": op.last_error}


def as_bearer(authorization: str | None) -> str | None:
    """The Authorization header as Bearer credentials. Basic ones (Prometheus's `basic_auth`)
    carry the token as their password, whatever the user name; None if they are malformed."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return authorization
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = decoded.partition(":")
    return f"Bearer {password}" if colon and password.strip() else None


def _outbox_routes(service: CollectorService) -> list[Any]:
    """The outbox's read endpoint, and its repairs (operators, audited)."""

    def operator(request: Request[Any, Any, Any]) -> str:
        return service.authenticate_operator(request.headers.get("authorization"),
                                             client=peer_address(request.scope))

    @get("/api/v1/outbox", summary="Call operations for help desks: pending, dead or done",
         tags=["read"])
    async def get_outbox(status: FromQuery[Literal["pending", "dead", "done", "all"]] = "all",
                         limit: FromQuery[int] = 200) -> list[dict[str, Any]]:
        wanted = None if status == "all" else status
        return [_op_json(op) for op in service.store.list_ops(wanted, max(1, min(limit, 5000)))]

    @post("/api/v1/outbox/retry", status_code=200, tags=["admin"],
          summary="Put dead letters back in line (all, or one by id) (operators)")
    async def retry_outbox(request: Request[Any, Any, Any], op_id: OptionalQueryId = None
                           ) -> Response[dict[str, Any]]:
        try:
            who = operator(request)
        except Rejection as rejection:
            return _error(rejection)
        target = "every dead letter" if op_id is None else f"outbox operation {op_id}"
        with service.store.transaction():
            count = service.store.retry_dead(op_id, service.clock())
            if count:
                service.audit(who, "outbox.retry", target, f"{count} put back in line")
        if service.outbox is not None:
            service.outbox.notify()
        log.info("operator %s put %d dead letter(s) back in line", who, count)
        return Response({"retried": count})

    @post("/api/v1/outbox/discard", status_code=200, tags=["admin"],
          summary="Give up on one dead letter so its call's later operations go (operators)")
    async def discard_outbox(request: Request[Any, Any, Any], op_id: QueryId
                             ) -> Response[dict[str, Any]]:
        try:
            who = operator(request)
        except Rejection as rejection:
            return _error(rejection)
        with service.store.transaction():
            count = service.store.discard_dead(op_id, service.clock())
            if count:
                service.audit(who, "outbox.discard", f"outbox operation {op_id}")
        if service.outbox is not None:
            service.outbox.notify()
        log.warning("operator %s discarded dead letter %d (%d)", who, op_id, count)
        return Response({"discarded": count})

    return [get_outbox, retry_outbox, discard_outbox]


class EnrolRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Ask for an agent token for `host`; `replace` swaps an existing one for a new one."""

    host: str
    replace: bool = False


def _token_routes(service: CollectorService) -> list[Any]:
    """Agent token enrolment for operators (`runwatch deploy`): list, create, revoke."""
    path = service.config.tokens_file

    def operator(request: Request[Any, Any, Any], change: bool = True) -> str:
        return service.authenticate_operator(request.headers.get("authorization"),
                                             change=change, client=peer_address(request.scope))

    def listing(host: str | None) -> list[dict[str, Any]]:
        return [{"host": e.host, "created_at": e.created_at, "fingerprint": e.fingerprint}
                for e in read_tokens(path) if host is None or e.host == host]

    @get("/api/v1/tokens", summary="Hosts with agent tokens (operators)", tags=["admin"])
    async def list_tokens(request: Request[Any, Any, Any]) -> Response[Any]:
        try:
            operator(request, change=False)
            return Response(listing(None))
        except Rejection as rejection:
            return _error(rejection)

    @get("/api/v1/tokens/{host:str}", summary="One host's agent token fingerprint (operators)",
         tags=["admin"])
    async def get_token(request: Request[Any, Any, Any], host: FromPath[str]) -> Response[Any]:
        try:
            operator(request, change=False)
        except Rejection as rejection:
            return _error(rejection)
        found = listing(host)
        if not found:
            return Response({"error": "not_found", "message": f"{host} has no token"},
                            status_code=404)
        return Response(found[0])

    @post("/api/v1/tokens", status_code=201, summary="Enrol a host: create its agent token, "
          "returned once (operators)", tags=["admin"])
    async def enrol(request: Request[Any, Any, Any], data: JSONBody[EnrolRequest]) -> Response[Any]:
        try:
            who = operator(request)
            check_host_name(data.host)
        except Rejection as rejection:
            return _error(rejection)
        except TokenFileError as exc:
            return _error(Rejection(422, "invalid", str(exc), "host"))
        try:
            token = add_token(path, data.host, replace=data.replace)
        except TokenExists as exc:
            return Response({"error": "conflict", "message": str(exc)}, status_code=409)
        log.info("operator %s enrolled host %s%s", who, data.host,
                 " (token replaced)" if data.replace else "")
        service.audit(who, "token.enrol", f"host {data.host}",
                      "token replaced" if data.replace else "")
        return Response({"host": data.host, "token": token,
                         "fingerprint": token_fingerprint(token)}, status_code=201)

    @delete("/api/v1/tokens/{host:str}", status_code=200,
            summary="Revoke a host's agent token; its next report gets 401 (operators)",
            tags=["admin"])
    async def revoke(request: Request[Any, Any, Any], host: FromPath[str]) -> Response[Any]:
        try:
            who = operator(request)
        except Rejection as rejection:
            return _error(rejection)
        if not revoke_token(path, host):
            return Response({"error": "not_found", "message": f"{host} has no token"},
                            status_code=404)
        log.info("operator %s revoked the token of host %s", who, host)
        service.audit(who, "token.revoke", f"host {host}")
        return Response({"host": host, "revoked": True})

    return [list_tokens, get_token, enrol, revoke]


# Text without NUL: PostgreSQL cannot store it, and no name or reason needs it.
_NO_NUL = r"^[^\x00]*$"


class CommentRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A comment on a call, or the note that goes with resolving it."""

    text: Annotated[str, msgspec.Meta(max_length=5000, pattern=_NO_NUL)] = ""


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at, "actor": entry.actor, "action": entry.action,
            "target": entry.target, "detail": entry.detail, "via": entry.via}


def _call_action_routes(service: CollectorService) -> list[Any]:
    """Calls in the built-in register handled by hand, and the audit log (operators)."""

    def act(request: Request[Any, Any, Any], call_id: int, action: str, text: str
            ) -> Response[Any]:
        try:
            who = service.authenticate_operator(request.headers.get("authorization"),
                                                client=peer_address(request.scope))
            if action == "acknowledge":
                call = service.acknowledge_call(call_id, who)
            elif action == "comment":
                call = service.comment_call(call_id, who, text)
            else:
                call = service.resolve_call(call_id, who, text)
        except Rejection as rejection:
            log.warning("call %d: %s refused: %d %s", call_id, action, rejection.status,
                        rejection.message)
            return _error(rejection)
        return Response(_call_json(call))

    @post("/api/v1/calls/{call_id:int}/acknowledge", status_code=200, tags=["admin"],
          summary="Acknowledge a call in the built-in register (operators)")
    async def acknowledge(request: Request[Any, Any, Any], call_id: PathId
                          ) -> Response[Any]:
        return act(request, call_id, "acknowledge", "")

    @post("/api/v1/calls/{call_id:int}/comment", status_code=200, tags=["admin"],
          summary="Comment on a call in the built-in register (operators)")
    async def comment(request: Request[Any, Any, Any], call_id: PathId,
                      data: JSONBody[CommentRequest]) -> Response[Any]:
        return act(request, call_id, "comment", data.text)

    @post("/api/v1/calls/{call_id:int}/resolve", status_code=200, tags=["admin"],
          summary="Resolve a call in the built-in register by hand (operators)")
    async def resolve(request: Request[Any, Any, Any], call_id: PathId,
                      data: JSONBody[CommentRequest]) -> Response[Any]:
        return act(request, call_id, "resolve", data.text)

    @get("/api/v1/audit", summary="Changes made by people, newest first (operator tokens, "
         "read-only ones too)", tags=["admin"])
    async def audit(request: Request[Any, Any, Any], limit: FromQuery[int] = 200
                    ) -> Response[Any]:
        try:
            service.authenticate_operator(request.headers.get("authorization"), change=False,
                                          client=peer_address(request.scope))
        except Rejection as rejection:
            return _error(rejection)
        return Response([audit_json(e)
                         for e in service.store.list_audit(max(1, min(limit, 5000)))])

    return [acknowledge, comment, resolve, audit]


class SilenceRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Silence calls for hosts and rules matching these globs, for `duration` (e.g. "2h")."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000, pattern=_NO_NUL)]
    duration: str | float
    host: Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=_NO_NUL)] = "*"
    rule: Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=_NO_NUL)] = "*"
    # Unix time; default: now
    starts_at: Annotated[float, msgspec.Meta(ge=0, le=MAX_TIMESTAMP)] | None = None


def _silence_json(silence: Silence, now: float) -> dict[str, Any]:
    return {"id": silence.id, "source": "silence", "host": silence.host_pattern,
            "rule": silence.rule_pattern, "starts_at": silence.starts_at,
            "ends_at": silence.ends_at, "reason": silence.reason,
            "created_by": silence.created_by, "created_at": silence.created_at,
            "ended_by": silence.ended_by, "active": silence.active(now)}


def _silence_routes(service: CollectorService) -> list[Any]:
    """Maintenance windows: anyone may read them; operators set and end them."""

    def operator(request: Request[Any, Any, Any]) -> str:
        return service.authenticate_operator(request.headers.get("authorization"),
                                             client=peer_address(request.scope))

    @get("/api/v1/silences", summary="Maintenance windows: operators' silences and the weekly "
         "windows of the config", tags=["read"])
    async def list_silences(include_ended: FromQuery[bool] = False) -> list[dict[str, Any]]:
        return service.silences(include_ended=include_ended)

    @post("/api/v1/silences", status_code=201, summary="Silence calls for matching hosts and "
          "rules for a while; records who and why (operators)", tags=["admin"])
    async def add_silence(request: Request[Any, Any, Any], data: JSONBody[SilenceRequest]
                          ) -> Response[Any]:
        try:
            who = operator(request)
        except Rejection as rejection:
            return _error(rejection)
        try:
            duration = float(Duration.parse(data.duration))
        except ValueError as exc:
            return _error(Rejection(422, "invalid", str(exc), "duration"))
        if not 0 < duration <= _MAX_SILENCE_SECONDS:
            return _error(Rejection(422, "invalid", "the duration must be more than 0s and at "
                                    "most ten years", "duration"))
        silence = service.add_silence(who, host=data.host, rule=data.rule, duration=duration,
                                      reason=data.reason, starts_at=data.starts_at)
        return Response(_silence_json(silence, service.clock()), status_code=201)

    @delete("/api/v1/silences/{silence_id:int}", status_code=200,
            summary="End a silence now (operators)", tags=["admin"])
    async def end_silence(request: Request[Any, Any, Any], silence_id: PathId
                          ) -> Response[Any]:
        try:
            who = operator(request)
        except Rejection as rejection:
            return _error(rejection)
        ended = service.end_silence(silence_id, who)
        if ended is None:
            return Response({"error": "not_found",
                             "message": f"no silence {silence_id} in force or to come"},
                            status_code=404)
        return Response({**_silence_json(ended, service.clock()), "ended_by": who,
                         "active": False})

    @get("/api/v1/rules/{rule:str}/explain", summary="Which thresholds apply to a rule on a "
         "host, and why (host groups, flapping, maintenance, parents)", tags=["read"])
    async def explain(rule: FromPath[str], host: FromQuery[str]) -> Response[Any]:
        found = service.explain(host, rule)
        if found is None:
            return Response({"error": "not_found", "message": f"no rule {rule!r}"},
                            status_code=404)
        return Response(found)

    return [list_silences, add_silence, end_silence, explain]


Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]


def _read_guard(service: CollectorService) -> Guard:
    """With `operators: {read_api: token}`, the read API (routes tagged `read`) answers only
    to operator tokens, read-only ones included (Bearer, or Basic with the token as
    password); 401 for anyone else."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        tags = getattr(handler, "tags", None) or ()
        if service.config.operators.read_api == "token" and "read" in tags:
            service.authenticate_operator(as_bearer(connection.headers.get("authorization")),
                                          change=False, client=peer_address(connection.scope))

    return guard


def _metrics_guard(service: CollectorService) -> Guard:
    """With `operators: {metrics: token}`, /metrics answers only to operator tokens, as the
    read API does (Prometheus: `authorization` or `basic_auth` with the token as password)."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if service.config.operators.metrics == "token":
            service.authenticate_operator(as_bearer(connection.headers.get("authorization")),
                                          change=False, client=peer_address(connection.scope))

    return guard


def _host_guard(service: CollectorService) -> Guard:
    """Refuse (421) a request naming a host the collector does not serve, unless it carries a
    valid token: a page that rebinds its own DNS name to the collector's address has none,
    while agents and operators' tools may reach it by any name (a DNS alias). Handlers with
    `opt={"any_host": True}` (liveness, which load balancers probe by any name) are exempt."""
    policy = HostPolicy.from_config(service.config)

    def holds_token(authorization: str | None) -> bool:
        scheme, _, token = (as_bearer(authorization) or "").partition(" ")
        token = token.strip()
        return scheme.lower() == "bearer" and bool(token) and (
            service.tokens.host_for(token) is not None
            or service.operators.identify(token) is not None)

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        host = connection.headers.get("host", "")
        if handler.opt.get("any_host") or policy.allows(host) \
                or holds_token(connection.headers.get("authorization")):
            return
        log.warning("refused %s %s naming host %r, which is not one of this collector's "
                    "names (allowed_hosts)", connection.scope.get("method", "?"),
                    connection.url.path, host[:200])
        raise Rejection(421, "misdirected", policy.refusal(host[:200]))

    return guard


def _background(service: CollectorService
                ) -> Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan: evaluation ticks in slices, the event loop's lag sampled, and the
    service's own background work (delivery to help desks) started and stopped with it."""

    @contextlib.asynccontextmanager
    async def ticking(app: Litestar) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(float(service.config.evaluation_interval))
                for _ in service.tick_slices(TICK_SLICE):
                    await asyncio.sleep(TICK_PAUSE)  # serve the reports that came meanwhile

        async def lag() -> None:
            clock = asyncio.get_running_loop().time
            while True:
                began = clock()
                await asyncio.sleep(LAG_PERIOD)
                service.ingest_metrics.loop_lag.observe(max(0.0, clock() - began - LAG_PERIOD))

        for warning in exposure_warnings(service.config):
            log.warning("%s", warning)
        tasks = [asyncio.create_task(loop()), asyncio.create_task(lag())]
        service.start()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return ticking


def _store_errors(service: CollectorService) -> tuple[type[Exception], ...]:
    """What the store raises when it cannot write: its disk is full, its server is down."""
    errors: list[type[Exception]] = [sqlite3.Error, OSError]
    if service.config.store.backend == "postgresql":
        import psycopg

        errors.append(psycopg.Error)
    return tuple(errors)


# How long an agent waits before sending again when the store could not take its report.
_STORE_RETRY_AFTER_SECONDS = 5


def _log_unhandled(exc: Exception, scope: Any) -> None:
    """Log what became a 500, with its traceback: the answer itself says nothing."""
    if isinstance(exc, HTTPException | Throttled):
        return  # an answer the API meant to give (4xx, 429)
    log.error("%s %s failed: %s: %s", scope.get("method", "?"), scope.get("path", "?"),
              type(exc).__name__, exc, exc_info=exc)


def _refuse_nul(request: Request[Any, Any, Any]) -> Response[dict[str, Any]] | None:
    """Answer 400 to a path or query holding NUL, before it reaches a store that cannot hold
    it (PostgreSQL) or a file name."""
    scope = request.scope
    path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    query = scope.get("query_string", b"")
    if b"%00" in path or b"\x00" in path or b"%00" in query or b"\x00" in query:
        return Response({"error": "malformed", "message": "the URL holds a NUL character"},
                        status_code=400)
    return None


def create_app(service: CollectorService) -> Litestar:
    """Build the ASGI app around a service. Evaluation ticks run inside the app's lifespan."""
    limit = service.config.limits.max_body_bytes
    store_errors = _store_errors(service)
    reports = IngestQueue(service.ingest_many)

    @post("/api/v1/reports", status_code=202, request_max_body_size=None,
          summary="Submit a report (agents)", tags=["agents"])
    async def post_report(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        started = time.perf_counter()
        try:
            host = service.authenticate(request.headers.get("authorization"),
                                        client=peer_address(request.scope))
            report = _decode(await _read_body(request, limit))
            result = await reports.submit(host, report, started)
        except Rejection as rejection:
            service.reject(rejection)
            log.warning("report refused from %s: %d %s: %s",
                        request.client.host if request.client else "?", rejection.status,
                        rejection.reason, rejection.message)
            return _error(rejection)
        except store_errors as exc:
            # Logged with its traceback by the service, and counted; the report was not
            # stored, and the agent keeps it in its spool and sends it again.
            return Response({"error": "unavailable",
                             # The error's type only: its text may name the database
                             # server, which agents have no business knowing.
                             "message": f"the collector cannot store reports right now "
                                        f"({type(exc).__name__}); try again later"},
                            status_code=503,
                            headers={"Retry-After": str(_STORE_RETRY_AFTER_SECONDS)})
        status = 202 if result.status == "accepted" else 200
        answer: dict[str, Any] = {"status": result.status, "seq": result.seq}
        if result.warnings:  # limits the report ran into: the agent logs each once
            answer["warnings"] = [{"code": w.code, "message": w.message, "dropped": w.dropped}
                                  for w in result.warnings]
        return Response(answer, status_code=status)

    @get("/api/v1/hosts", summary="Hosts, their states and latest measurements", tags=["read"])
    async def get_hosts(host: FromQuery[str | None] = None) -> list[dict[str, Any]]:
        return service.hosts(host)

    @get("/api/v1/calls", summary="Calls in the built-in register", tags=["read"])
    async def get_calls(status: FromQuery[Literal["open", "resolved", "all"]] = "all",
                        group: FromQuery[str | None] = None,
                        limit: FromQuery[int] = 500) -> list[dict[str, Any]]:
        wanted = None if status == "all" else status
        return [_call_json(c) for c in service.calls(wanted, group, max(1, min(limit, 5000)))]

    @get("/api/v1/calls/{call_id:int}", summary="One call with its history", tags=["read"])
    async def get_call(call_id: PathId) -> Response[dict[str, Any]]:
        call = service.store.get_call(call_id)
        if call is None:
            return Response({"error": "not_found", "message": f"no call {call_id}"},
                            status_code=404)
        events = [{"at": e.at, "kind": e.kind, "text": e.text}
                  for e in service.store.call_events(call_id)]
        ticket = None
        sink = service.config.groups[call.group].sink if call.group in service.config.groups \
            else None
        link = service.store.get_link(call_id, sink) if sink else None
        if link is not None:
            ticket = {"sink": link.sink, "id": link.remote_id, "url": link.url,
                      "state": link.remote_state, "acknowledged_at": link.acknowledged_at}
        return Response({**_call_json(call), "events": events, "ticket": ticket})

    @get("/healthz", summary="Liveness; the number of hosts too while the read API is open",
         tags=["ops"], opt={"any_host": True})
    async def healthz() -> dict[str, Any]:
        if service.config.operators.read_api != "open":
            return {"status": "ok", "version": __version__}  # the fleet's size is not public
        return {"status": "ok", "version": __version__, "hosts": len(service.fleet.hosts)}

    @get("/metrics", summary="Prometheus metrics (gzip when the client accepts it); with "
         "`operators: {metrics: token}` operator tokens only", tags=["ops"],
         media_type=METRICS_MEDIA_TYPE, guards=[_metrics_guard(service)])
    async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        # Rendered on the event loop, so the fleet cannot change under it; compressed off it.
        body = service.metrics.render()
        headers = {"Vary": "Accept-Encoding"}
        if accepts_gzip(request.headers.get("accept-encoding", "")):
            body = await asyncio.to_thread(gzip_body, body)
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=METRICS_MEDIA_TYPE, headers=headers)

    @get("/openapi.json", summary="This API, described", tags=["ops"], include_in_schema=False,
         media_type=MediaType.JSON)
    async def openapi(request: Request[Any, Any, Any]) -> dict[str, Any]:
        return _openapi_document(request.app)

    return Litestar(
        route_handlers=[post_report, get_hosts, get_calls, get_call, *_outbox_routes(service),
                        *_token_routes(service), *_silence_routes(service),
                        *_call_action_routes(service), *console_routes(service), healthz,
                        metrics, openapi],
        lifespan=[_background(service)],
        guards=[_host_guard(service), _read_guard(service)],
        exception_handlers={Rejection: lambda _request, exc: _error(exc), Throttled: _throttled},
        before_request=_refuse_nul,
        after_exception=[_log_unhandled],
        openapi_config=OpenAPIConfig(title="runwatch collector", version=__version__,
                                     path="/schema"),
        logging_config=None,
    )


def _openapi_document(app: Litestar) -> dict[str, Any]:
    """Litestar's generated document, plus the report body, which is read raw for gzip."""
    document: dict[str, Any] = app.openapi_schema.to_schema()
    (report_schema,), components = msgspec.json.schema_components(
        [Report], ref_template="#/components/schemas/{name}")
    document.setdefault("components", {}).setdefault("schemas", {}).update(components)
    operation = document["paths"]["/api/v1/reports"]["post"]
    operation["requestBody"] = {
        "required": True,
        "description": "A report; may be sent with Content-Encoding: gzip.",
        "content": {"application/json": {"schema": report_schema}},
    }
    error = {"content": {"application/json": {"schema": {
        "type": "object", "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                       "field": {"type": "string"}}}}}}
    operation["security"] = [{"bearer": []}]
    document["components"].setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer"}
    operation["responses"] = {
        "202": {"description": "Accepted. `warnings` (when present) lists what the "
                "collector did not take: `code` (a limit, or `reserved_name`), `message`, and "
                "`dropped`, the new series left out"},
        "200": {"description": "A duplicate of a report already ingested; no effect"},
        "400": {"description": "Malformed body", **error},
        "401": {"description": "Missing, unknown or revoked token", **error},
        "403": {"description": "The token belongs to another host", **error},
        "413": {"description": "Body too large", **error},
        "422": {"description": "Schema violation; `field` names it", **error},
        "429": {"description": "Over the token's rate limit, or the address is refused after "
                "too many failed authentications; retry after Retry-After seconds",
                **error},
        "503": {"description": "The store cannot take the report now (disk full, database "
                "down); retry after Retry-After seconds", **error},
    }
    return document
