"""History graphs: the SVG drawing (thresholds, marks, bands, gaps, empty and odd cases), the
host page's graphs with the thresholds that apply to the host, the call page's graph with its
moments marked, and the links to the shipped Grafana host dashboard."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import TestClient

from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import set_user
from collector.store.records import HistoryStep
from collector.view.graphs import Graph, Mark, Threshold, draw
from tests.helpers import FS_RULE, FakeClock, Reporter

SVG = "{http://www.w3.org/2000/svg}"
START = 1_800_000_000.0
ROOT_FS = -7064169593755718110  # series_id("fs_used_ratio", '{"mountpoint":"/"}')
REPO = Path(__file__).resolve().parents[1]


def graph(steps: list[HistoryStep], **extra: Any) -> Graph:
    values: dict[str, Any] = {
        "host": "web01",
        "metric": "fs_used_ratio",
        "labels": {"mountpoint": "/"},
        "unit": "ratio",
        "start": START,
        "end": START + 3600,
        "resolution": 300.0,
        "steps": tuple(steps),
        "thresholds": (
            Threshold("warning", 0.85, "filesystem_full"),
            Threshold("critical", 0.95, "filesystem_full"),
        ),
    }
    values.update(extra)
    return Graph(**values)


def step(
    minute: int, value: float, low: float | None = None, high: float | None = None
) -> HistoryStep:
    return HistoryStep("web01", ROOT_FS, int(START + 60 * minute), value, low, high)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def by_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if name in (e.get("class") or "").split()]


def test_a_graph_draws_its_line_band_thresholds_and_axes_in_human_units() -> None:
    root = parse(draw(graph([step(0, 0.5), step(5, 0.6, 0.55, 0.7), step(10, 0.9)])))

    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    assert "style" not in draw(graph([step(0, 0.5)])), "nothing the CSP blocks"
    [line] = by_class(root, "line")
    assert len(line.get("points", "").split()) == 3
    assert len(by_class(root, "band")) == 1
    warning, critical = (
        e for e in root.iter(f"{SVG}line") if e.get("data-threshold") in ("warning", "critical")
    )
    assert (warning.get("data-threshold"), critical.get("data-threshold")) == (
        "warning",
        "critical",
    )
    assert float(critical.get("y1", 0)) < float(warning.get("y1", 0)), "critical is higher up"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "warning 85.0%" in texts and "critical 95.0%" in texts
    assert texts[:5] == ["0.0%", "25.0%", "50.0%", "75.0%", "100.0%"], "round steps from zero"
    assert any(t and re.fullmatch(r"\d\d:\d\d", t) for t in texts), "times on the time axis"
    label = root.get("aria-label", "")
    assert "latest 90.0%" in label and "warning at 85.0%" in label


def test_a_call_graph_marks_its_moments_inside_the_window_only() -> None:
    marks = (
        Mark("opened", START + 600),
        Mark("acknowledged", START + 900),
        Mark("resolved", START + 7200),
    )
    root = parse(draw(graph([step(0, 0.9), step(5, 0.97)], marks=marks)))
    shown = [e.get("data-mark") for e in root.iter(f"{SVG}line") if e.get("data-mark")]
    assert shown == ["opened", "acknowledged"], "the resolve falls after the window's end"
    [opened] = [e for e in root.iter(f"{SVG}line") if e.get("data-mark") == "opened"]
    assert "opened 2027-01-15" in (opened.findtext(f"{SVG}title") or "")


def test_an_empty_graph_says_so_and_still_draws_its_thresholds() -> None:
    root = parse(draw(graph([])))
    assert [t.text for t in by_class(root, "graph-empty")] == ["no history in this time yet"]
    assert len(by_class(root, "threshold")) == 2
    assert not by_class(root, "line")


def test_one_step_is_a_dot_and_values_that_are_not_numbers_are_left_out() -> None:
    root = parse(draw(graph([step(0, math.nan), step(5, 0.4), step(10, math.inf)])))
    assert len(by_class(root, "dot")) == 1
    assert not by_class(root, "line")
    assert "nan" not in ET.tostring(root, encoding="unicode").lower()


def test_a_gap_in_the_history_breaks_the_line() -> None:
    steps = [step(0, 0.5), step(5, 0.5), step(40, 0.6), step(45, 0.6)]
    assert len(by_class(parse(draw(graph(steps))), "line")) == 2


def test_a_week_of_steps_is_merged_per_pixel_column_and_keeps_its_peak() -> None:
    steps = [step(5 * n, 0.5) for n in range(2016)]
    steps[1000] = step(5000, 0.99)
    week = graph(steps, end=START + 7 * 86400)
    root = parse(draw(week))
    [line] = by_class(root, "line")
    assert len(line.get("points", "").split()) <= 440
    assert "highest 99.0%" in root.get("aria-label", "")
    assert by_class(root, "band"), "the merged columns' lowest and highest"
    assert re.search(r">\d\d-\d\d<", draw(week)), "a week reads by days"


def test_flat_and_negative_series_get_a_range() -> None:
    flat = parse(draw(graph([step(0, 0.0), step(5, 0.0)], thresholds=())))
    assert by_class(flat, "line")
    below = parse(draw(graph([step(0, -5.0), step(5, 3.0)], unit="", metric="temperature")))
    labels = [t.text for t in below.iter(f"{SVG}text")]
    assert labels[:6] == ["-6", "-4", "-2", "0", "2", "4"], "round steps around -5 to 3"


def test_labels_and_titles_are_escaped() -> None:
    odd = graph([step(0, 0.5)], labels={"mountpoint": '/<script>"&'})
    text = draw(odd)
    assert "<script>" not in text
    parse(text)


# -- the pages ---------------------------------------------------------------------------------

GROUPED = {
    "name": "databases",
    "hosts": ["db*"],
    "thresholds": {"filesystem_full": {"warning": 0.7, "critical": 0.9, "clear": 0.65}},
}


@pytest.fixture
def console(
    make_service: Callable[..., CollectorService],
) -> Iterator[tuple[TestClient[Any], CollectorService]]:
    service = make_service(
        [{**FS_RULE, "for": "0s"}],
        host_groups=[GROUPED],
        history={"resolution": "5m", "retention": "2d"},
        dashboard_url="https://grafana.example/d/runwatch-host?var-host={{ host }}",
    )
    set_user(service.config.users_file, "carol", "carol-secret-1")
    with TestClient(create_app(service)) as client:
        answer = client.post(
            "/login",
            data={"next": "/", "user": "carol", "password": "carol-secret-1"},
            follow_redirects=False,
        )
        assert answer.status_code == 303
        yield client, service


def svg_of(page: str, container: str) -> ET.Element:
    found = re.search(rf'id="{container}".*?(<svg.*?</svg>)', page, re.S)
    assert found, f"no graph in #{container}"
    return parse(found[1])


REPORTERS: dict[tuple[int, str], Reporter] = {}


def report_for(service: CollectorService, host: str, clock: FakeClock, values: list[float]) -> None:
    """One report a minute from the host's agent (its sequence goes on between calls)."""
    reporter = REPORTERS.setdefault((id(service), host), Reporter(host, clock))
    for value in values:
        service.ingest(host, reporter.report({"fs_used_ratio": value}))
        clock.advance(60)


