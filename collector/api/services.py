"""The services API: each service's state, its components and what is wrong with them; and the
status page's messages, which operators post, change and end (each in the audit log)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody

from collector.api.answers import NO_NUL, PathId, error
from collector.api.guards import operator_of
from collector.app import CollectorService
from collector.errors import Rejection
from collector.services.messages import UnknownService, message_json

MessageText = Annotated[str, msgspec.Meta(min_length=1, max_length=1000, pattern=NO_NUL)]


class MessageRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A message for the status page; about one service (its name), or every service."""

    text: MessageText
    service: Annotated[str, msgspec.Meta(max_length=100, pattern=NO_NUL)] = ""


class MessageChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: MessageText


def _not_found(message_id: int) -> Response[Any]:
    return Response(
        {"error": "not_found", "message": f"no status message {message_id} on the page"},
        status_code=404,
    )


def service_routes(service: CollectorService) -> list[Any]:
    """GET routes tagged `read` (behind operator tokens with `operators: {read_api: token}`);
    the messages' changes are for operators."""

    @get(
        "/api/v1/services",
        summary="Services, their states (operational, maintenance, degraded, outage), "
        "components and problems",
        tags=["read"],
    )
    async def get_services() -> list[dict[str, Any]]:
        return service.services()

    @get("/api/v1/services/{name:str}", summary="One service with its state", tags=["read"])
    async def get_service(name: FromPath[str]) -> Response[Any]:
        found = service.services(name)
        if not found:
            return Response(
                {"error": "not_found", "message": f"no service {name!r}"}, status_code=404
            )
        return Response(found[0])

    @get(
        "/api/v1/status/messages",
        summary="The status page's messages (all=true: ended ones too), with who posted them",
        tags=["read"],
    )
    async def list_messages(all_messages: FromQuery[bool] = False) -> list[dict[str, Any]]:
        return service.status_messages.listed(include_ended=all_messages)

    @post(
        "/api/v1/status/messages",
        status_code=201,
        summary="Post a message on the status page (operators; audited)",
        tags=["admin"],
    )
    async def post_message(
        request: Request[Any, Any, Any], data: JSONBody[MessageRequest]
    ) -> Response[Any]:
        try:
            who = operator_of(service, request)
        except Rejection as rejection:
            return error(rejection)
        try:
            message = service.status_messages.post(who, data.text, data.service)
        except UnknownService as exc:
            return error(Rejection(422, "invalid", str(exc), "service"))
        return Response(message_json(message), status_code=201)

    @put(
        "/api/v1/status/messages/{message_id:int}",
        summary="Change a message's text (operators; audited)",
        tags=["admin"],
    )
    async def change_message(
        request: Request[Any, Any, Any], message_id: PathId, data: JSONBody[MessageChange]
    ) -> Response[Any]:
        try:
            who = operator_of(service, request)
        except Rejection as rejection:
            return error(rejection)
        message = service.status_messages.update(message_id, who, data.text)
        return _not_found(message_id) if message is None else Response(message_json(message))

    @delete(
        "/api/v1/status/messages/{message_id:int}",
        status_code=200,
        summary="Take a message off the status page (operators; audited)",
        tags=["admin"],
    )
    async def end_message(request: Request[Any, Any, Any], message_id: PathId) -> Response[Any]:
        try:
            who = operator_of(service, request)
        except Rejection as rejection:
            return error(rejection)
        message = service.status_messages.end(message_id, who)
        return _not_found(message_id) if message is None else Response(message_json(message))

    return [get_services, get_service, list_messages, post_message, change_message, end_message]
