"""The console for everyone, in a real headless chromium: axe-core (from the npm registry,
tests/browser) finds no serious or critical accessibility problem on any page, for an operator
and for a read-only one; the main controls work by keyboard alone (Tab and Enter); every page
fits a phone's width; and the screenshots the docs show (docs/img/) are made here, from a small
realistic fleet, so that they stay current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.browser import (
    ARTIFACTS,
    FAILING,
    Console,
    assert_accessible,
    axe_violations,
    describe,
    focus_visible,
    js_errors,
    press,
    shot,
    sign_in,
    tab_to,
    until,
)
from tests.helpers.fleet import FLEET_CONFIG, seed_fleet

pytestmark = pytest.mark.slow

DOCS_IMG = Path(__file__).parents[1] / "docs" / "img"


@pytest.fixture
def console_config() -> dict[str, Any]:
    return FLEET_CONFIG


def _pages(call_id: int) -> dict[str, str]:
    """Every page of the console a signed-in person reaches: name -> path."""
    return {
        "overview": "/",
        "host": "/hosts/db01",
        "calls": "/calls",
        "calls-resolved": "/calls?state=all",
        "call": f"/calls/{call_id}",
        "silences": "/silences",
        "silence-a-host": "/silences?host=db01&rule=*",  # the form filled in from a link
        "report": "/report",
        "audit": "/audit",
        "error": "/calls/999999",
    }


# Pages of features a build may not have yet (the services page, the public status page, which
# is off unless configured): checked where they answer, passed over where they are 404.
OPTIONAL = {"services": "/services", "status": "/status"}


def _check_pages(
    browser: Any, url: str, pages: dict[str, str], optional: dict[str, str] | None = None
) -> dict[str, list[Any]]:
    found = {}
    for name, path in {**pages, **(optional or {})}.items():
        browser.get(url + path)
        status = browser.execute_script(
            "return performance.getEntriesByType('navigation')[0].responseStatus"
        )
        if name in (optional or {}) and status == 404:
            continue
        found[name] = axe_violations(browser)
    return found


def _failing(found: dict[str, list[Any]]) -> str:
    text = []
    for page, violations in found.items():
        bad = [v for v in violations if v["impact"] in FAILING]
        if bad:
            text.append(f"== {page}\n{describe(bad)}")
    return "\n".join(text)


def _keep(name: str, found: dict[str, list[Any]]) -> None:
    """Every finding, whatever its impact, for a person to read after the run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(found, indent=1))


@pytest.mark.parametrize("who", ["alice", "rob"])
def test_axe_finds_nothing_serious_on_any_page(browser: Any, console: Console, who: str) -> None:
    """Every page, as an operator (alice: the forms that change things) and as a read-only
    operator (rob: the same pages without them)."""
    from selenium.webdriver.common.by import By

    calls = seed_fleet(console)
    critical = next(c for c in calls if c["host"] == "db01")
    browser.delete_all_cookies()
    browser.get(console.url + "/login")
    found = {"sign-in": axe_violations(browser)}
    browser.find_element(By.ID, "token").send_keys("not-a-token")
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    until("the refusal", lambda: browser.find_elements(By.ID, "login-error"))
    found["sign-in-refused"] = axe_violations(browser)
    sign_in(browser, console.url, console.tokens[who])
    found |= _check_pages(browser, console.url, _pages(critical["id"]), OPTIONAL)
    if who == "alice":  # the call page once acknowledged and commented, with its history
        browser.get(f"{console.url}/calls/{critical['id']}")
        browser.find_element(By.ID, "acknowledge").click()
        until("the acknowledgement", lambda: browser.find_elements(By.ID, "call-acked"))
        browser.find_element(By.ID, "comment-text").send_keys("freeing space")
        browser.find_element(By.ID, "comment").click()
        until("the comment", lambda: "freeing space" in browser.find_element(By.ID, "events").text)
        found["call-acknowledged"] = axe_violations(browser)
    _keep(who, found)
    assert _failing(found) == ""
    # The refused sign-in's 401, the error page's 404 and those of pages this build lacks are
    # the failures the browser may report.
    # (A bare 404 of a missing page, no HTML, has the browser ask for /favicon.ico too.)
    paths = ("/login", "/calls/999999", *OPTIONAL.values(), "/favicon.ico")
    provoked = tuple(f"{path} - Failed to load resource" for path in paths)
    errors = js_errors(browser)
    assert [e for e in errors if not e.split(": the server")[0].endswith(provoked)] == []


def test_axe_is_really_checking(browser: Any, console: Console) -> None:
    """The check above can fail: a field without a label, put into the sign-in page, is
    reported as critical."""
    browser.get(console.url + "/login")
    assert_accessible(browser, "sign-in")
    browser.execute_script("""
        const field = document.createElement('input');
        field.type = 'text';
        document.querySelector('main').appendChild(field);
    """)
    found = axe_violations(browser)
    assert any(v["id"] == "label" and v["impact"] == "critical" for v in found), found
    with pytest.raises(AssertionError, match="label"):
        assert_accessible(browser, "sign-in with a field added")


