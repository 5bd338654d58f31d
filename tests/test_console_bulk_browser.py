"""Bulk actions and safe silences in a real headless browser (Debian's chromium, Selenium).

`runwatch up` serves the console to a fleet of five reporting hosts (and the machine's own
agent); three have a full disk. An operator selects calls with the keyboard and acknowledges
them together; then previews a silence in place, is asked for a second confirmation because it
covers more than `silences.confirm_over` of the fleet, and saves it once confirmed. With script
turned off, both forms work the same.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.schema import encode
from collector.auth import add_token
from tests.helpers import RUNWATCH
from tests.helpers.reports import check_run, measurement, wire_report
from tests.procs import Processes, wait_for
from tests.test_console_browser import (
    COLLECTOR,
    browser,
    js_errors,
    quiet_webdriver,
    shot,
    sign_in,
    until,
)

pytestmark = pytest.mark.slow


def subprocess_stderr(tmp_path: Path) -> Any:
    """Where `runwatch up` writes its log, for the test's failure message."""
    return (tmp_path / "up.err").open("w")


__all__ = ["browser", "quiet_webdriver"]  # fixtures shared with test_console_browser.py

FULL = ("web01", "web02", "web03")
FINE = ("db01", "db02")


def report(url: str, host: str, token: str, used: float) -> None:
    now = time.time()
    value = measurement(
        "disk", "demo_used_ratio", used, now, unit="ratio", labels={"mountpoint": "/data"}
    )
    run = check_run("disk", now, 60, kind="filesystem")
    body = wire_report(host, 1, now, [value], [run], interval=60, boot_id="b1")
    request = urllib.request.Request(
        url + "/api/v1/reports",
        data=encode(body),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 202


def loaded(driver: Any) -> None:
    """The page and its deferred scripts are there (a click that navigates returns early)."""
    until("the page", lambda: driver.execute_script("return document.readyState") == "complete")


def get_json(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def patiently(probe: Any) -> Any:
    """A wait_for probe that counts a slow or refused answer (a loaded machine) as not yet."""

    def tried() -> Any:
        try:
            return probe()
        except OSError:
            return None

    return tried


@pytest.fixture
def fleet(tmp_path: Path, processes: Processes) -> dict[str, Any]:
    """`runwatch up` with five hosts reporting, three of them with an open call."""
    data = tmp_path / "data"
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump(COLLECTOR))
    tokens = {host: add_token(data / "agents.tokens", host) for host in FULL + FINE}
    alice = add_token(data / "operators.tokens", "alice")
    url = processes.runwatch_up(
        tmp_path / "up.out", data, config, "60s", stderr=subprocess_stderr(tmp_path)
    )
    wait_for(
        "the collector",
        patiently(lambda: urllib.request.urlopen(url + "/healthz", timeout=5).status == 200),
        timeout=60,
    )
    for host in FULL + FINE:
        report(url, host, tokens[host], 0.97 if host in FULL else 0.40)
    calls = wait_for(
        "three open calls",
        patiently(
            lambda: (c := get_json(url + "/api/v1/calls?status=open", alice)) and len(c) == 3 and c
        ),
        timeout=60,
    )
    hosts = wait_for(
        "the machine's own agent too",
        patiently(
            lambda: len(h := [h["host"] for h in get_json(url + "/api/v1/hosts", alice)]) > 5 and h
        ),
        timeout=60,
    )
    return {"url": url, "alice": alice, "calls": calls, "hosts": hosts}


def test_operator_acknowledges_several_calls_at_once(browser: Any, fleet: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    url = fleet["url"]
    by_host = {c["host"]: c["id"] for c in fleet["calls"]}
    sign_in(browser, url, fleet["alice"])
    browser.get(url + "/calls")
    every = browser.find_element(By.ID, "select-page")
    assert every.get_attribute("aria-label") == "Select every call on this page"
    every.send_keys(Keys.SPACE)  # keyboard: the box takes focus and space ticks it
    boxes = browser.find_elements(By.CSS_SELECTOR, "input.select-call")
    assert len(boxes) == 3 and all(box.is_selected() for box in boxes)
    assert browser.find_element(By.ID, "bulk-count").text == "3 selected"
    # Leave web03's call out: "all" turns to "some".
    leave_out = browser.find_element(
        By.CSS_SELECTOR, f'input.select-call[value="{by_host["web03"]}"]'
    )
    leave_out.send_keys(Keys.SPACE)
    assert not leave_out.is_selected()
    assert not every.is_selected()
    assert browser.execute_script("return arguments[0].indeterminate", every) is True
    assert browser.find_element(By.ID, "bulk-count").text == "2 selected"
    action = browser.find_element(By.ID, "bulk-action")
    assert action.get_attribute("value") == "acknowledge"
    # The bar shows the fields of the chosen action only.
    duration = browser.find_element(By.ID, "bulk-duration")
    assert not duration.is_displayed()
    assert not browser.find_element(By.ID, "bulk-text").is_displayed()
    Select(action).select_by_value("silence")
    assert duration.is_displayed() and duration.get_attribute("required") == "true"
    Select(action).select_by_value("acknowledge")
    shot(browser, "console-calls-selected")
    browser.find_element(By.ID, "bulk-apply").click()

    summary = until("the outcome", lambda: browser.find_element(By.ID, "bulk-summary").text)
    assert summary == "2 done, 0 refused."
    outcomes = browser.find_element(By.ID, "bulk-outcomes").text
    for host in ("web01", "web02"):
        assert f"#{by_host[host]} done" in outcomes
    assert f"#{by_host['web03']}" not in outcomes
    shot(browser, "console-bulk-acknowledged")

    for host, acknowledged in (("web01", True), ("web02", True), ("web03", False)):
        call = get_json(f"{url}/api/v1/calls/{by_host[host]}", fleet["alice"])
        kinds = [e["kind"] for e in call["events"]]
        assert ("acknowledged" in kinds) is acknowledged, host
    audit = get_json(url + "/api/v1/audit", fleet["alice"])
    assert sorted((a["action"], a["target"], a["via"]) for a in audit) == sorted(
        ("call.acknowledge", f"call {by_host[h]}", "console") for h in ("web01", "web02")
    )
    browser.find_element(By.ID, "bulk-back").click()
    until("the calls list", lambda: browser.find_element(By.ID, "calls"))
    assert js_errors(browser) == []


def test_silence_preview_and_its_second_confirmation(browser: Any, fleet: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    url, size = fleet["url"], len(fleet["hosts"])
    assert size == 6  # the five hosts, and the machine's own agent
    sign_in(browser, url, fleet["alice"])
    browser.find_element(By.LINK_TEXT, "Silences").click()
    loaded(browser)
    for field in ("silence-host", "silence-rule", "silence-duration", "silence-reason"):
        assert browser.find_element(By.ID, field).get_attribute("value") == "", field
    browser.find_element(By.ID, "silence-host").send_keys("web*")
    browser.find_element(By.ID, "silence-rule").send_keys("data_disk_full")
    browser.find_element(By.ID, "silence-duration").send_keys("1h")
    browser.find_element(By.ID, "silence-reason").send_keys("rack move")
    browser.execute_script("window.stayed = true")  # gone if the page were loaded anew
    browser.find_element(By.ID, "preview-silence").click()
    summary = until(
        "the preview", lambda: browser.find_element(By.ID, "reach-summary").text or None
    )
    share = f"{100 * 3 / size:.1f}%"
    assert summary.startswith(f"Matches 3 of {size} hosts ({share} of the fleet) and 1 rule")
    assert browser.execute_script("return window.stayed") is True, "previewed in place"
    hosts = browser.find_element(By.ID, "reach-hosts").text
    assert all(h in hosts for h in FULL) and "db01" not in hosts
    assert "silences.confirm_over" in browser.find_element(By.ID, "reach-confirm-why").text
    shot(browser, "console-silence-preview")

    # Saving without the confirmation: the server refuses, and nothing is saved.
    browser.find_element(By.ID, "add-silence").click()
    error = until("the refusal", lambda: browser.find_element(By.ID, "silence-error").text)
    assert "second confirmation" in error
    assert "rack move" not in browser.find_element(By.ID, "silences").text
    assert get_json(url + "/api/v1/silences", fleet["alice"]) == []
    # The page came back with what was typed and the preview with its confirmation box.
    assert browser.find_element(By.ID, "silence-host").get_attribute("value") == "web*"
    box = browser.find_element(By.ID, "confirm-fleet-share")
    assert not box.is_selected()
    shot(browser, "console-silence-confirm")
    box.click()
    browser.find_element(By.ID, "add-silence").click()
    until("the silence", lambda: "rack move" in browser.find_element(By.ID, "silences").text)
    (silence,) = get_json(url + "/api/v1/silences", fleet["alice"])
    assert (silence["host"], silence["rule"], silence["created_by"]) == (
        "web*",
        "data_disk_full",
        "alice",
    )

    # A narrow silence: the preview follows the typing, and asks nothing more.
    loaded(browser)
    browser.find_element(By.ID, "silence-host").send_keys("web01")
    browser.find_element(By.ID, "silence-rule").send_keys("data_disk_full")
    until(
        "the narrow preview",
        lambda: f"Matches 1 of {size} hosts" in browser.find_element(By.ID, "reach-summary").text,
    )
    assert not browser.find_elements(By.ID, "confirm-fleet-share")
    browser.find_element(By.ID, "silence-duration").send_keys("30m")
    browser.find_element(By.ID, "silence-reason").send_keys("one disk")
    browser.find_element(By.ID, "add-silence").click()
    until("the second silence", lambda: "one disk" in browser.find_element(By.ID, "silences").text)
    # The refusal above came with its HTTP status (409), which the browser logs: no script error.
    assert [e for e in js_errors(browser) if "status of 409" not in e] == []


def test_without_script_the_forms_work_the_same(browser: Any, fleet: dict[str, Any]) -> None:
    """Script off: "all on this page" is sent as all=page, and "Preview" sends the form."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url = fleet["url"]
    sign_in(browser, url, fleet["alice"])
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    browser.get(url + "/calls")
    browser.find_element(By.ID, "select-page").click()
    rows = browser.find_elements(By.CSS_SELECTOR, ".select-call")
    assert not any(box.is_selected() for box in rows), "no script ticks the rows"
    browser.find_element(By.ID, "bulk-text").send_keys("on it")
    Select(browser.find_element(By.ID, "bulk-action")).select_by_value("comment")
    browser.find_element(By.ID, "bulk-apply").click()
    summary = until("the outcome", lambda: browser.find_element(By.ID, "bulk-summary").text)
    assert summary == "3 done, 0 refused."

    browser.get(url + "/silences")
    browser.find_element(By.ID, "silence-host").send_keys("*")
    browser.find_element(By.ID, "silence-rule").send_keys("host_stale")
    browser.find_element(By.ID, "preview-silence").click()  # a submit, without script
    summary = until("the preview", lambda: browser.find_element(By.ID, "reach-summary").text)
    assert summary.startswith(f"Matches {len(fleet['hosts'])} of {len(fleet['hosts'])} hosts")
    assert browser.find_element(By.ID, "silence-host").get_attribute("value") == "*"
    browser.find_element(By.ID, "silence-duration").send_keys("10m")
    browser.find_element(By.ID, "silence-reason").send_keys("collector move")
    browser.find_element(By.ID, "confirm-fleet-share").click()
    browser.find_element(By.ID, "add-silence").click()
    until("the silence", lambda: "collector move" in browser.find_element(By.ID, "silences").text)
    (silence,) = get_json(url + "/api/v1/silences", fleet["alice"])
    assert (silence["host"], silence["rule"]) == ("*", "host_stale")


def test_call_commands_work_several_calls(fleet: dict[str, Any], tmp_path: Path) -> None:
    """`runwatch call ack ID ID…` and `call silence` against the running collector."""
    url = fleet["url"]
    ids = sorted(c["id"] for c in fleet["calls"])
    token = tmp_path / "alice.token"
    token.write_text(fleet["alice"])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RUNWATCH, "call", *args, "--collector", url, "--token-file", str(token)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    acked = run("ack", *map(str, ids[:2]))
    assert acked.returncode == 0, acked.stderr
    assert acked.stdout.splitlines()[-1] == "2 done, 0 refused"
    again = run("ack", *map(str, ids))
    assert again.returncode == 1, "two were acknowledged already"
    assert f"call {ids[0]} refused: call {ids[0]} is already acknowledged" in again.stdout
    assert again.stdout.splitlines()[-1] == "1 done, 2 refused"
    wide = run("silence", "--for", "1h", "--reason", "rack move", *map(str, ids))
    assert wide.returncode == 1 and "add --confirm-fleet-share" in wide.stderr
    silenced = run(
        "silence",
        "--for",
        "1h",
        "--reason",
        "rack move",
        "--confirm-fleet-share",
        "--json",
        *map(str, ids),
    )
    assert silenced.returncode == 0, silenced.stderr
    assert json.loads(silenced.stdout)["done"] == 3
    hosts = sorted(s["host"] for s in get_json(url + "/api/v1/silences", fleet["alice"]))
    assert hosts == list(FULL)
