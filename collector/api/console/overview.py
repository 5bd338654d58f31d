"""The console's overview of the fleet, and one host's page."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.params import FromPath

from collector.api.console.calls import CALLS_DESCENDING_FIRST
from collector.api.console.live import live_page, signed_out
from collector.api.console.pages import Console
from collector.api.console.paging import PAGE_SIZES, Paging
from collector.notify.oncall import on_call
from collector.store.call_search import SEVERITY_ORDER, CallPage, CallSearch
from collector.store.call_search import SORTS as CALL_SORTS
from collector.view.host_list import SORTS, HostList, HostPage, HostSearch

PROBLEMS_PER_GROUP = 10  # the rest are a link away, in the calls list
STALE_SHOWN = 20


def overview_routes(console: Console) -> list[Any]:
    """GET /, GET /hosts/{host} and POST /hosts/{host}/{retire, restore}."""
    service, config = console.service, console.config

    @get("/", include_in_schema=False)
    async def overview(request: Request[Any, Any, Any]) -> Response[Any]:
        session = console.session_of(request)
        if session is None:
            return signed_out(request, console)
        query = request.query_params
        listing = HostList(
            service.fleet,
            service.clock(),
            config.staleness.after_intervals,
            service.reader.problems,
        )
        state = query.get("state", "")
        state = state if state in SEVERITY_ORDER else ""
        paging = Paging.from_query(
            "/",
            query,
            {"q": query.get("q", "").strip(), "state": state},
            SORTS,
            "state",
            descending_first=("state",),
            anchor="hosts",
        )

        def hosts_page() -> HostPage:
            return listing.page(
                HostSearch(
                    text=paging.filters.get("q", ""),
                    state=state,
                    sort=paging.sort,
                    descending=paging.descending,
                    offset=paging.offset,
                    limit=paging.per,
                )
            )

        hosts = paging.fetch(hosts_page, lambda page: page.total)
        open_counts = service.store.open_calls_by_group()
        problems = [
            (
                group,
                service.store.search_calls(
                    CallSearch(
                        status="open", groups=(group,), sort="severity", limit=PROBLEMS_PER_GROUP
                    )
                ).calls
                if open_counts.get(group)
                else [],
            )
            for group in sorted(set(config.groups) | set(open_counts))
        ]
        stale = listing.page(
            HostSearch(state="STALE", sort="last_report", descending=False, limit=STALE_SHOWN)
        )
        silences = [s for s in service.silences() if s["active"]]
        notify, now = config.notifications, service.clock()
        duties = [on_call(notify, group, now) for group in sorted(notify.rotas)]
        return live_page(
            console,
            request,
            "overview.html",
            session,
            hosts=hosts.hosts,
            counts=hosts.counts,
            paging=paging,
            query_text=query.get("q", ""),
            state=state,
            states=SEVERITY_ORDER,
            page_sizes=PAGE_SIZES,
            problems=problems,
            open_counts=open_counts,
            open_total=sum(open_counts.values()),
            stale=stale.hosts,
            stale_total=stale.total,
            silences=silences,
            oncall=[duty for duty in duties if duty is not None],
        )

    @get("/hosts/{host:str}", include_in_schema=False)
    async def host_page(request: Request[Any, Any, Any], host: FromPath[str]) -> Response[Any]:
        session = console.session_of(request)
        if session is None:
            return signed_out(request, console)
        found = service.hosts(host) or service.retired_hosts(host)
        if not found:
            return console.refused(session, f"No host {host} has reported.", 404)
        states = service.reader.rule_states(host)
        query = request.query_params
        paging = Paging.from_query(
            f"/hosts/{quote(host, safe='')}",
            query,
            {},
            tuple(CALL_SORTS),
            "id",
            descending_first=CALLS_DESCENDING_FIRST,
            anchor="host-calls",
        )

        def calls_page() -> CallPage:
            return service.store.search_calls(
                CallSearch(
                    host=host,
                    sort=paging.sort,
                    descending=paging.descending,
                    offset=paging.offset,
                    limit=paging.per,
                )
            )

        calls = paging.fetch(calls_page, lambda page: page.total)
        return live_page(
            console,
            request,
            "host.html",
            session,
            host=found[0],
            states=states,
            calls=calls.calls,
            paging=paging,
        )

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
