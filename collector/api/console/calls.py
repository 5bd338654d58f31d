"""The console's calls: the list, one call with its history, and what operators do to one."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery

from collector.api.answers import PathId
from collector.api.console.pages import Console
from collector.app import CollectorService
from collector.incidents.calls import Call
from collector.notify.oncall import on_call


def call_routes(console: Console) -> list[Any]:
    """GET /calls, GET /calls/{id}, POST /calls/{id}/{acknowledge, comment, resolve}."""
    service, config = console.service, console.config

    @get("/calls", include_in_schema=False)
    async def calls_page(
        request: Request[Any, Any, Any], group: FromQuery[str] = "", sink: FromQuery[str] = ""
    ) -> Response[Any]:
        state = request.query_params.get("state", "open")  # `state` is Litestar's own name
        session = console.session_of(request)
        if session is None:
            return console.to_login(request)
        status = state if state in ("open", "resolved") else None
        calls = service.calls(status, group or None, 1000)  # type: ignore[arg-type]
        if sink:
            calls = [
                c for c in calls if c.group in config.groups and config.groups[c.group].sink == sink
            ]
        rows = [_call_row(service, c) for c in calls]
        return console.page(
            "calls.html",
            session,
            calls=rows,
            group=group,
            state=state,
            sink=sink,
            sinks=sorted(config.sinks),
        )

    @get("/calls/{call_id:int}", include_in_schema=False)
    async def call_page(request: Request[Any, Any, Any], call_id: PathId) -> Response[Any]:
        session = console.session_of(request)
        if session is None:
            return console.to_login(request)
        call = service.store.get_call(call_id)
        if call is None:
            return console.refused(session, f"No call {call_id}.", 404)
        events = service.store.call_events(call_id)
        row = _call_row(service, call)
        acked = any(e.kind == "acknowledged" for e in events)
        oncall = on_call(service.config.notifications, call.group, service.clock())  # its rota
        return console.page(
            "call.html", session, call=call, row=row, events=events, acked=acked, oncall=oncall
        )

    @post("/calls/{call_id:int}/{action:str}", include_in_schema=False, status_code=303)
    async def call_action(
        request: Request[Any, Any, Any], call_id: PathId, action: FromPath[str]
    ) -> Response[Any]:
        actions = {
            "acknowledge": lambda who, form: service.acknowledge_call(call_id, who, via="console"),
            "comment": lambda who, form: service.comment_call(
                call_id, who, form.get("text", ""), via="console"
            ),
            "resolve": lambda who, form: service.resolve_call(
                call_id, who, form.get("text", ""), via="console"
            ),
        }
        return await console.act(request, action, actions, "calls", f"/calls/{call_id}")

    return [calls_page, call_page, call_action]


def _call_row(service: CollectorService, call: Call) -> dict[str, Any]:
    group = service.config.groups.get(call.group)
    sink = group.sink if group else ""
    builtin = service.is_builtin_call(call)
    link = None if builtin or not sink else service.store.get_link(call.id, sink)
    return {
        "call": call,
        "sink": sink,
        "builtin": builtin,
        "ticket_url": link.url if link else None,
        "ticket_id": link.remote_id if link else None,
    }
