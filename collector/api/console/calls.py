"""The console's calls: the list, one call with its history, and what operators do to one."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from collector.api.answers import PathId
from collector.api.console.call_targets import deadlines, targets_of
from collector.api.console.live import live_page, signed_out
from collector.api.console.pages import Console
from collector.api.console.paging import PAGE_SIZES, Paging
from collector.app import CollectorService
from collector.incidents.calls import Call
from collector.notify.oncall import on_call
from collector.store.call_search import SEVERITY_ORDER, SORTS, CallPage, CallSearch

# Sorts whose first click shows the newest, latest or worst first.
CALLS_DESCENDING_FIRST = ("id", "opened", "updated", "resolved", "severity")


def call_routes(console: Console) -> list[Any]:
    """GET /calls, GET /calls/{id}, POST /calls/{id}/{acknowledge, comment, resolve}."""
    service, config = console.service, console.config

    @get("/calls", include_in_schema=False)
    async def calls_page(request: Request[Any, Any, Any]) -> Response[Any]:
        session = console.session_of(request)
        if session is None:
            return signed_out(request, console)
        query = request.query_params  # `state` is Litestar's own name: read them all here
        state = query.get("state", "open")
        state = state if state in ("open", "resolved", "all") else "open"
        severity = query.get("severity", "")
        filters = {
            "q": query.get("q", "").strip(),
            "host": query.get("host", "").strip(),
            "rule": query.get("rule", "").strip(),
            "group": query.get("group", ""),
            "state": state,
            "severity": severity if severity in SEVERITY_ORDER else "",
            "sink": query.get("sink", ""),
        }
        paging = Paging.from_query(
            "/calls",
            query,
            filters,
            tuple(SORTS),
            "id",
            descending_first=CALLS_DESCENDING_FIRST,
            anchor="calls",
        )
        # "open" is the list's default: a link that names it keeps it, one without it too.
        paging.filters["state"] = state
        groups: tuple[str, ...] | None = None
        if filters["group"]:
            groups = (filters["group"],)
        if filters["sink"]:
            of_sink = {g for g, c in config.groups.items() if c.sink == filters["sink"]}
            groups = tuple(sorted(of_sink & set(groups) if groups is not None else of_sink))

        def page() -> CallPage:
            return service.store.search_calls(
                CallSearch(
                    status=None if state == "all" else state,  # type: ignore[arg-type]
                    groups=groups,
                    host=filters["host"],
                    rule=filters["rule"],
                    severity=filters["severity"],
                    text=filters["q"],
                    sort=paging.sort,
                    descending=paging.descending,
                    offset=paging.offset,
                    limit=paging.per,
                )
            )

        found = paging.fetch(page, lambda calls: calls.total)
        return live_page(
            console,
            request,
            "calls.html",
            session,
            calls=[_call_row(service, c) for c in found.calls],
            paging=paging,
            filters=filters,
            state=state,
            severities=SEVERITY_ORDER[:-1],
            page_sizes=PAGE_SIZES,
            sinks=sorted(config.sinks),
            rules=sorted(r.name for r in config.rules),
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
        now_state = service.reader.call_state(call.host, call.id)
        oncall = on_call(service.config.notifications, call.group, service.clock())  # its rota
        store = service.store
        # A service-level call and the calls of its causes, linked both ways.
        service_calls = [store.get_call(i) for i in store.service_calls_of(call.id)]
        parts = [store.get_call(i) for i in store.service_call_parts(call.id)]
        escalations = service.escalations  # how far it climbed, when nobody acknowledges it
        escalation = escalations.status(call, service.clock()) if escalations else None
        return console.page(
            "call.html",
            session,
            call=call,
            row=row,
            events=events,
            acked=acked,
            state=now_state,
            oncall=oncall,
            service_calls=[c for c in service_calls if c is not None],
            parts=[c for c in parts if c is not None],
            targets=targets_of(service, call, events),
            deadlines=deadlines,
            escalation=escalation,
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
