"""The console in a real headless browser: Debian's chromium, driven by Selenium.

`runwatch up` serves the console; an operator signs in, sees a host with a problem,
acknowledges and resolves its call and adds a silence; a read-only operator can change
nothing; no page logs a JavaScript error. Screenshots go to tests/artifacts/ (or
$RUNWATCH_TEST_ARTIFACTS). The fixtures (browser, console) are in tests/helpers/browser.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import tests.helpers.browser as harness
from tests.helpers import RUNWATCH
from tests.helpers.browser import (
    Console,
    absent,
    js_errors,
    report_problem,
    shot,
    sign_in,
    until,
)
from tests.procs import Processes

pytestmark = pytest.mark.slow

# Browser test files written before tests/helpers/browser.py imported the harness from here;
# these names keep them working. New files import from tests.helpers.browser (or, for the
# fixtures, nothing: tests/conftest.py makes them available everywhere).
ARTIFACTS = harness.ARTIFACTS
COLLECTOR = harness.COLLECTOR
browser = harness.browser
quiet_webdriver = harness.quiet_webdriver


@pytest.fixture
def collector(tmp_path: Path, processes: Processes) -> dict[str, Any]:
    """What `console` gives, as the dict those files use (url, tokens, data), started with this
    module's COLLECTOR at the time (a file may patch it for its own config)."""
    started = harness.start_console(tmp_path, processes, COLLECTOR)
    return {"url": started.url, "tokens": started.tokens, "data": started.data}


