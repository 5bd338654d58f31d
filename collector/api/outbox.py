"""The outbox's read endpoint, and its repairs by operators (audited)."""

from __future__ import annotations

import logging
from typing import Any, Literal

from litestar import Request, Response, get, post
from litestar.params import FromQuery

from collector.api.answers import OptionalQueryId, QueryId, error, op_json
from collector.api.guards import operator_of
from collector.app import CollectorService
from collector.errors import Rejection

log = logging.getLogger(__name__)


def outbox_routes(service: CollectorService) -> list[Any]:
    """The outbox's read endpoint, and its repairs (operators, audited)."""

    @get(
        "/api/v1/outbox",
        summary="Call operations for help desks: pending, dead or done",
        tags=["read"],
    )
    async def get_outbox(
        status: FromQuery[Literal["pending", "dead", "done", "all"]] = "all",
        limit: FromQuery[int] = 200,
    ) -> list[dict[str, Any]]:
        wanted = None if status == "all" else status
        return [op_json(op) for op in service.store.list_ops(wanted, max(1, min(limit, 5000)))]

    @post(
        "/api/v1/outbox/retry",
        status_code=200,
        tags=["admin"],
        summary="Put dead letters back in line (all, or one by id) (operators)",
    )
    async def retry_outbox(
        request: Request[Any, Any, Any], op_id: OptionalQueryId = None
    ) -> Response[dict[str, Any]]:
        try:
            who = operator_of(service, request)
        except Rejection as rejection:
            return error(rejection)
        target = "every dead letter" if op_id is None else f"outbox operation {op_id}"
        with service.store.transaction():
            count = service.store.retry_dead(op_id, service.clock())
            if count:
                service.audit(who, "outbox.retry", target, f"{count} put back in line")
        if service.outbox is not None:
            service.outbox.notify()
        log.info("operator %s put %d dead letter(s) back in line", who, count)
        return Response({"retried": count})

    @post(
        "/api/v1/outbox/discard",
        status_code=200,
        tags=["admin"],
        summary="Give up on one dead letter so its call's later operations go (operators)",
    )
    async def discard_outbox(
        request: Request[Any, Any, Any], op_id: QueryId
    ) -> Response[dict[str, Any]]:
        try:
            who = operator_of(service, request)
        except Rejection as rejection:
            return error(rejection)
        with service.store.transaction():
            count = service.store.discard_dead(op_id, service.clock())
            if count:
                service.audit(who, "outbox.discard", f"outbox operation {op_id}")
        if service.outbox is not None:
            service.outbox.notify()
        log.warning("operator %s discarded dead letter %d (%d)", who, op_id, count)
        return Response({"discarded": count})

    return [get_outbox, retry_outbox, discard_outbox]
