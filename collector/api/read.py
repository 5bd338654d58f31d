"""The read API: hosts with their states and measurements, calls with their history, and why
a rule's thresholds are what they are on a host."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from litestar import Response, get
from litestar.params import FromPath, FromQuery, QueryParameter

from collector.api.answers import PathId, call_json
from collector.app import CollectorService


def read_routes(service: CollectorService) -> list[Any]:
    """GET routes tagged `read` (behind operator tokens with `operators: {read_api: token}`)."""

    @get(
        "/api/v1/hosts",
        summary="Hosts, their states and latest measurements; retired ones too with all=true",
        tags=["read"],
    )
    async def get_hosts(
        host: FromQuery[str | None] = None,
        all_hosts: Annotated[bool, QueryParameter(query="all")] = False,
    ) -> list[dict[str, Any]]:
        hosts = service.hosts(host)
        if all_hosts:
            hosts = sorted([*hosts, *service.retired_hosts(host)], key=lambda h: h["host"])
        return hosts

    @get("/api/v1/calls", summary="Calls in the built-in register", tags=["read"])
    async def get_calls(
        status: FromQuery[Literal["open", "resolved", "all"]] = "all",
        group: FromQuery[str | None] = None,
        limit: FromQuery[int] = 500,
    ) -> list[dict[str, Any]]:
        wanted = None if status == "all" else status
        return [call_json(c) for c in service.calls(wanted, group, max(1, min(limit, 5000)))]

    @get("/api/v1/calls/{call_id:int}", summary="One call with its history", tags=["read"])
    async def get_call(call_id: PathId) -> Response[dict[str, Any]]:
        found = service.call_history(call_id)
        if found is None:
            return Response(
                {"error": "not_found", "message": f"no call {call_id}"}, status_code=404
            )
        call, events, link = found
        ticket = None
        if link is not None:
            ticket = {
                "sink": link.sink,
                "id": link.remote_id,
                "url": link.url,
                "state": link.remote_state,
                "acknowledged_at": link.acknowledged_at,
            }
        # How far it climbed its group's escalation levels (None: the group has none).
        climbed = service.escalations.status(call, service.clock()) if service.escalations else None
        return Response(
            {
                **call_json(call),
                "events": [{"at": e.at, "kind": e.kind, "text": e.text} for e in events],
                "ticket": ticket,
                # A service-level call and the calls of its causes, linked both ways.
                "service_calls": service.store.service_calls_of(call.id),
                "service_parts": service.store.service_call_parts(call.id),
                "escalation": dataclasses.asdict(climbed) if climbed else None,
            }
        )

    @get(
        "/api/v1/rules/{rule:str}/explain",
        summary="Which thresholds apply to a rule on a "
        "host, and why (host groups, flapping, maintenance, parents)",
        tags=["read"],
    )
    async def explain(rule: FromPath[str], host: FromQuery[str]) -> Response[Any]:
        found = service.explain(host, rule)
        if found is None:
            return Response({"error": "not_found", "message": f"no rule {rule!r}"}, status_code=404)
        return Response(found)

    @get(
        "/api/v1/rules",
        summary="The configured rules with their thresholds, and how many of their series are "
        "problems now",
        tags=["read"],
    )
    async def get_rules() -> Response[Any]:
        return Response(service.rules())

    return [get_hosts, get_calls, get_call, explain, get_rules]
