"""The collector's HTTP API (Litestar): the route modules of this package put together."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from collector.api.agents import report_routes
from collector.api.answers import error, throttled
from collector.api.call_actions import call_action_routes
from collector.api.console import console_routes
from collector.api.guards import request_guard
from collector.api.hosts import host_routes
from collector.api.lifespan import background
from collector.api.limits import Throttled
from collector.api.ops import ops_routes
from collector.api.outbox import outbox_routes
from collector.api.read import read_routes
from collector.api.services import service_routes
from collector.api.silences import silence_routes
from collector.api.tokens import token_routes
from collector.app import CollectorService
from collector.errors import Rejection
from runwatch import __version__

log = logging.getLogger(__name__)


def create_app(service: CollectorService) -> Litestar:
    """Build the ASGI app around a service. Evaluation ticks run inside the app's lifespan."""
    return Litestar(
        route_handlers=[
            *report_routes(service),
            *read_routes(service),
            *service_routes(service),
            *outbox_routes(service),
            *token_routes(service),
            *silence_routes(service),
            *call_action_routes(service),
            *host_routes(service),
            *console_routes(service),
            *ops_routes(service),
        ],
        lifespan=[background(service)],
        guards=[request_guard(service)],
        exception_handlers={Rejection: lambda _request, exc: error(exc), Throttled: throttled},
        before_request=_refuse_nul,
        after_exception=[_log_unhandled],
        openapi_config=OpenAPIConfig(
            title="runwatch collector", version=__version__, path="/schema"
        ),
        logging_config=None,
    )


def _log_unhandled(exc: Exception, scope: Any) -> None:
    """Log what became a 500, with its traceback: the answer itself says nothing."""
    if isinstance(exc, HTTPException | Throttled | Rejection):
        return  # an answer the API meant to give (4xx, 429), logged where it was decided
    log.error(
        "%s %s failed: %s: %s",
        scope.get("method", "?"),
        scope.get("path", "?"),
        type(exc).__name__,
        exc,
        exc_info=exc,
    )


async def _refuse_nul(request: Request[Any, Any, Any]) -> Response[dict[str, Any]] | None:
    """Answer 400 to a path or query holding NUL, before it reaches a store that cannot hold
    it (PostgreSQL) or a file name. A coroutine function, so that Litestar calls it on the
    event loop and not in a worker thread."""
    scope = request.scope
    path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    query = scope.get("query_string", b"")
    if b"%00" in path or b"\x00" in path or b"%00" in query or b"\x00" in query:
        return Response(
            {"error": "malformed", "message": "the URL holds a NUL character"}, status_code=400
        )
    return None