def test_the_host_page_draws_each_ruled_series_with_the_hosts_own_thresholds(
    console: Any, clock: FakeClock
) -> None:
    client, service = console
    report_for(service, "db01", clock, [0.5] * 12 + [0.6] * 3)

    page = client.get("/hosts/db01")
    assert page.status_code == 200
    root = svg_of(page.text, "host-graphs")
    levels = {
        e.get("data-threshold"): e for e in root.iter(f"{SVG}line") if e.get("data-threshold")
    }
    assert set(levels) == {"warning", "critical"}
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "warning 70.0%" in texts and "critical 90.0%" in texts, "the host group's thresholds"
    assert len(by_class(root, "line")[0].get("points", "").split()) == 3, (
        "two stored steps and the one in progress"
    )
    assert 'id="host-dashboard" href="https://grafana.example/d/runwatch-host?var-host=db01"' in (
        page.text
    )


def test_the_call_page_draws_the_series_that_opened_it_with_its_moments(
    console: Any, clock: FakeClock
) -> None:
    client, service = console
    report_for(service, "web01", clock, [0.5] * 70)  # more than an hour before the call
    report_for(service, "web01", clock, [0.97] * 3)
    (call,) = service.calls("open", None)
    service.acknowledge_call(call.id, "carol", via="console")
    clock.advance(600)
    report_for(service, "web01", clock, [0.5] * 2)
    (call,) = service.calls("resolved", None)

    page = client.get(f"/calls/{call.id}").text
    root = svg_of(page, "call-graph-section")
    assert root.get("id") == "call-graph"
    marks = [e.get("data-mark") for e in root.iter(f"{SVG}line") if e.get("data-mark")]
    assert marks == ["opened", "acknowledged", "resolved"]
    assert "fs_used_ratio {mountpoint=/} on web01" in page
    assert len(by_class(root, "threshold")) == 2
    steps = service.store.read_steps("web01", 0, clock.now)
    assert min(s.at for s in steps) < call.opened_at - 3600, "the store has more than is drawn"
    first = min(float(p.split(",")[0]) for p in by_class(root, "line")[0].get("points", "").split())
    assert first < 100, "the line starts at the left (x=58 of 880): an hour before the call"
    link = re.search(r'id="call-dashboard" href="([^"]+)"', page)
    assert link
    query = parse_qs(urlsplit(link[1].replace("&amp;", "&")).query)
    assert query["var-host"] == ["web01"]
    assert int(query["from"][0]) == int((call.opened_at - 3600) * 1000)
    assert int(query["to"][0]) == int((call.resolved_at + 3600) * 1000)


