"""An acknowledge link in a real headless chromium, as a person opens it from a message: the
page shows the call with no sign-in, the confirm button acknowledges it, the link then says
it was used, and every one of those pages passes axe-core."""

from __future__ import annotations

import time
from typing import Any

import pytest

from collector.notify.ack import KEY_FILE, AckLinkKeys, AckLinks
from tests.helpers.browser import (
    COLLECTOR,
    Console,
    assert_accessible,
    js_errors,
    report_problem,
    shot,
    until,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def console_config() -> dict[str, Any]:
    return {
        **COLLECTOR,
        "external_url": "http://127.0.0.1",
        "notifications": {
            # A channel nobody is told on (no rules): links need one, and its person.
            "channels": {"alice-chat": {"type": "apprise", "url": "json://127.0.0.1:9/none"}},
            "people": {"alice": {"channels": ["alice-chat"]}},
        },
    }


def test_a_person_opens_the_link_sees_the_call_and_confirms(console: Console, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    report_problem(console.url, console.tokens["web01"])
    (call,) = until("the call", console.open_calls, timeout=30)
    key = (console.data / KEY_FILE).read_text().strip().encode()
    links = AckLinks(AckLinkKeys([key]), console.url, 24 * 3600, {"alice-chat": "alice"})
    url = links.url(links.link(call["id"], "alice", time.time(), "browser"))

    browser.get(url)
    facts = browser.find_element(By.ID, "ack-call").text
    for fact in ("web01", "data_disk_full", "CRITICAL", "open", "systems-administration"):
        assert fact in facts, facts
    assert "sent to alice" in browser.find_element(By.ID, "ack-form").text
    assert_accessible(browser, "the acknowledge link's page")
    shot(browser, "ack-link")

    browser.find_element(By.ID, "ack-confirm").click()
    done = until("the confirmation", lambda: browser.find_element(By.ID, "ack-done"))
    assert "Acknowledged for alice" in done.text
    assert_accessible(browser, "the acknowledged page")
    assert not js_errors(browser)

    browser.get(url)  # the link again: used
    assert "already used" in browser.find_element(By.ID, "ack-refused").text
    assert_accessible(browser, "the used link's page")
    browser.get(url[:-3] + "AAA")  # changed
    assert "not valid" in browser.find_element(By.ID, "ack-refused").text
    assert_accessible(browser, "the changed link's page")
