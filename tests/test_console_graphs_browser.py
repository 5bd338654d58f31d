"""History graphs in a real headless browser (Debian's chromium through Selenium).

`runwatch up` serves the console; web01 has reported a filling disk for the last three hours.
Its host page shows the series' graph with its warning and critical lines, its call page the
graph with the call's opening marked, both link to the Grafana host dashboard, and chromium
logs nothing: no error, no Content-Security-Policy refusal. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import http.client
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from checks.schema import encode
from tests import test_console_browser as console_browser
from tests.helpers.reports import check_run, measurement, wire_report
from tests.test_console_browser import (  # the console's browser harness
    ARTIFACTS,
    browser,  # noqa: F401 -- a fixture
    collector,  # noqa: F401 -- a fixture
    quiet_webdriver,  # noqa: F401 -- a fixture
    shot,
    sign_in,
    until,
)

pytestmark = pytest.mark.slow

# The console tests' collector, with a host group's own warning threshold, graph history and
# the Grafana link.
COLLECTOR = {
    **console_browser.COLLECTOR,
    "host_groups": [
        {"name": "web", "hosts": ["web*"], "thresholds": {"data_disk_full": {"warning": 0.8}}}
    ],
    "history": {"resolution": "5m", "retention": "2d"},
    "dashboard_url": "https://grafana.example/d/runwatch-host?var-host={{ host }}",
}


@pytest.fixture(autouse=True)
def graph_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    """The `collector` fixture of the console's browser tests starts this config."""
    monkeypatch.setattr(console_browser, "COLLECTOR", COLLECTOR)


def report_filling_disk(url: str, token: str) -> None:
    """Three hours of a disk filling from 60 % to 97 %, one report every 5 minutes, the
    last one now: 36 closed steps and one in progress (on one kept-alive connection)."""
    now = time.time()
    count = 37
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=5)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        for index in range(count):
            at = now - (count - 1 - index) * 300
            value = 0.6 + 0.37 * index / (count - 1)
            labels = {"mountpoint": "/data"}
            used = measurement("disk", "demo_used_ratio", value, at, unit="ratio", labels=labels)
            runs = [check_run("disk", at, 300, kind="filesystem")]
            report = wire_report("web01", index + 1, at, [used], runs, interval=300, boot_id="b")
            connection.request("POST", "/api/v1/reports", body=encode(report), headers=headers)
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 202, answer.status
    finally:
        connection.close()


def console_problems(driver: Any) -> list[str]:
    """What chromium logged at WARNING or above: errors, and CSP refusals (which it logs as
    errors); the favicon's absence would count too."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def test_host_and_call_pages_show_graphs_with_thresholds_under_the_csp(
    browser: Any,  # noqa: F811 -- the fixture imported above
    collector: dict[str, Any],  # noqa: F811 -- the fixture imported above
) -> None:
    from selenium.webdriver.common.by import By

    url, tokens = collector["url"], collector["tokens"]
    report_filling_disk(url, tokens["web01"])
    sign_in(browser, url, tokens["alice"])
    browser.get(url + "/hosts/web01")
    graph = until("the graph", lambda: browser.find_element(By.CSS_SELECTOR, "#host-graphs svg"))
    assert graph.is_displayed() and graph.size["width"] > 300
    lines = {
        line.get_attribute("data-threshold"): line
        for line in graph.find_elements(By.CSS_SELECTOR, "line.threshold")
    }
    assert set(lines) == {"warning", "critical"}
    # Drawn, and dashed by the stylesheet: console.css applied (no inline style needed).
    for line in lines.values():
        assert line.is_displayed()
        assert line.value_of_css_property("stroke-dasharray") not in ("none", "")
    assert "warning 80.0%" in graph.text, "the host group's own warning threshold"
    series = graph.find_element(By.CSS_SELECTOR, "polyline.line")
    assert len(series.get_attribute("points").split()) >= 30
    assert graph.find_element(By.CSS_SELECTOR, "polyline.line").value_of_css_property(
        "stroke"
    ) not in ("none", "")
    link = browser.find_element(By.ID, "host-dashboard").get_attribute("href")
    assert link == "https://grafana.example/d/runwatch-host?var-host=web01"
    browser.execute_script("arguments[0].scrollIntoView()", graph)
    shot(browser, "console-host-graphs-page")
    # The figure alone, as docs/console-host-graphs.png shows it.
    browser.find_element(By.CSS_SELECTOR, "#host-graphs figure").screenshot(
        str(ARTIFACTS / "console-host-graphs.png")
    )

    browser.find_element(By.CSS_SELECTOR, "#host-calls tbody a").click()
    call_graph = until("the call graph", lambda: browser.find_element(By.ID, "call-graph"))
    assert call_graph.find_elements(By.CSS_SELECTOR, "line.mark-opened")
    assert len(call_graph.find_elements(By.CSS_SELECTOR, "line.threshold")) == 2
    assert "from=" in browser.find_element(By.ID, "call-dashboard").get_attribute("href")
    browser.execute_script("arguments[0].scrollIntoView()", call_graph)
    shot(browser, "console-call-graph")
    assert console_problems(browser) == []
