"""The console in a real browser, for every browser test file: Debian's chromium driven by
Selenium, a collector served by `runwatch up`, signing in, reports sent as agents send them,
axe-core's accessibility check, keyboard steps and screenshots. The small realistic fleet the
tests and the docs' screenshots use is in tests/helpers/fleet.py.

Fixtures (tests/conftest.py registers this module as a plugin, so any test file can ask for
them without importing them): `browser` (a headless chromium, quit after the test, with
Selenium's own log kept quiet by `quiet_webdriver`), `console_config` (the collector
config; a test file overrides it by defining its own fixture of that name) and `console` (that
collector under `runwatch up`, with agent tokens for the FLEET hosts and two operators: alice,
an operator, and rob, read-only). Everything else is a plain function.

Screenshots go to tests/artifacts/ (or $RUNWATCH_TEST_ARTIFACTS); the ones the docs show are
written into docs/img/ by tests/test_console_a11y_browser.py.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

import runwatch
from checks.schema import Measurement, encode
from collector.auth import ROLE_READ_ONLY, add_token
from tests.helpers.config import TIMED_GROUPS
from tests.helpers.reports import check_run, measurement, wire_report
from tests.procs import Processes, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("RUNWATCH_TEST_ARTIFACTS", Path(__file__).parents[1] / "artifacts"))
# axe-core, from the npm registry: tests/browser/package.json, installed by tests/run (npm ci).
AXE = Path(__file__).parents[1] / "browser" / "node_modules" / "axe-core" / "axe.min.js"
WINDOW = (1280, 900)

# The collector most console tests use: one disk rule that opens a call at once.
COLLECTOR: dict[str, Any] = {
    "sinks": {"helpdesk": {"type": "builtin"}},
    "groups": TIMED_GROUPS,
    "rules": [
        {
            "name": "data_disk_full",
            "metric": "demo_used_ratio",
            "warning": 0.85,
            "critical": 0.95,
            "for": "0s",
            "owner": "systems-administration",
            "description": "The data disk is almost full.",
        }
    ],
    "staleness": {"after_intervals": 3, "owner": "systems-administration"},
    "evaluation_interval": "1s",
}

# The hosts that get agent tokens; tests/helpers/fleet.py's seed_fleet reports for all of them.
FLEET = ("web01", "web02", "db01", "backup01")
OPERATORS = {"alice": "operator", "rob": ROLE_READ_ONLY}


@dataclass
class Console:
    """A collector served by `runwatch up`, as a browser test uses it."""

    url: str
    tokens: dict[str, str]  # host or operator name -> token
    data: Path
    seqs: dict[str, int] = field(default_factory=dict)

    def report(
        self,
        host: str,
        measurements: list[Measurement],
        checks: list[str],
        labels: dict[str, str] | None = None,
        at: float | None = None,
    ) -> None:
        """One report from `host`'s agent (this runwatch's version, with the host's `labels`)
        with these measurements, sent `at` (now by default)."""
        now = time.time() if at is None else at
        self.seqs[host] = self.seqs.get(host, 0) + 1
        runs = [check_run(check, now, 60) for check in checks]
        report = msgspec.structs.replace(
            wire_report(host, self.seqs[host], now, measurements, runs, interval=60, boot_id="b1"),
            agent_version=runwatch.__version__,
            labels=labels or {},
        )
        request = urllib.request.Request(
            self.url + "/api/v1/reports",
            data=encode(report),
            headers={
                "Authorization": f"Bearer {self.tokens[host]}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 202

    def open_calls(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/api/v1/calls?status=open", timeout=30) as answer:
            calls: list[dict[str, Any]] = json.load(answer)
        return calls


def report_problem(url: str, token: str, host: str = "web01") -> None:
    """web01's data disk 97 % full: data_disk_full (COLLECTOR) opens a critical call."""
    now = time.time()
    used = measurement(
        "disk", "demo_used_ratio", 0.97, now, unit="ratio", labels={"mountpoint": "/data"}
    )
    run = check_run("disk", now, 60, kind="filesystem")
    report = wire_report(host, 1, now, [used], [run], interval=60, boot_id="b1")
    request = urllib.request.Request(
        url + "/api/v1/reports",
        data=encode(report),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 202


# --- the browser ---------------------------------------------------------------------------


def new_browser() -> Any:
    """A headless chromium through chromedriver; skips, naming the package, when one is missing."""
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip("chromium not installed (Debian package: chromium)")
    if not os.path.exists(CHROMEDRIVER):
        pytest.skip("chromedriver not installed (Debian package: chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium not installed (pip install 'runwatch[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",  # screenshots without a scrollbar
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(5)  # a click that navigates returns before the next page is there
    return driver


@pytest.fixture
def quiet_webdriver() -> Iterator[None]:
    """Selenium logs every WebDriver command at DEBUG, keys typed into the sign-in form
    included: the test's own token would land in the logs the secret scan reads. That log is
    the browser driver's, not runwatch's; it stays at INFO while a browser runs."""
    logger = logging.getLogger("selenium")
    level = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(level)


@pytest.fixture
def browser(quiet_webdriver: None) -> Iterator[Any]:
    """A headless chromium for one test, quit after it."""
    driver = new_browser()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def console_config() -> dict[str, Any]:
    """The collector config of `console`: override this fixture in a test file to change it."""
    return COLLECTOR


@pytest.fixture
def console(tmp_path: Path, processes: Processes, console_config: dict[str, Any]) -> Console:
    """`runwatch up` on a free port with `console_config` (see start_console)."""
    return start_console(tmp_path, processes, console_config)


def start_console(tmp_path: Path, processes: Processes, config: dict[str, Any]) -> Console:
    """`runwatch up` on a free port with this collector config, agent tokens for the FLEET
    hosts, operators alice and rob (read-only), and a local agent that reports as mon01 (uptime
    only, so that this machine's own disks and load never open a call)."""
    data = tmp_path / "data"
    config_file = tmp_path / "collector.yaml"
    config_file.write_text(yaml.safe_dump(config))
    agent = tmp_path / "agent.yaml"
    local = {"host": "mon01", "labels": {"role": "monitoring"}, "checks": [{"type": "uptime"}]}
    agent.write_text(yaml.safe_dump(local))
    tokens = {host: add_token(data / "agents.tokens", host) for host in FLEET}
    for name, role in OPERATORS.items():
        tokens[name] = add_token(data / "operators.tokens", name, role=role)
    with (tmp_path / "up.err").open("w") as stderr:
        url = processes.runwatch_up(
            tmp_path / "up.out",
            data,
            config_file,
            "60s",
            stderr=stderr,
            agent_config=agent,
            timeout=60,  # a loaded machine starts it slowly
        )
    wait_for("the collector", lambda: _healthy(url), timeout=60)
    return Console(url, tokens, data)


def _healthy(url: str) -> bool:
    """Whether the collector answers /healthz; a refused or slow answer is a no, for now."""
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:  # refused, reset, timed out: still starting on a loaded machine
        return False


def until(what: str, probe: Callable[[], Any], timeout: float = 15) -> Any:
    """wait_for, riding out elements that go stale while the page changes under them."""
    from selenium.common.exceptions import WebDriverException

    def safe() -> Any:
        try:
            return probe()
        except WebDriverException:
            return None

    return wait_for(what, safe, timeout=timeout)


def absent(driver: Any, element_id: str) -> bool:
    """No such element on the page now (without the implicit wait for it to appear)."""
    from selenium.webdriver.common.by import By

    driver.implicitly_wait(0)
    try:
        return not driver.find_elements(By.ID, element_id)
    finally:
        driver.implicitly_wait(5)


def shot(driver: Any, name: str, directory: Path = ARTIFACTS) -> Path:
    """A screenshot of the window, as `directory`/`name`.png."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def js_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def sign_in(driver: Any, url: str, token: str) -> None:
    """Sign in with an operator token, from a fresh start; returns on the overview."""
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(url + "/")
    assert "/login" in driver.current_url
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#token-form button").click()
    until("the overview", lambda: driver.find_elements(By.ID, "who"))


# --- keyboard ------------------------------------------------------------------------------


def press(driver: Any, *keys: str) -> None:
    """Keys sent to whatever has the focus, as a person types them."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def tab_to(driver: Any, css: str, limit: int = 80) -> Any:
    """Press Tab until the focus is on an element matching `css`; that element. Fails when
    `limit` presses never reach it (it cannot be reached by keyboard)."""
    from selenium.webdriver.common.keys import Keys

    for _ in range(limit):
        press(driver, Keys.TAB)
        if driver.execute_script("return document.activeElement.matches(arguments[0])", css):
            return driver.switch_to.active_element
    raise AssertionError(f"{limit} presses of Tab never reached {css} on {driver.current_url}")


def focus_visible(driver: Any) -> bool:
    """Whether the focused element shows it: an outline or a ring (box shadow)."""
    return bool(
        driver.execute_script("""
            const style = getComputedStyle(document.activeElement);
            const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
            return outline || style.boxShadow !== 'none';
        """)
    )


# --- axe-core ------------------------------------------------------------------------------

# Findings at these impacts fail the tests (the acceptance of issue 21).
FAILING = ("serious", "critical")


def axe_violations(driver: Any) -> list[dict[str, Any]]:
    """axe-core's findings on the page now, each {id, impact, help, nodes: [html...]}.

    axe.min.js goes in through WebDriver (execute_script runs outside the page's
    Content-Security-Policy, which forbids inline script), so the console's strict CSP stays
    on while it is checked. Skips when axe-core is not installed."""
    if not AXE.exists():
        pytest.skip(
            "axe-core not installed (npm package axe-core: npm ci --prefix tests/browser, "
            "as tests/run does; Debian package: npm)"
        )
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(AXE.read_text())
    answer = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ['violations']}).then(
            (result) => done(result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => n.html + ' :: ' + n.failureSummary)}))),
            (error) => done({error: String(error)}));
    """)
    assert not isinstance(answer, dict), f"axe-core failed: {answer}"
    violations: list[dict[str, Any]] = answer
    return violations


def describe(violations: list[dict[str, Any]]) -> str:
    """Findings as lines a person reads in a failed assertion."""
    lines = []
    for v in violations:
        lines.append(f"{v['impact']}: {v['id']}: {v['help']}")
        lines.extend(f"    {node}" for node in v["nodes"][:5])
    return "\n".join(lines)


def assert_accessible(driver: Any, page: str) -> list[dict[str, Any]]:
    """Fail on any serious or critical axe-core finding on the page now (name it `page` in the
    message); the lesser findings are returned. For any browser test that reaches a page or a
    state of one (a search result, a preview, a confirmation) the page list of
    tests/test_console_a11y_browser.py does not."""
    found = axe_violations(driver)
    failing = [v for v in found if v["impact"] in FAILING]
    assert not failing, f"axe-core on {page} ({driver.current_url}):\n{describe(failing)}"
    return [v for v in found if v["impact"] not in FAILING]