def test_a_staleness_call_has_no_series_to_draw(console: Any, clock: FakeClock) -> None:
    client, service = console
    report_for(service, "web01", clock, [0.5])
    clock.advance(3600)
    service.tick()
    (call,) = service.calls("open", None)
    page = client.get(f"/calls/{call.id}").text
    assert 'id="no-call-graph"' in page and "<svg" not in page.split('id="call-graph-section"')[1]


def test_no_dashboard_link_without_a_dashboard_url(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service()
    set_user(service.config.users_file, "carol", "carol-secret-1")
    report_for(service, "web01", clock, [0.5, 0.5])
    with TestClient(create_app(service)) as client:
        client.post("/login", data={"next": "/", "user": "carol", "password": "carol-secret-1"})
        page = client.get("/hosts/web01").text
    assert 'id="host-graphs"' in page and "host-dashboard" not in page


def test_the_documented_dashboard_url_names_the_shipped_host_dashboard_and_variable() -> None:
    dashboard = json.loads((REPO / "config/grafana/dashboards/runwatch-host.json").read_text())
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    docs = (REPO / "docs/helpdesks/call-texts.md").read_text()
    [url] = re.findall(r'dashboard_url: "([^"]+)"', docs)
    assert urlsplit(url).path == f"/d/{dashboard['uid']}"
    assert "host" in variables and "var-host={{ host }}" in url


def test_a_dashboard_template_that_needs_a_calls_facts_gives_no_link_on_a_host_page(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    from collector.api.console.graphs import ConsoleGraphs

    service = make_service(dashboard_url="https://g.example/d/x?since={{ first_seen_text }}")
    assert ConsoleGraphs(service).dashboard("web01") is None
    service.config = make_service(
        dashboard_url="https://g.example/d/runwatch-host?var-host={{ host }}&from=now-6h"
    ).config
    assert ConsoleGraphs(service).dashboard("web01") == (
        "https://g.example/d/runwatch-host?var-host=web01&from=now-6h"
    ), "a template's own time range stays"


def test_a_hosts_graphs_are_drawn_again_only_after_it_reports(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    from collector.api.console.graphs import ConsoleGraphs

    service = make_service()
    graphs = ConsoleGraphs(service)
    report_for(service, "web01", clock, [0.5, 0.6])
    first = graphs.host("web01")
    clock.advance(30)
    assert graphs.host("web01") is first, "nothing new: the same drawing"
    report_for(service, "web01", clock, [0.9])
    again = graphs.host("web01")
    assert again is not first and "90.0%" in again[0].svg
