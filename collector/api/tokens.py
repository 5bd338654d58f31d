"""Agent token enrolment for operators (`runwatch deploy`): list, create, revoke."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.params import FromPath, JSONBody

from collector.api.answers import error
from collector.api.guards import operator_of
from collector.app import CollectorService
from collector.auth import (
    TokenExists,
    TokenFileError,
    add_token,
    check_host_name,
    read_tokens,
    revoke_token,
    token_fingerprint,
)
from collector.errors import Rejection

log = logging.getLogger(__name__)


class EnrolRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Ask for an agent token for `host`; `replace` swaps an existing one for a new one."""

    host: str
    replace: bool = False


def token_routes(service: CollectorService) -> list[Any]:
    """Agent token enrolment for operators (`runwatch deploy`): list, create, revoke."""
    path = service.config.tokens_file

    def listing(host: str | None) -> list[dict[str, Any]]:
        return [
            {"host": e.host, "created_at": e.created_at, "fingerprint": e.fingerprint}
            for e in read_tokens(path)
            if host is None or e.host == host
        ]

    @get("/api/v1/tokens", summary="Hosts with agent tokens (operators)", tags=["admin"])
    async def list_tokens(request: Request[Any, Any, Any]) -> Response[Any]:
        try:
            operator_of(service, request, change=False)
            return Response(listing(None))
        except Rejection as rejection:
            return error(rejection)

    @get(
        "/api/v1/tokens/{host:str}",
        summary="One host's agent token fingerprint (operators)",
        tags=["admin"],
    )
    async def get_token(request: Request[Any, Any, Any], host: FromPath[str]) -> Response[Any]:
        try:
            operator_of(service, request, change=False)
        except Rejection as rejection:
            return error(rejection)
        found = listing(host)
        if not found:
            return Response(
                {"error": "not_found", "message": f"{host} has no token"}, status_code=404
            )
        return Response(found[0])

    @post(
        "/api/v1/tokens",
        status_code=201,
        summary="Enrol a host: create its agent token, returned once (operators)",
        tags=["admin"],
    )
    async def enrol(request: Request[Any, Any, Any], data: JSONBody[EnrolRequest]) -> Response[Any]:
        try:
            who = operator_of(service, request)
            check_host_name(data.host)
        except Rejection as rejection:
            return error(rejection)
        except TokenFileError as exc:
            return error(Rejection(422, "invalid", str(exc), "host"))
        try:
            token = add_token(path, data.host, replace=data.replace)
        except TokenExists as exc:
            return Response({"error": "conflict", "message": str(exc)}, status_code=409)
        log.info(
            "operator %s enrolled host %s%s",
            who,
            data.host,
            " (token replaced)" if data.replace else "",
        )
        service.audit(
            who, "token.enrol", f"host {data.host}", "token replaced" if data.replace else ""
        )
        return Response(
            {"host": data.host, "token": token, "fingerprint": token_fingerprint(token)},
            status_code=201,
        )

    @delete(
        "/api/v1/tokens/{host:str}",
        status_code=200,
        summary="Revoke a host's agent token; its next report gets 401 (operators)",
        tags=["admin"],
    )
    async def revoke(request: Request[Any, Any, Any], host: FromPath[str]) -> Response[Any]:
        try:
            who = operator_of(service, request)
        except Rejection as rejection:
            return error(rejection)
        if not revoke_token(path, host):
            return Response(
                {"error": "not_found", "message": f"{host} has no token"}, status_code=404
            )
        log.info("operator %s revoked the token of host %s", who, host)
        service.audit(who, "token.revoke", f"host {host}")
        return Response({"host": host, "revoked": True})

    return [list_tokens, get_token, enrol, revoke]