def test_operator_handles_a_call_and_adds_a_silence(browser: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By

    url, tokens = console.url, console.tokens
    report_problem(url, tokens["web01"])
    sign_in(browser, url, tokens["alice"])
    assert browser.find_element(By.ID, "who").text == "alice (operator)"
    hosts = browser.find_element(By.ID, "hosts").text
    assert re.search(r"web01\s+CRITICAL", hosts), hosts
    shot(browser, "console-overview")

    browser.find_element(By.LINK_TEXT, "web01").click()
    until("the host page", lambda: browser.find_element(By.ID, "host-state").text == "CRITICAL")
    assert "data_disk_full" in browser.find_element(By.ID, "rule-states").text
    shot(browser, "console-host")
    browser.find_element(By.CSS_SELECTOR, "#host-calls tbody a").click()
    browser.find_element(By.ID, "acknowledge").click()
    until("the acknowledgement", lambda: browser.find_elements(By.ID, "call-acked"))
    assert "Acknowledged by alice." in browser.find_element(By.ID, "events").text
    browser.find_element(By.ID, "resolve-text").send_keys("disk cleaned")
    browser.find_element(By.ID, "resolve").click()
    browser.switch_to.alert.accept()  # console.js asks first
    until("the resolution", lambda: browser.find_element(By.ID, "call-status").text == "resolved")
    assert "Resolved by alice: disk cleaned" in browser.find_element(By.ID, "events").text
    shot(browser, "console-call-resolved")

    browser.find_element(By.LINK_TEXT, "Silences").click()
    browser.find_element(By.ID, "silence-host").send_keys("web*")
    browser.find_element(By.ID, "silence-rule").send_keys("data_disk_full")
    browser.find_element(By.ID, "silence-duration").send_keys("2h")
    browser.find_element(By.ID, "silence-reason").send_keys("disk swap tonight")
    browser.find_element(By.ID, "preview-silence").click()
    # web01 is most of this fleet: the preview asks for a second confirmation (see
    # tests/test_console_bulk_browser.py).
    until("the preview", lambda: browser.find_element(By.ID, "confirm-fleet-share")).click()
    browser.find_element(By.ID, "add-silence").click()
    until(
        "the silence", lambda: "disk swap tonight" in browser.find_element(By.ID, "silences").text
    )
    shot(browser, "console-silences")

    browser.find_element(By.LINK_TEXT, "Audit log").click()
    audit = until("the audit log", lambda: browser.find_element(By.ID, "audit").text)
    for action in ("call.acknowledge", "call.resolve", "silence.add"):
        assert action in audit
    shot(browser, "console-audit")

    period = datetime.now(UTC).strftime("%Y-%m")
    browser.get(f"{url}/report?period={period}")
    for chart in ("chart-calls", "chart-ttr", "chart-backups"):
        element = browser.find_element(By.ID, chart)
        assert element.is_displayed() and element.size["width"] > 100, chart
    shot(browser, "console-report")
    assert js_errors(browser) == []


def test_read_only_operator_changes_nothing(browser: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By

    url, tokens = console.url, console.tokens
    report_problem(url, tokens["web01"])
    sign_in(browser, url, tokens["rob"])
    assert browser.find_element(By.ID, "who").text == "rob (read-only)"
    browser.find_element(By.LINK_TEXT, "web01").click()
    browser.find_element(By.CSS_SELECTOR, "#host-calls tbody a").click()
    assert browser.find_elements(By.ID, "read-only-note")
    assert absent(browser, "acknowledge") and absent(browser, "resolve")
    call_url = browser.current_url
    browser.find_element(By.LINK_TEXT, "Silences").click()
    assert browser.find_element(By.ID, "silences")
    assert absent(browser, "silence-form")
    shot(browser, "console-read-only")
    assert js_errors(browser) == []

    # Forging the forms from the page itself, with the session's own CSRF token: refused.
    browser.get(call_url)
    statuses = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const csrf = document.querySelector('input[name=csrf]').value;
        const post = (path, extra) => fetch(path, {method: 'POST',
            body: new URLSearchParams({csrf, ...extra})}).then(r => r.status);
        const call = location.pathname;
        Promise.all([post(call + '/acknowledge', {}), post(call + '/resolve', {}),
                     post('/silences', {duration: '1h', reason: 'sneaky'})]).then(done);
    """)
    assert statuses == [403, 403, 403]
    with urllib.request.urlopen(url + "/api/v1/calls?status=open", timeout=5) as answer:
        (call,) = json.load(answer)
    assert call["status"] == "open"
    audit = urllib.request.Request(
        url + "/api/v1/audit", headers={"Authorization": f"Bearer {tokens['rob']}"}
    )
    with urllib.request.urlopen(audit, timeout=5) as answer:
        assert json.load(answer) == []


def test_html_report_renders_with_charts(browser: Any, console: Console, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    url, tokens = console.url, console.tokens
    report_problem(url, tokens["web01"])
    period = datetime.now(UTC).strftime("%Y-%m")
    out = tmp_path / "report.html"
    subprocess.run(
        [
            RUNWATCH,
            "report",
            "--data-dir",
            str(console.data),
            "--period",
            period,
            "--format",
            "html",
            "--output",
            str(out),
        ],
        check=True,
        timeout=60,
    )
    browser.get(out.as_uri())
    assert f"Service levels, {period}" in browser.find_element(By.TAG_NAME, "h1").text
    for chart in ("chart-calls", "chart-ttr", "chart-backups"):
        element = browser.find_element(By.ID, chart)
        assert element.is_displayed() and element.size["height"] > 20, chart
    shot(browser, "report-html")
    assert js_errors(browser) == []
    assert "availability" in browser.find_element(By.CSS_SELECTOR, "table.levels").text


def test_call_commands_use_the_same_path(console: Console, tmp_path: Path) -> None:
    """`runwatch call` acknowledges and resolves through the API, under the same roles."""
    url, tokens = console.url, console.tokens
    report_problem(url, tokens["web01"])
    with urllib.request.urlopen(url + "/api/v1/calls?status=open", timeout=5) as answer:
        (call,) = json.load(answer)
    files = {}
    for name in ("alice", "rob"):
        files[name] = tmp_path / f"{name}.token"
        files[name].write_text(tokens[name])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RUNWATCH, "call", *args, str(call["id"]), "--collector", url],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    refused = run("ack", "--token-file", str(files["rob"]))
    assert refused.returncode == 1 and "read-only" in refused.stderr
    acked = run("ack", "--token-file", str(files["alice"]))
    assert acked.returncode == 0, acked.stderr
    assert f"call {call['id']} acknowledged" in acked.stdout
    resolved = run("resolve", "--text", "cleaned", "--token-file", str(files["alice"]), "--json")
    assert resolved.returncode == 0 and json.loads(resolved.stdout)["status"] == "resolved"
    again = run("resolve", "--token-file", str(files["alice"]))
    assert again.returncode == 1 and "already resolved" in again.stderr


def test_operator_retires_a_host_from_its_page(browser: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By

    url, tokens = console.url, console.tokens
    report_problem(url, tokens["web01"])
    sign_in(browser, url, tokens["alice"])
    browser.find_element(By.LINK_TEXT, "web01").click()
    until("the host page", lambda: browser.find_element(By.ID, "host-state").text == "CRITICAL")
    browser.find_element(By.ID, "retire-reason").send_keys("decommissioned")
    browser.find_element(By.ID, "retire").click()
    browser.switch_to.alert.accept()  # console.js asks first
    retired = until("the retirement", lambda: browser.find_element(By.ID, "retired").text)
    assert "by alice (decommissioned)" in retired
    assert browser.find_element(By.ID, "host-state").text == "RETIRED"
    statuses = browser.find_elements(By.CSS_SELECTOR, "#host-calls tbody td:nth-child(2)")
    assert [cell.text for cell in statuses] == ["resolved"]
    shot(browser, "console-host-retired")

    browser.find_element(By.CSS_SELECTOR, "#host-calls tbody a").click()
    events = browser.find_element(By.ID, "events").text
    assert "Resolved: host web01 was retired by alice: decommissioned" in events
    browser.get(url + "/")
    assert "web01" not in browser.find_element(By.ID, "hosts").text
    browser.find_element(By.LINK_TEXT, "Audit log").click()
    assert "host.retire" in until(
        "the audit log", lambda: browser.find_element(By.ID, "audit").text
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        report_problem(url, tokens["web01"])
    assert refused.value.code == 409
    assert js_errors(browser) == []
