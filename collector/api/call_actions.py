"""Calls in the built-in register handled by hand, and the audit log (operators)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromQuery, JSONBody

from checks.settings import Duration
from collector.api.answers import NO_NUL, PathId, audit_json, call_json, error
from collector.api.guards import operator_of
from collector.app import CollectorService
from collector.errors import Rejection
from collector.incidents.bulk import MAX_BULK, BulkOutcome, BulkRequest

log = logging.getLogger(__name__)


class CommentRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A comment on a call, or the note that goes with resolving it."""

    text: Annotated[str, msgspec.Meta(max_length=5000, pattern=NO_NUL)] = ""


class BulkCallRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One action for many calls, each done and audited on its own. `text`: the comment, or
    the note to a resolution; `duration` (e.g. "2h") and `reason`: a silence of each call's
    host and rule; `confirm_fleet_share`: silence calls on more than `silences.confirm_over`
    of the fleet's hosts."""

    action: Literal["acknowledge", "comment", "resolve", "silence"]
    ids: Annotated[list[Annotated[int, msgspec.Meta(ge=1)]], msgspec.Meta(max_length=MAX_BULK)]
    text: Annotated[str, msgspec.Meta(max_length=5000, pattern=NO_NUL)] = ""
    duration: str | float | None = None
    reason: Annotated[str, msgspec.Meta(max_length=1000, pattern=NO_NUL)] = ""
    confirm_fleet_share: bool = False


async def bulk_outcomes(
    service: CollectorService, request: BulkRequest, actor: str, via: str
) -> list[BulkOutcome]:
    """Every call's outcome, letting the event loop serve other requests (agents' reports)
    between two calls: a batch of hundreds of calls holds nobody up."""
    outcomes = []
    for outcome in service.work_calls(request, actor, via):
        outcomes.append(outcome)
        await asyncio.sleep(0)
    return outcomes


def call_action_routes(service: CollectorService) -> list[Any]:
    """Calls in the built-in register handled by hand, and the audit log (operators)."""

    def act(request: Request[Any, Any, Any], call_id: int, action: str, text: str) -> Response[Any]:
        try:
            who = operator_of(service, request)
            if action == "acknowledge":
                call = service.acknowledge_call(call_id, who)
            elif action == "comment":
                call = service.comment_call(call_id, who, text)
            else:
                call = service.resolve_call(call_id, who, text)
        except Rejection as rejection:
            log.warning(
                "call %d: %s refused: %d %s", call_id, action, rejection.status, rejection.message
            )
            return error(rejection)
        return Response(call_json(call))

    @post(
        "/api/v1/calls/{call_id:int}/acknowledge",
        status_code=200,
        tags=["admin"],
        summary="Acknowledge a call in the built-in register (operators)",
    )
    async def acknowledge(request: Request[Any, Any, Any], call_id: PathId) -> Response[Any]:
        return act(request, call_id, "acknowledge", "")

    def with_text(action: str, summary: str) -> Any:
        """The route of an action that takes a text: a comment, or a note to a resolution."""

        async def handler(
            request: Request[Any, Any, Any], call_id: PathId, data: JSONBody[CommentRequest]
        ) -> Response[Any]:
            return act(request, call_id, action, data.text)

        handler.__name__ = action  # the OpenAPI operation id ends with it
        path = f"/api/v1/calls/{{call_id:int}}/{action}"
        return post(path, status_code=200, tags=["admin"], summary=summary)(handler)

    comment = with_text("comment", "Comment on a call in the built-in register (operators)")
    resolve = with_text("resolve", "Resolve a call in the built-in register by hand (operators)")

    @post(
        "/api/v1/calls/bulk",
        status_code=200,
        tags=["admin"],
        summary="Acknowledge, comment on, resolve or silence many calls, each done and audited "
        "on its own; the outcome per call (operators)",
    )
    async def bulk(
        request: Request[Any, Any, Any], data: JSONBody[BulkCallRequest]
    ) -> Response[Any]:
        try:
            who = operator_of(service, request)
            duration = 0.0
            if data.action == "silence":
                try:
                    duration = float(Duration.parse(data.duration or ""))
                except ValueError as exc:
                    raise Rejection(422, "invalid", str(exc), "duration") from None
            outcomes = await bulk_outcomes(
                service,
                BulkRequest(
                    action=data.action,
                    call_ids=tuple(data.ids),
                    text=data.text,
                    duration=duration,
                    reason=data.reason,
                    confirmed=data.confirm_fleet_share,
                ),
                who,
                "api",
            )
        except Rejection as rejection:
            return error(rejection)
        done = sum(o.done for o in outcomes)
        return Response(
            {
                "action": data.action,
                "done": done,
                "refused": len(outcomes) - done,
                "calls": [o.as_json() for o in outcomes],
            }
        )

    @get(
        "/api/v1/audit",
        summary="Changes made by people, newest first (operator tokens, read-only ones too)",
        tags=["admin"],
    )
    async def audit(request: Request[Any, Any, Any], limit: FromQuery[int] = 200) -> Response[Any]:
        try:
            operator_of(service, request, change=False)
        except Rejection as rejection:
            return error(rejection)
        return Response([audit_json(e) for e in service.store.list_audit(max(1, min(limit, 5000)))])

    return [acknowledge, comment, resolve, bulk, audit]
