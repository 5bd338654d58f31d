"""How the API answers: errors, and the JSON shapes of calls, outbox operations and more."""

from __future__ import annotations

import logging
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


def call_json(call: Call) -> dict[str, Any]:
    return {
        "id": call.id,
        "fingerprint": call.fingerprint,
        "host": call.host,
        "rule": call.rule,
        "labels": call.labels,
        "group": call.group,
        "assign": call.assign,
        "severity": call.severity,
        "priority": call.priority,
        "status": call.status,
        "summary": call.summary,
        "description": call.description,
        "first_seen": call.first_seen,
        "opened_at": call.opened_at,
        "updated_at": call.updated_at,
        "resolved_at": call.resolved_at,
        "reopened": call.reopened,
    }


def op_json(op: OutboxOp) -> dict[str, Any]:
    return {
        "id": op.id,
        "call_id": op.call_id,
        "sink": op.sink,
        "op": op.op,
        "status": op.status,
        "attempts": op.attempts,
        "created_at": op.created_at,
        "next_attempt_at": op.next_attempt_at,
        "delivered_at": op.delivered_at,
        "last_error": op.last_error,
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "detail": entry.detail,
        "via": entry.via,
    }


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
