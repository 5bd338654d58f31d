"""The console's Report page with services and OLAs, in chromium: the hand-computed month of
tests/test_reports_services.py, as a signed-in operator sees it, with nothing axe-core finds."""

from __future__ import annotations

from typing import Any

import pytest

from collector.store.sqlite import SQLiteStore
from tests.helpers.browser import COLLECTOR, Console, assert_accessible, js_errors, sign_in, until
from tests.test_reports_services import (
    CALENDARS,
    GROUPS,
    OLA_ROWS,
    SERVICE_ROWS,
    SERVICES,
    _breach_rows,
    fixture_history,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def console_config() -> dict[str, Any]:
    return {
        **COLLECTOR,
        "groups": GROUPS,
        "services": SERVICES,
        "calendars": CALENDARS,
    }


def test_the_report_page_shows_services_olas_and_breaches(browser: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By

    # Written beside the running collector (SQLite in WAL mode takes a second writer); the
    # collector's first evaluation is now, so November 2025 counts as watched.
    store = SQLiteStore(console.data / "runwatch.db")
    try:
        fixture_history(store, record_watch=False)
    finally:
        store.close()
    sign_in(browser, console.url, console.tokens["alice"])
    browser.get(console.url + "/report?period=2025-11")
    until("the services table", lambda: browser.find_elements(By.CSS_SELECTOR, "table.services"))

    def rows(css: str) -> list[list[str]]:
        return [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, f"table.{css} tbody tr")
        ]

    assert rows("services") == [SERVICE_ROWS[name] for name in sorted(SERVICE_ROWS)]
    assert rows("olas") == [OLA_ROWS[name] for name in sorted(OLA_ROWS)]
    assert rows("breaches") == _breach_rows()
    assert js_errors(browser) == []
    assert assert_accessible(browser, "the report page with services") == []
