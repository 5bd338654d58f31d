"""The console's service-level report (with its downloads) and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from litestar import MediaType, Request, Response, get
from litestar.params import FromQuery

from collector.api.console.pages import SECURITY_HEADERS, Console
from collector.api.console.paging import PAGE_SIZES, Paging
from collector.service_levels import (
    FORMATS,
    ReportError,
    build_report,
    host_retirements,
    parse_period,
    render,
    render_html,
)


def report_routes(console: Console) -> list[Any]:
    """GET /audit and GET /report."""
    service, config = console.service, console.config

    @get("/audit", include_in_schema=False)
    async def audit_page(request: Request[Any, Any, Any]) -> Response[Any]:
        session = console.session_of(request)
        if session is None:
            return console.to_login(request)
        query = request.query_params
        text = query.get("q", "").strip()
        paging = Paging.from_query(
            "/audit", query, {"q": text}, ("id",), "id", descending_first=("id",), anchor="audit"
        )
        entries, _ = paging.fetch(
            lambda: service.store.audit_page(text, paging.offset, paging.per), lambda got: got[1]
        )
        return console.page(
            "audit.html",
            session,
            entries=entries,
            paging=paging,
            query_text=text,
            page_sizes=PAGE_SIZES,
        )

    @get("/report", include_in_schema=False)
    async def report_page(
        request: Request[Any, Any, Any], period: FromQuery[str] = "", group: FromQuery[str] = ""
    ) -> Response[Any]:
        format_ = request.query_params.get("format", "")
        session = console.session_of(request)
        if session is None:
            return console.to_login(request)
        label = period or datetime.fromtimestamp(service.clock(), UTC).strftime("%Y-%m")
        retired_hosts, retired = host_retirements(service.store)
        try:
            report = build_report(
                service.store,
                config,
                parse_period(label),
                group or None,
                as_of=service.clock(),
                retired=retired,
                retired_hosts=retired_hosts,
            )
        except ReportError as exc:
            return console.refused(session, str(exc), 422)
        if format_ in FORMATS:
            media = {
                "json": MediaType.JSON,
                "csv": "text/csv",
                "md": "text/markdown",
                "html": MediaType.HTML,
            }[format_]
            name = f"runwatch-report-{label}{'-' + group if group else ''}.{format_}"
            return Response(
                render(report, format_),
                media_type=media,
                headers={
                    **SECURITY_HEADERS,
                    "Content-Disposition": f'attachment; filename="{name}"',
                },
            )
        query = urlencode({"period": label, **({"group": group} if group else {})})
        return console.page(
            "report.html",
            session,
            report_html=render_html(report, standalone=False),
            period=label,
            group=group,
            query=query,
            formats=FORMATS,
            host_groups=sorted(g.name for g in config.host_groups),
        )

    return [audit_page, report_page]
