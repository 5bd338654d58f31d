"""Who may reach what: the read API and /metrics behind operator tokens when configured, and
requests naming a host the collector does not serve refused (DNS rebinding)."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from collector.access import HostPolicy
from collector.api.limits import peer_address
from collector.app import CollectorService
from collector.errors import Rejection

log = logging.getLogger(__name__)

Connection = ASGIConnection[Any, Any, Any, Any]
# Guards are coroutine functions: Litestar runs a plain function in a worker thread, which
# cost every request a round trip through the thread pool and a wake-up of the event loop.
Guard = Callable[[Connection, BaseRouteHandler], Awaitable[None]]


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


def operator_of(service: CollectorService, connection: Connection, *, change: bool = True) -> str:
    """The operator the request's bearer token names (see Credentials.operator)."""
    authorization = connection.headers.get("authorization")
    client = peer_address(connection.scope)
    return service.authenticate_operator(authorization, change=change, client=client)


def _read_operator(service: CollectorService, connection: Connection) -> None:
    """Refuse (401) a request without an operator token, read-only ones included, sent as
    Bearer or as Basic credentials with the token as password."""
    authorization = as_bearer(connection.headers.get("authorization"))
    client = peer_address(connection.scope)
    service.authenticate_operator(authorization, change=False, client=client)


def read_guard(service: CollectorService) -> Guard:
    """With `operators: {read_api: token}`, the read API (routes tagged `read`) answers only
    to operator tokens, read-only ones included (Bearer, or Basic with the token as
    password); 401 for anyone else."""

    async def guard(connection: Connection, handler: BaseRouteHandler) -> None:
        tags = getattr(handler, "tags", None) or ()
        if service.config.operators.read_api == "token" and "read" in tags:
            _read_operator(service, connection)

    return guard


def metrics_guard(service: CollectorService) -> Guard:
    """With `operators: {metrics: token}`, /metrics answers only to operator tokens, as the
    read API does (Prometheus: `authorization` or `basic_auth` with the token as password)."""

    async def guard(connection: Connection, _: BaseRouteHandler) -> None:
        if service.config.operators.metrics == "token":
            _read_operator(service, connection)

    return guard


def host_guard(service: CollectorService) -> Guard:
    """Refuse (421) a request naming a host the collector does not serve, unless it carries a
    valid token: a page that rebinds its own DNS name to the collector's address has none,
    while agents and operators' tools may reach it by any name (a DNS alias). Handlers with
    `opt={"any_host": True}` (liveness, which load balancers probe by any name) are exempt."""
    policy = HostPolicy.from_config(service.config)

    async def guard(connection: Connection, handler: BaseRouteHandler) -> None:
        host = connection.headers.get("host", "")
        if (
            handler.opt.get("any_host")
            or policy.allows(host)
            or service.credentials.holds_token(as_bearer(connection.headers.get("authorization")))
        ):
            return
        log.warning(
            "refused %s %s naming host %r, which is not one of this collector's "
            "names (allowed_hosts)",
            connection.scope.get("method", "?"),
            connection.url.path,
            host[:200],
        )
        raise Rejection(421, "misdirected", policy.refusal(host[:200]))

    return guard


def request_guard(service: CollectorService) -> Guard:
    """host_guard, then read_guard, as one guard for the whole app: Litestar copies the route
    handler for each guard it calls on each request."""
    host, read = host_guard(service), read_guard(service)

    async def guard(connection: Connection, handler: BaseRouteHandler) -> None:
        await host(connection, handler)
        await read(connection, handler)

    return guard
