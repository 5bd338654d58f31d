"""The agents' door: POST /api/v1/reports, from the bearer token to the ingest queue."""

from __future__ import annotations

import logging
import time
import zlib
from typing import Any

import msgspec
from litestar import Request, Response, post

from checks.schema import Report, decode_report
from checks.settings import key_path
from collector.api.answers import error
from collector.api.limits import peer_address
from collector.app import CollectorService
from collector.errors import Rejection, store_errors
from collector.ingest.batching import IngestQueue

log = logging.getLogger(__name__)

# How long an agent waits before sending again when the store could not take its report.
_STORE_RETRY_AFTER_SECONDS = 5


def report_routes(service: CollectorService) -> list[Any]:
    """The one route agents use: a report in, 202 (or 200 for a duplicate) and warnings out."""
    limit = service.config.limits.max_body_bytes
    unavailable = store_errors(service.config.store.backend)
    reports = IngestQueue(service.ingest_many)

    @post(
        "/api/v1/reports",
        status_code=202,
        request_max_body_size=None,
        summary="Submit a report (agents)",
        tags=["agents"],
    )
    async def post_report(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        started = time.perf_counter()
        try:
            host = service.authenticate(
                request.headers.get("authorization"), client=peer_address(request.scope)
            )
            report = _decode(await _read_body(request, limit))
            result = await reports.submit(host, report, started)
        except Rejection as rejection:
            service.reject(rejection)
            log.warning(
                "report refused from %s: %d %s: %s",
                request.client.host if request.client else "?",
                rejection.status,
                rejection.reason,
                rejection.message,
            )
            return error(rejection)
        except unavailable as exc:
            # Logged with its traceback by the service, and counted; the report was not
            # stored, and the agent keeps it in its spool and sends it again.
            return Response(
                {
                    "error": "unavailable",
                    # The error's type only: its text may name the database
                    # server, which agents have no business knowing.
                    "message": f"the collector cannot store reports right now "
                    f"({type(exc).__name__}); try again later",
                },
                status_code=503,
                headers={"Retry-After": str(_STORE_RETRY_AFTER_SECONDS)},
            )
        status = 202 if result.status == "accepted" else 200
        answer: dict[str, Any] = {"status": result.status, "seq": result.seq}
        if result.warnings:  # limits the report ran into: the agent logs each once
            answer["warnings"] = [
                {"code": w.code, "message": w.message, "dropped": w.dropped}
                for w in result.warnings
            ]
        return Response(answer, status_code=status)

    return [post_report]


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
        raise Rejection(
            415, "malformed", f"unsupported Content-Encoding {encoding!r}; use gzip or none"
        )
    return body


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
