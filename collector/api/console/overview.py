"""The console's overview of the fleet, and one host's page."""

from __future__ import annotations

import json
from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from collector.api.console.pages import Console
from collector.incidents.calls import Call


def overview_routes(console: Console) -> list[Any]:
    """GET / and GET /hosts/{host}."""
    service = console.service

    @get("/", include_in_schema=False)
    async def overview(request: Request[Any, Any, Any]) -> Response[Any]:
        session = console.session_of(request)
        if session is None:
            return console.to_login(request)
        hosts = service.hosts()
        by_state: dict[str, list[str]] = {}
        for host in hosts:
            by_state.setdefault(host["state"], []).append(host["host"])
        open_calls = service.calls("open", None, 5000)
        by_group: dict[str, list[Call]] = {}
        for call in open_calls:
            by_group.setdefault(call.group, []).append(call)
        silences = [s for s in service.silences() if s["active"]]
        return console.page(
            "overview.html",
            session,
            hosts=hosts,
            by_state=by_state,
            by_group=by_group,
            stale=[h for h in hosts if h["state"] == "STALE"],
            silences=silences,
        )

    @get("/hosts/{host:str}", include_in_schema=False)
    async def host_page(request: Request[Any, Any, Any], host: FromPath[str]) -> Response[Any]:
        session = console.session_of(request)
        if session is None:
            return console.to_login(request)
        found = service.hosts(host)
        if not found:
            return console.refused(session, f"No host {host} has reported.", 404)
        states = [
            {
                "rule": rule,
                "labels": json.loads(key),
                "state": state.severity.name,
                "value": state.value,
                "since": state.changed_at,
                "call_id": state.call_id,
                "silenced": state.silenced,
                "flapping": state.flapping,
            }
            for (rule, name, key), state in sorted(service.fleet.states.items())
            if name == host
        ]
        calls = [c for c in service.calls(None, None, 5000) if c.host == host]
        return console.page("host.html", session, host=found[0], states=states, calls=calls)

    return [overview, host_page]
