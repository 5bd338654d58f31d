"""Routes for operations: liveness, Prometheus metrics, and the API's own description."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import msgspec
from litestar import Litestar, MediaType, Request, Response, get

from checks.schema import Report
from collector.api.guards import metrics_guard
from collector.app import CollectorService
from runwatch import __version__

# The text format /metrics writes (Litestar adds the charset).
METRICS_MEDIA_TYPE = "text/plain; version=0.0.4"


def ops_routes(service: CollectorService) -> list[Any]:
    """/healthz (any host name), /metrics (gzip when asked) and /openapi.json."""

    @get(
        "/healthz",
        summary="Liveness; the number of hosts too while the read API is open",
        tags=["ops"],
        opt={"any_host": True},
    )
    async def healthz() -> dict[str, Any]:
        if service.config.operators.read_api != "open":
            return {"status": "ok", "version": __version__}  # the fleet's size is not public
        return {"status": "ok", "version": __version__, "hosts": len(service.fleet.hosts)}

    @get(
        "/metrics",
        summary="Prometheus metrics (gzip when the client accepts it); with "
        "`operators: {metrics: token}` operator tokens only",
        tags=["ops"],
        media_type=METRICS_MEDIA_TYPE,
        guards=[metrics_guard(service)],
    )
    async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        # Rendered on the event loop (the fleet's view is the loop's), a slice at a time with
        # reports served between slices; compressed off it. The hosts that reported since
        # the last scrape first.
        if service.metrics.fleet is not None:
            await service.metrics.fleet.warm_in_slices()
        steps = service.metrics.render_steps()
        while True:
            try:
                next(steps)
            except StopIteration as done:
                body: bytes = done.value
                break
            await asyncio.sleep(0)  # reports that came meanwhile go first
        headers = {"Vary": "Accept-Encoding"}
        if accepts_gzip(request.headers.get("accept-encoding", "")):
            body = await asyncio.to_thread(gzip_body, body)
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=METRICS_MEDIA_TYPE, headers=headers)

    @get(
        "/openapi.json",
        summary="This API, described",
        tags=["ops"],
        include_in_schema=False,
        media_type=MediaType.JSON,
    )
    async def openapi(request: Request[Any, Any, Any]) -> dict[str, Any]:
        return _openapi_document(request.app)

    return [healthz, metrics, openapi]


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (`gzip`, `x-gzip` or `*`), and does not
    refuse it with q=0."""
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
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


def _openapi_document(app: Litestar) -> dict[str, Any]:
    """Litestar's generated document, plus the report body, which is read raw for gzip."""
    document: dict[str, Any] = app.openapi_schema.to_schema()
    (report_schema,), components = msgspec.json.schema_components(
        [Report], ref_template="#/components/schemas/{name}"
    )
    document.setdefault("components", {}).setdefault("schemas", {}).update(components)
    operation = document["paths"]["/api/v1/reports"]["post"]
    operation["requestBody"] = {
        "required": True,
        "description": "A report; may be sent with Content-Encoding: gzip.",
        "content": {"application/json": {"schema": report_schema}},
    }
    error = {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                    },
                }
            }
        }
    }
    operation["security"] = [{"bearer": []}]
    document["components"].setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
    }
    operation["responses"] = {
        "202": {
            "description": "Accepted. `warnings` (when present) lists what the "
            "collector did not take: `code` (a limit, or `reserved_name`), `message`, and "
            "`dropped`, the new series left out"
        },
        "200": {"description": "A duplicate of a report already ingested; no effect"},
        "400": {"description": "Malformed body", **error},
        "401": {"description": "Missing, unknown or revoked token", **error},
        "403": {"description": "The token belongs to another host", **error},
        "413": {"description": "Body too large", **error},
        "422": {"description": "Schema violation; `field` names it", **error},
        "429": {
            "description": "Over the token's rate limit, or the address is refused after "
            "too many failed authentications; retry after Retry-After seconds",
            **error,
        },
        "503": {
            "description": "The store cannot take the report now (disk full, database "
            "down); retry after Retry-After seconds",
            **error,
        },
    }
    return document