def test_keyboard_alone_signs_in_and_acknowledges_a_call(browser: Any, console: Console) -> None:
    """Tab and Enter only: skip the navigation, sign in, open a host and its call, acknowledge
    and comment it; the focus is visible at every step."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    seed_fleet(console)
    browser.get(console.url + "/")
    assert "/login" in browser.current_url
    press(browser, Keys.TAB)  # the first stop on every page: the skip link
    assert browser.switch_to.active_element.get_attribute("class") == "skip-link"
    assert focus_visible(browser)
    press(browser, Keys.ENTER)
    assert browser.execute_script("return document.activeElement.id") == "main"

    tab_to(browser, "#token")
    assert focus_visible(browser)
    press(browser, console.tokens["alice"], Keys.ENTER)
    until("the overview", lambda: browser.find_element(By.ID, "who").text == "alice (operator)")
    assert _current_page(browser) == "Overview"

    tab_to(browser, 'a[href="/hosts/db01"]')
    assert focus_visible(browser)
    press(browser, Keys.ENTER)
    until("db01's page", lambda: "db01" in browser.find_element(By.TAG_NAME, "h1").text)

    tab_to(browser, '#host-calls tbody a[href^="/calls/"]')
    assert focus_visible(browser)
    press(browser, Keys.ENTER)
    until("the call page", lambda: browser.find_elements(By.ID, "acknowledge"))
    assert _current_page(browser) == "Calls"  # a call belongs to the Calls section

    tab_to(browser, "#acknowledge")
    assert focus_visible(browser)
    press(browser, Keys.ENTER)
    until("the acknowledgement", lambda: browser.find_elements(By.ID, "call-acked"))
    assert "Acknowledged by alice." in browser.find_element(By.ID, "events").text

    tab_to(browser, "#comment-text")
    assert focus_visible(browser)
    press(browser, "freeing space on /srv", Keys.ENTER)
    until(
        "the comment",
        lambda: "freeing space on /srv" in browser.find_element(By.ID, "events").text,
    )
    assert js_errors(browser) == []


def test_pages_fit_a_phone(browser: Any, console: Console) -> None:
    """At 320 CSS pixels wide (WCAG's reflow width) nothing but a data table, preformatted text
    or a graph runs past the right edge: the header and navigation, the state boxes and the
    forms wrap."""
    calls = seed_fleet(console)
    critical = next(c for c in calls if c["host"] == "db01")
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 320, "height": 640, "deviceScaleFactor": 1, "mobile": True},
    )
    overflowing = {}
    for name, path in {"sign-in": "/login", **_pages(critical["id"])}.items():
        if name == "overview":
            sign_in(browser, console.url, console.tokens["alice"])
        browser.get(console.url + path)
        shot(browser, f"phone-{name}")
        found = browser.execute_script("""
            const edge = document.documentElement.clientWidth + 1;
            return [...document.querySelectorAll('body *')]
                .filter((e) => !e.closest('table, pre, svg, .visually-hidden, .skip-link'))
                .filter((e) => e.getBoundingClientRect().right > edge)
                .map((e) => e.outerHTML.slice(0, 120));
        """)
        if found:
            overflowing[name] = found
    assert overflowing == {}


def _current_page(browser: Any) -> str:
    """The navigation link marked as the page shown (aria-current)."""
    from selenium.webdriver.common.by import By

    marked = browser.find_elements(By.CSS_SELECTOR, 'header nav a[aria-current="page"]')
    return " ".join(link.text for link in marked)


def test_screenshots_for_the_docs(browser: Any, console: Console) -> None:
    """docs/img/console-{overview,host,call}.png, from the seeded fleet: what docs/console.md
    and the README show."""
    from selenium.webdriver.common.by import By

    calls = seed_fleet(console, hours=24)  # a day of history for the graphs
    critical = next(c for c in calls if c["host"] == "db01")
    sign_in(browser, console.url, console.tokens["alice"])
    hosts = browser.find_element(By.ID, "hosts").text
    for host in ("web01", "web02", "db01", "backup01", "mon01"):
        assert host in hosts
    made = [shot(browser, "console-overview", DOCS_IMG)]

    browser.get(console.url + "/hosts/db01")
    assert browser.find_element(By.ID, "host-state").text == "CRITICAL"
    made.append(shot(browser, "console-host", DOCS_IMG))

    browser.get(f"{console.url}/calls/{critical['id']}")
    assert "db01" in browser.find_element(By.TAG_NAME, "h1").text
    made.append(shot(browser, "console-call", DOCS_IMG))
    for path in made:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert js_errors(browser) == []
