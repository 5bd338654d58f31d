"""A host's life through the API: retired and restored by operators (read: api/read.py)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, post
from litestar.params import FromPath, JSONBody

from collector.api.answers import NO_NUL, error
from collector.api.guards import operator_of
from collector.app import CollectorService
from collector.errors import Rejection
from collector.store.records import HostRetirement

log = logging.getLogger(__name__)


class HostChangeRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Why a host is retired or restored (kept in the audit log, and in the calls' note)."""

    reason: Annotated[str, msgspec.Meta(max_length=500, pattern=NO_NUL)] = ""


def retirement_json(retirement: HostRetirement) -> dict[str, Any]:
    """A retirement as the API and the CLI show it (without the host's last record)."""
    return {key: getattr(retirement, key) for key in ("host", "retired_at", "retired_by", "reason")}


def host_routes(service: CollectorService) -> list[Any]:
    """POST /api/v1/hosts/{name}/retire and /restore (operators)."""

    def change(
        request: Request[Any, Any, Any], name: str, action: str, reason: str
    ) -> Response[Any]:
        try:
            who = operator_of(service, request)
            if action == "retire":
                retirement = service.retire_host(name, who, reason)
                return Response({"status": "retired", **retirement_json(retirement)})
            ended = service.restore_host(name, who, reason)
        except Rejection as rejection:
            log.warning(
                "host %s: %s refused: %d %s", name, action, rejection.status, rejection.message
            )
            return error(rejection)
        return Response({"status": "restored", "host": name, "was": retirement_json(ended)})

    @post(
        "/api/v1/hosts/{name:str}/retire",
        status_code=200,
        tags=["admin"],
        summary="Retire a host: resolve its open calls, drop its series, refuse its reports "
        "(operators)",
    )
    async def retire(
        request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[HostChangeRequest]
    ) -> Response[Any]:
        return change(request, name, "retire", data.reason)

    @post(
        "/api/v1/hosts/{name:str}/restore",
        status_code=200,
        tags=["admin"],
        summary="Bring a retired host back: its reports are taken again (operators)",
    )
    async def restore(
        request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[HostChangeRequest]
    ) -> Response[Any]:
        return change(request, name, "restore", data.reason)

    return [retire, restore]
