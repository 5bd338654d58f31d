"""The console's lists and live pages in a real browser (Debian's chromium through Selenium):
a new problem shows up on the overview without a reload while a half-typed search keeps its
text and focus; hosts are found by name and label and calls by text; 10,000 hosts are paged
from the keyboard. A failing refresh is shown as such.

10,000 hosts are written to the store before `runwatch up` starts (one transaction, about a
second), as if each had reported once within the hour: the collector reads them at start.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.auth import add_token
from collector.store.records import HostRecord
from collector.store.sqlite import SQLiteStore
from tests.procs import Processes, wait_for
from tests.test_console_browser import (
    COLLECTOR,
    browser,  # noqa: F401 -- a fixture
    js_errors,
    quiet_webdriver,  # noqa: F401 -- a fixture
    shot,
    sign_in,
    until,
)

pytestmark = pytest.mark.slow

FLEET = 10_000
SEED_SECONDS = 30  # bound on writing the fleet to the store


def seed_fleet(data: Path, count: int) -> float:
    """`count` hosts in the store, as if each reported in the last minutes; every tenth has
    role=db. Returns how long it took."""
    started = time.monotonic()
    now = time.time()
    store = SQLiteStore(data / "runwatch.db")
    try:
        with store.transaction():
            store.save_hosts(
                [
                    HostRecord(
                        f"node{n:05d}",
                        first_seen=now - 86400,
                        last_report_at=now - (n % 600),
                        interval_seconds=3600,  # not stale for hours
                        agent_version="seeded",
                        boot_id="seed",
                        last_seq=1,
                        labels={"role": "db" if n % 10 == 0 else "web", "site": "fra"},
                    )
                    for n in range(count)
                ]
            )
    finally:
        store.close()
    took = time.monotonic() - started
    assert took < SEED_SECONDS, f"seeding {count} hosts took {took:.1f} s"
    return took


def start(tmp_path: Path, processes: Processes, hosts: int) -> dict[str, Any]:
    """`runwatch up` over a store holding `hosts` seeded hosts, with agent tokens for web01,
    web02 and web03 and an operator alice."""
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    if hosts:
        seed_fleet(data, hosts)
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump(COLLECTOR))
    tokens = {
        "web01": add_token(data / "agents.tokens", "web01"),
        "web02": add_token(data / "agents.tokens", "web02"),
        "web03": add_token(data / "agents.tokens", "web03"),
        "alice": add_token(data / "operators.tokens", "alice"),
    }
    url = processes.runwatch_up(
        tmp_path / "up.out",
        data,
        config,
        "60s",
        stderr=(tmp_path / "up.err").open("w"),
        timeout=60,
    )
    wait_for(
        "the collector",
        lambda: urllib.request.urlopen(url + "/healthz", timeout=2).status == 200,
        timeout=60,
    )
    return {"url": url, "tokens": tokens, "up": processes.started[-1]}


def report_as(url: str, host: str, token: str, used: float) -> None:
    """A report from `host` with its data disk `used` full (as report_problem sends)."""
    from checks.schema import encode
    from tests.helpers.reports import check_run, measurement, wire_report

    now = time.time()
    sample = measurement(
        "disk", "demo_used_ratio", used, now, unit="ratio", labels={"mountpoint": "/data"}
    )
    run = check_run("disk", now, 60, kind="filesystem")
    report = wire_report(host, int(now), now, [sample], [run], interval=60, boot_id="b1")
    request = urllib.request.Request(
        url + "/api/v1/reports",
        data=encode(report),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    # A collector that just read 10,000 hosts, on a crowded machine, may take a while.
    with urllib.request.urlopen(request, timeout=60) as answer:
        assert answer.status == 202


def absent_next(driver: Any) -> bool:
    from selenium.webdriver.common.by import By

    driver.implicitly_wait(0)
    try:
        return not driver.find_elements(By.CSS_SELECTOR, "#hosts-pager a[rel=next]")
    finally:
        driver.implicitly_wait(5)


def host_names(driver: Any) -> list[str]:
    # Read in one script: the live refresh may swap the table between a find and a read.
    names = driver.execute_script(
        "return Array.from(document.querySelectorAll('#hosts tbody td:first-child a'),"
        " a => a.textContent.trim())"
    )
    return [str(name) for name in names]


def test_a_new_problem_arrives_without_a_reload_and_typing_survives(
    browser: Any,  # noqa: F811 -- the fixture
    tmp_path: Path,
    processes: Processes,
) -> None:
    from selenium.webdriver.common.by import By

    collector = start(tmp_path, processes, 0)
    url, tokens = collector["url"], collector["tokens"]
    report_as(url, "web02", tokens["web02"], 0.5)
    report_as(url, "web01", tokens["web01"], 0.97)
    sign_in(browser, url, tokens["alice"])
    problems = browser.find_element(By.ID, "live-problems").text
    assert "web01" in problems and "web02" not in problems
    first_update = browser.find_element(By.ID, "live-updated").text
    assert re.fullmatch(r"Updated \d\d:\d\d:\d\d UTC", first_update), first_update
    browser.execute_script("window.stillHere = 'the same page';")

    search = browser.find_element(By.ID, "host-q")
    search.click()
    search.send_keys("web0")  # typed, not sent
    report_as(url, "web02", tokens["web02"], 0.97)

    until(
        "web02's problem on the overview",
        lambda: "web02" in browser.find_element(By.ID, "live-problems").text,
    )
    assert browser.execute_script("return window.stillHere") == "the same page", "no reload"
    assert re.search(r"web02\s+CRITICAL", browser.find_element(By.ID, "hosts").text)
    counts = browser.find_element(By.ID, "state-critical").text
    assert counts.split()[0] == "2", counts
    search = browser.find_element(By.ID, "host-q")
    assert search.get_attribute("value") == "web0", "the typed text stays"
    assert browser.switch_to.active_element == search, "and keeps the focus"
    # The refresh that brought web02 may fall in the same second as the page's load: the
    # next one (every 5 s) must show a later time.
    until(
        "a later 'Updated' time",
        lambda: browser.find_element(By.ID, "live-updated").text != first_update,
    )
    shot(browser, "console-live-overview")

    # The calls list and the host page update themselves too.
    browser.get(url + "/calls")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#calls tbody tr[data-call]")) == 2
    report_as(url, "web03", tokens["web03"], 0.97)
    until(
        "web03's call in the list",
        lambda: "web03" in browser.find_element(By.ID, "calls").text,
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#calls tbody tr[data-call]")) == 3
    browser.get(url + "/hosts/web02")
    assert browser.find_element(By.ID, "host-state").text == "CRITICAL"
    browser.execute_script("window.stillHere = 'the host page';")
    # Someone keyboard-focused a call's link and is selecting the rule states to copy them.
    link = browser.find_element(By.CSS_SELECTOR, "#host-calls tbody a")
    href = link.get_attribute("href")
    browser.execute_script("arguments[0].focus();", link)
    browser.execute_script(
        "const range = document.createRange();"
        "range.selectNodeContents(document.getElementById('rule-states'));"
        "getSelection().removeAllRanges(); getSelection().addRange(range);"
    )
    report_as(url, "web02", tokens["web02"], 0.5)
    until("web02 OK again", lambda: browser.find_element(By.ID, "host-state").text == "OK")
    assert browser.execute_script("return window.stillHere") == "the host page"
    assert "CRITICAL" in browser.find_element(By.ID, "rule-states").text, "the selection waits"
    status = browser.find_element(By.ID, "live-status")
    assert status.get_attribute("data-live-waiting") is not None
    assert browser.switch_to.active_element.get_attribute("href") == href, "focus moved along"
    browser.execute_script("getSelection().removeAllRanges();")
    until(
        "the rule states once the selection is gone",
        lambda: "CRITICAL" not in browser.find_element(By.ID, "rule-states").text,
    )
    assert js_errors(browser) == []

    # A collector that stops answering: the page says since when it is not updating.
    processes.stop(collector["up"])
    warning = until(
        "the stale warning",
        lambda: (
            browser.find_element(By.ID, "live-stale").is_displayed()
            and browser.find_element(By.ID, "live-stale").text
        ),
    )
    assert re.match(r"Not updating since \d\d:\d\d:\d\d UTC: ", warning), warning
    shot(browser, "console-live-stale")


@pytest.fixture
def fleet(tmp_path: Path, processes: Processes) -> dict[str, Any]:
    collector = start(tmp_path, processes, FLEET)
    report_as(collector["url"], "web01", collector["tokens"]["web01"], 0.97)
    return collector


def test_search_finds_hosts_by_name_and_label_and_calls_by_text(
    browser: Any,  # noqa: F811 -- the fixture
    fleet: dict[str, Any],
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url = fleet["url"]
    sign_in(browser, url, fleet["tokens"]["alice"])
    # Results come as the typing stops, on the same page; the address follows.
    browser.execute_script("window.stillHere = 'the same page';")
    browser.find_element(By.ID, "host-q").send_keys("NODE0999")
    until(
        "the hosts as typed",
        lambda: host_names(browser) == [f"node{n:05d}" for n in range(9990, 10000)],
    )
    assert "q=NODE0999" in browser.current_url
    assert browser.execute_script("return window.stillHere") == "the same page"
    assert browser.find_element(By.ID, "host-q").get_attribute("value") == "NODE0999"
    assert browser.switch_to.active_element == browser.find_element(By.ID, "host-q")

    search = browser.find_element(By.ID, "host-q")
    search.clear()
    search.send_keys("node0012", Keys.ENTER)
    until("the search", lambda: "q=node0012" in browser.current_url)
    assert host_names(browser) == [f"node{n:05d}" for n in range(120, 130)]
    assert "of 10 hosts" in browser.find_element(By.ID, "hosts-pager").text

    search = browser.find_element(By.ID, "host-q")
    search.clear()
    search.send_keys("role=db node00*", Keys.ENTER)
    until("the label search", lambda: "role%3Ddb" in browser.current_url)
    assert "of 100 hosts" in browser.find_element(By.ID, "hosts-pager").text  # node00000-00999
    names = host_names(browser)
    assert len(names) == 50 and all(int(name[4:]) % 10 == 0 for name in names), names
    shot(browser, "console-host-search")

    browser.find_element(By.LINK_TEXT, "Calls").click()
    calls = browser.find_element(By.ID, "call-q")
    calls.send_keys("DATA_DISK web01", Keys.ENTER)
    until("the call search", lambda: "q=DATA_DISK" in browser.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#calls tbody tr[data-call]")
    assert len(rows) == 1 and "web01" in rows[0].text
    shot(browser, "console-call-search")
    calls = browser.find_element(By.ID, "call-q")
    calls.clear()
    calls.send_keys("node00001", Keys.ENTER)
    until("no call", lambda: "No calls match" in browser.find_element(By.ID, "calls").text)
    assert js_errors(browser) == []


def test_paging_over_10000_hosts_from_the_keyboard(
    browser: Any,  # noqa: F811 -- the fixture
    fleet: dict[str, Any],
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    url = fleet["url"]
    sign_in(browser, url, fleet["tokens"]["alice"])
    pager = browser.find_element(By.ID, "hosts-pager").text
    total = int(re.search(r"1\u201350 of ([\d,]+) hosts", pager)[1].replace(",", ""))  # type: ignore[index]
    assert FLEET <= total <= FLEET + 2, pager  # the seeded fleet, web01 and `up`'s own host
    assert host_names(browser)[0] == "web01", "the CRITICAL host first"

    # Sort by name from the column header; then page on with the keyboard.
    header = browser.find_element(By.CSS_SELECTOR, "#hosts thead th:first-child a")
    header.send_keys(Keys.ENTER)
    until("sorted by name", lambda: "sort=host" in browser.current_url)
    assert host_names(browser)[:2] == ["node00000", "node00001"]
    nxt = browser.find_element(By.CSS_SELECTOR, "#hosts-pager a[rel=next]")
    nxt.send_keys(Keys.ENTER)
    until("page 2", lambda: "page=2" in browser.current_url)
    assert host_names(browser)[0] == "node00050"
    current = browser.find_element(By.CSS_SELECTOR, "#hosts-pager [aria-current=page]")
    assert current.text.split()[-1] == "2"

    pages = -(-total // 50)
    last = browser.find_elements(By.CSS_SELECTOR, "#hosts-pager li a:not([rel])")[-1]
    assert last.text.split()[-1] == str(pages)
    last.send_keys(Keys.ENTER)
    until("the last page", lambda: f"page={pages}" in browser.current_url)
    names = host_names(browser)
    pager = browser.find_element(By.ID, "hosts-pager").text
    now = int(re.search(r" of ([\d,]+) hosts", pager)[1].replace(",", ""))  # type: ignore[index]
    # `up`'s own agent may have reported by now: one host more.
    assert len(names) == now - (pages - 1) * 50 and names == sorted(names), (names, pager)
    assert absent_next(browser), "no next page after the last"

    Select(browser.find_element(By.ID, "host-per")).select_by_value("200")
    browser.find_element(By.ID, "host-search-go").send_keys(Keys.ENTER)
    until("200 a page", lambda: "per=200" in browser.current_url)
    until("200 rows", lambda: len(host_names(browser)) == 200)
    started = time.monotonic()
    browser.get(url + "/?sort=host&dir=desc&per=200&page=25")
    assert time.monotonic() - started < 10
    assert len(host_names(browser)) == 200
    shot(browser, "console-hosts-paged")
    assert js_errors(browser) == []
