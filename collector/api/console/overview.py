"""The console's overview of the fleet, and one host's page."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.params import FromPath

from collector.api.console.pages import Console
from collector.incidents.calls import Call


def overview_routes(console: Console) -> list[Any]:
    """GET /, GET /hosts/{host} and POST /hosts/{host}/{retire, restore}."""
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
        found = service.hosts(host) or service.retired_hosts(host)
        if not found:
            return console.refused(session, f"No host {host} has reported.", 404)
        states = service.reader.rule_states(host)
        calls = [c for c in service.calls(None, None, 5000) if c.host == host]
        return console.page("host.html", session, host=found[0], states=states, calls=calls)

    @post("/hosts/{host:str}/{action:str}", include_in_schema=False, status_code=303)
    async def host_action(
        request: Request[Any, Any, Any], host: FromPath[str], action: FromPath[str]
    ) -> Response[Any]:
        def retire(who: str, form: dict[str, str]) -> None:
            service.retire_host(host, who, form.get("reason", ""), via="console")

        def restore(who: str, form: dict[str, str]) -> None:
            service.restore_host(host, who, form.get("reason", ""), via="console")

        actions = {"retire": retire, "restore": restore}
        return await console.act(
            request, action, actions, "hosts", f"/hosts/{quote(host, safe='')}"
        )

    return [overview, host_page, host_action]
