"""How the API answers: errors, and the JSON shapes of calls, outbox operations and more."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import fields
from typing import Annotated, Any

from litestar import Request, Response
from litestar.params import PathParameter, QueryParameter

from collector.api.limits import Throttled
from collector.errors import Rejection
from collector.incidents.calls import Call
from collector.store.records import AuditEntry, OutboxOp, Silence

log = logging.getLogger(__name__)

# Ids of calls, silences and outbox operations: both stores keep them as signed 64-bit integers,
# so a bigger number is refused with 400 rather than overflowing in the store.
_MAX_ID = 2**63 - 1
PathId = Annotated[int, PathParameter(ge=0, le=_MAX_ID)]
QueryId = Annotated[int, QueryParameter(ge=0, le=_MAX_ID)]
OptionalQueryId = Annotated[int | None, QueryParameter(ge=0, le=_MAX_ID)]
# Text without NUL: PostgreSQL cannot store it, and no name or reason needs it.
NO_NUL = r"^[^\x00]*$"


def error(rejection: Rejection) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"error": rejection.reason, "message": rejection.message}
    if rejection.field is not None:
        body["field"] = rejection.field
    headers = {"WWW-Authenticate": "Bearer"} if rejection.status == 401 else None
    return Response(body, status_code=rejection.status, headers=headers)


def throttled(request: Request[Any, Any, Any], exc: Throttled) -> Response[dict[str, Any]]:
    """Answer a request over its token's rate limit: 429, and when to come back."""
    # An address refused after failed authentications was logged once, when it was refused:
    # a line for each of its requests would let it fill the log.
    log.log(
        logging.DEBUG if exc.role == "address" else logging.INFO,
        "%s request %s %s throttled; retry after %ss",
        exc.role,
        request.method,
        request.url.path,
        exc.retry_after_header,
    )
    return Response(
        {"error": "throttled", "message": str(exc)},
        status_code=429,
        headers={"Retry-After": exc.retry_after_header},
    )


# What `runwatch outbox` and the API show of an operation, in this order (not its payload).
_OP_FIELDS = (
    "id",
    "call_id",
    "sink",
    "op",
    "status",
    "attempts",
    "created_at",
    "next_attempt_at",
    "delivered_at",
    "last_error",
)


def _fields(record: object, names: Iterable[str]) -> dict[str, Any]:
    return {name: getattr(record, name) for name in names}


def call_json(call: Call) -> dict[str, Any]:
    return _fields(call, (f.name for f in fields(call)))


def op_json(op: OutboxOp) -> dict[str, Any]:
    return _fields(op, _OP_FIELDS)


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return _fields(entry, (f.name for f in fields(entry)))


def silence_json(silence: Silence, now: float) -> dict[str, Any]:
    return {
        "id": silence.id,
        "source": "silence",
        "host": silence.host_pattern,
        "rule": silence.rule_pattern,
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "reason": silence.reason,
        "created_by": silence.created_by,
        "created_at": silence.created_at,
        "ended_by": silence.ended_by,
        "active": silence.active(now),
    }
