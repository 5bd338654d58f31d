"""The history graphs and dashboard links of the host and call pages.

The templates `_host_graphs.html` and `_call_graph.html` call `graphs.host(...)` and
`graphs.call(...)` (a global of the console's templates). The SVG is drawn on the server
(collector/view/graphs.py): no script, nothing the Content-Security-Policy blocks.

With `dashboard_url` set (a template, as in call texts: such as
`https://grafana.example/d/runwatch-host?var-host={{ host }}`, the shipped host dashboard),
each page links to it; a call's link also carries the call's time (`from`, `to`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup

from collector.app import CollectorService
from collector.incidents.calls import Call, CallEvent
from collector.incidents.templates import compile_template
from collector.view.graph_data import BEFORE_CALL, GraphReader
from collector.view.graphs import draw

log = logging.getLogger(__name__)
DRAWN_HOSTS = 64  # hosts whose graphs are kept drawn
CALL_WIDTH, CALL_HEIGHT = 880, 220  # the call's graph, wider: one series, the page's subject


@dataclass(frozen=True, slots=True)
class ShownGraph:
    """A graph as a page shows it: its title and its drawing."""

    title: str
    svg: Markup
    thresholds: int


class ConsoleGraphs:
    """What the host and call pages include."""

    def __init__(self, service: CollectorService) -> None:
        self._service = service
        self._reader = GraphReader(service)
        # The latest drawings of recently shown hosts, by what they were drawn from.
        self._drawn: OrderedDict[str, tuple[tuple[float | None, int], list[ShownGraph]]] = (
            OrderedDict()
        )

    def host(self, host: str) -> list[ShownGraph]:
        """A graph per ruled series of the host, over the last 24 hours. Drawn again only
        once the host has reported since (or the config changed): a live page that reloads
        every few seconds does not redraw two dozen graphs each time."""
        known = self._service.fleet.hosts.get(host)
        stamp = (known.record.last_report_at if known else None, id(self._service.config))
        cached = self._drawn.get(host)
        if cached is not None and cached[0] == stamp:
            self._drawn.move_to_end(host)
            return cached[1]
        shown = [
            ShownGraph(g.title, Markup(draw(g)), len(g.thresholds))  # noqa: S704 -- escaped by svg.py  # nosec B704
            for g in self._reader.host(host)
        ]
        self._drawn[host] = (stamp, shown)
        if len(self._drawn) > DRAWN_HOSTS:
            self._drawn.popitem(last=False)
        return shown

    def call(self, call: Call, events: list[CallEvent]) -> ShownGraph | None:
        """The graph of the series that opened the call, with its moments marked."""
        acknowledged = next((e.at for e in events if e.kind == "acknowledged"), None)
        if acknowledged is None:
            group = self._service.config.groups.get(call.group)
            link = self._service.store.get_link(call.id, group.sink) if group else None
            acknowledged = link.acknowledged_at if link is not None else None
        graph = self._reader.call(call, events, acknowledged)
        if graph is None:
            return None
        drawn = draw(graph, width=CALL_WIDTH, height=CALL_HEIGHT)
        return ShownGraph(graph.title, Markup(drawn), len(graph.thresholds))  # noqa: S704 -- escaped by svg.py  # nosec B704

    def dashboard(self, host: str, call: Call | None = None) -> str | None:
        """The link to the host dashboard, from `dashboard_url`; None when it is not set or
        its template needs what a page does not have."""
        template = self._service.config.dashboard_url
        if not template:
            return None
        values: dict[str, Any] = {"host": host, "labels": {}, "where": ""}
        if call is not None:
            values.update(
                rule=call.rule,
                labels=dict(call.labels),
                where=" {" + ", ".join(f"{k}={v}" for k, v in sorted(call.labels.items())) + "}"
                if call.labels
                else "",
                severity=call.severity,
                group=call.group,
                assign=call.assign,
                call_url="",
            )
        try:
            url = compile_template(template).render(values).strip()
        except jinja2.TemplateError as exc:
            log.debug("dashboard_url cannot be rendered for a console page: %s", exc)
            return None
        if call is not None and "from=" not in url:
            resolved = call.resolved_at
            window: dict[str, int | str] = {
                "from": int((call.opened_at - BEFORE_CALL) * 1000),
                "to": int((resolved + BEFORE_CALL) * 1000) if resolved is not None else "now",
            }
            url += ("&" if "?" in url else "?") + urlencode(window)
        return url
