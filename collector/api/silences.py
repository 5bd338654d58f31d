"""Maintenance windows: anyone may read them; operators set and end them."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.params import FromQuery, JSONBody

from checks.schema import MAX_TIMESTAMP
from checks.settings import Duration
from collector.api.answers import NO_NUL, PathId, error, silence_json
from collector.api.guards import operator_of
from collector.app import CollectorService
from collector.errors import Rejection
from collector.evaluation.silences import MAX_SILENCE_SECONDS, check_pattern


class SilenceRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Silence calls for hosts and rules matching these globs, for `duration` (e.g. "2h").

    `host` and `rule` have no default: "*" (every host, every rule) is said, never assumed. A
    silence over `silences.confirm_over` of the fleet's hosts needs `confirm_fleet_share`
    (409 `confirm` otherwise; GET /api/v1/silences/preview shows what a silence matches)."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000, pattern=NO_NUL)]
    duration: str | float
    host: Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=NO_NUL)]
    rule: Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=NO_NUL)]
    # Unix time; default: now
    starts_at: Annotated[float, msgspec.Meta(ge=0, le=MAX_TIMESTAMP)] | None = None
    confirm_fleet_share: bool = False


def silence_routes(service: CollectorService) -> list[Any]:
    """Maintenance windows: anyone may read them; operators set and end them."""

    @get(
        "/api/v1/silences",
        summary="Maintenance windows: operators' silences and the weekly windows of the config",
        tags=["read"],
    )
    async def list_silences(include_ended: FromQuery[bool] = False) -> list[dict[str, Any]]:
        return service.silences(include_ended=include_ended)

    @get(
        "/api/v1/silences/preview",
        summary="The hosts and rules a silence with these globs would match now, and whether "
        "it needs confirm_fleet_share",
        tags=["read"],
    )
    async def preview_silence(host: FromQuery[str], rule: FromQuery[str]) -> Response[Any]:
        try:
            reach = service.silence_reach(check_pattern(host, "host"), check_pattern(rule, "rule"))
        except Rejection as rejection:
            return error(rejection)
        return Response(reach.as_json())

    @post(
        "/api/v1/silences",
        status_code=201,
        summary="Silence calls for matching hosts and "
        "rules for a while; records who and why (operators)",
        tags=["admin"],
    )
    async def add_silence(
        request: Request[Any, Any, Any], data: JSONBody[SilenceRequest]
    ) -> Response[Any]:
        try:
            who = operator_of(service, request)
        except Rejection as rejection:
            return error(rejection)
        try:
            duration = float(Duration.parse(data.duration))
        except ValueError as exc:
            return error(Rejection(422, "invalid", str(exc), "duration"))
        if not 0 < duration <= MAX_SILENCE_SECONDS:
            return error(
                Rejection(
                    422,
                    "invalid",
                    "the duration must be more than 0s and at most ten years",
                    "duration",
                )
            )
        try:
            silence = service.add_confirmed_silence(
                who,
                host=data.host,
                rule=data.rule,
                duration=duration,
                reason=data.reason,
                starts_at=data.starts_at,
                confirmed=data.confirm_fleet_share,
            )
        except Rejection as rejection:
            return error(rejection)
        return Response(silence_json(silence, service.clock()), status_code=201)

    @delete(
        "/api/v1/silences/{silence_id:int}",
        status_code=200,
        summary="End a silence now (operators)",
        tags=["admin"],
    )
    async def end_silence(request: Request[Any, Any, Any], silence_id: PathId) -> Response[Any]:
        try:
            who = operator_of(service, request)
        except Rejection as rejection:
            return error(rejection)
        ended = service.end_silence(silence_id, who)
        if ended is None:
            return Response(
                {"error": "not_found", "message": f"no silence {silence_id} in force or to come"},
                status_code=404,
            )
        return Response({**silence_json(ended, service.clock()), "ended_by": who, "active": False})

    return [list_silences, preview_silence, add_silence, end_silence]
