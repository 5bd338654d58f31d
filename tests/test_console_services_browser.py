"""Services in a real headless browser: an operator finds a service's problem on the Services
page and from the call, and posts a message for users; the status page, with no sign-in, shows
the public service's state and the message, and nothing internal."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.auth import add_token
from tests.procs import Processes, wait_for
from tests.test_console_browser import (  # noqa: F401 -- fixtures
    COLLECTOR,
    browser,
    js_errors,
    quiet_webdriver,
    report_problem,
    shot,
    sign_in,
    until,
)

pytestmark = pytest.mark.slow

SERVICES = {
    "web-shop": {
        "title": "Web shop",
        "owner": "computer-operations",
        "description": "Where customers order.",
        "public": True,
        "components": [{"name": "web server", "hosts": ["web01"]}],
        "depends_on": ["database"],
    },
    "database": {
        "title": "Database",
        "owner": "systems-administration",
        "components": [{"hosts": ["db*"], "need": "any"}],
    },
}


@pytest.fixture
def collector(tmp_path: Path, processes: Processes) -> dict[str, Any]:
    """`runwatch up` with two services, web01's agent token and an operator."""
    data = tmp_path / "data"
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({**COLLECTOR, "services": SERVICES}))
    tokens = {
        "web01": add_token(data / "agents.tokens", "web01"),
        "alice": add_token(data / "operators.tokens", "alice"),
    }
    url = processes.runwatch_up(
        tmp_path / "up.out", data, config, "60s", stderr=(tmp_path / "up.err").open("w")
    )
    wait_for(
        "the collector", lambda: urllib.request.urlopen(url + "/healthz", timeout=2).status == 200
    )
    return {"url": url, "tokens": tokens}


def test_services_page_and_status_page(browser: Any, collector: dict[str, Any]) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    url, tokens = collector["url"], collector["tokens"]
    report_problem(url, tokens["web01"])
    sign_in(browser, url, tokens["alice"])
    browser.find_element(By.LINK_TEXT, "Services").click()

    def web_server_down() -> Any:
        browser.refresh()  # the states are worked out at each tick (every second here)
        shop = browser.find_element(By.ID, "service-web-shop")
        return shop if "web01: data_disk_full CRITICAL" in shop.text else None

    shop = until("the web server's problem on the web shop", web_server_down)
    assert "outage" in shop.text
    text = shop.text
    assert "Where customers order." in text
    assert "web01: data_disk_full CRITICAL" in text
    assert "matches no host" in browser.find_element(By.ID, "service-database").text
    shot(browser, "console-services")
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, "message-service")).select_by_value("web-shop")
    browser.find_element(By.ID, "message-text").send_keys("We are on it; back by 14:00.")
    browser.find_element(By.ID, "post-message").click()
    until(
        "the posted message",
        lambda: "web-shop: We are on it" in browser.find_element(By.ID, "message-list").text,
    )
    assert "alice" in browser.find_element(By.ID, "message-list").text
    browser.find_element(By.CSS_SELECTOR, "#service-web-shop a[href='/hosts/web01']").click()
    until("the host page", lambda: browser.find_element(By.ID, "host-state").text == "CRITICAL")
    browser.find_element(By.CSS_SELECTOR, "#host-calls tbody a").click()
    affects = browser.find_element(By.ID, "call-services").text
    assert affects == "Affects web-shop."
    assert js_errors(browser) == []

    browser.delete_all_cookies()  # users have no session
    browser.get(url + "/status")
    row = browser.find_element(By.ID, "status-web-shop").text
    assert "Web shop" in row and "outage" in row
    page = browser.find_element(By.TAG_NAME, "body").text
    for internal in ("web01", "data_disk_full", "Database", "database", "alice"):
        assert internal not in page, internal
    assert "1 of 1 services are not fully operational." in page
    assert "Web shop: We are on it; back by 14:00." in page  # posted by an operator
    shot(browser, "status-page")
    assert js_errors(browser) == []


def test_status_page_feeds_are_served_without_a_session(collector: dict[str, Any]) -> None:
    url = collector["url"]
    with urllib.request.urlopen(url + "/status.atom", timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("application/atom+xml")
        assert b"<feed" in answer.read()
    with urllib.request.urlopen(url + "/status.json", timeout=5) as answer:
        listed = json.load(answer)
    assert [s["service"] for s in listed["services"]] == ["web-shop"]
