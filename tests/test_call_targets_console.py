"""A call's page shows when its OLA and SLA targets fall due, in business time, and whether
they are met, open, overdue or missed."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from litestar.testing import TestClient

from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import ROLE_OPERATOR, add_token
from collector.config import SERVICE_RULE
from tests.helpers import FakeClock, Reporter
from tests.helpers.config import GROUPS
from tests.test_services import FAST_FS, HTTP_RULE, SERVICES

OFFICE = {
    "timezone": "Europe/Amsterdam",
    "weekly": {day: ["08:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
}


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def row(text: str, row_id: str) -> list[str]:
    """The cells of one table row, tags stripped."""
    found = re.search(rf'<tr id="{row_id}">(.*?)</tr>', text, re.S)
    assert found is not None, f"no row {row_id}"
    return [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td>(.*?)</td>", found[1])]


def test_a_calls_page_shows_its_due_times_in_business_hours(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    groups: dict[str, Any] = {
        **GROUPS,
        "computer-operations": {
            **GROUPS["computer-operations"],
            "ola": {
                "calendar": "office",
                "respond": {"CRITICAL": "15m"},
                "resolve": {"CRITICAL": "1h"},
            },
        },
    }
    services = {
        **SERVICES,
        "web-shop": {
            **SERVICES["web-shop"],
            "sla": {"availability": 99.5, "respond": {"CRITICAL": "2h"}},
        },
    }
    service = make_service(
        [FAST_FS, HTTP_RULE], services=services, groups=groups, calendars={"office": OFFICE}
    )
    token = add_token(service.config.operator_tokens_file, "olga", role=ROLE_OPERATOR)
    clock.now = utc(2027, 1, 15, 15, 30)  # Friday 16:30 in Amsterdam
    for host in ("db01", "web01", "web02"):
        http = 0.9 if host == "web02" else 0.0
        service.ingest(
            host, Reporter(host, clock).report({"fs_used_ratio": 0.5, "http_errors_ratio": http})
        )
    service.tick()
    (call,) = [c for c in service.calls("open", None) if c.rule != SERVICE_RULE]
    assert call.opened_at == clock.now

    clock.now = utc(2027, 1, 16, 10)  # Saturday: 30 min of office time have passed
    with TestClient(create_app(service)) as client:
        client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        saturday = client.get(f"/calls/{call.id}").text
        clock.now = utc(2027, 1, 18, 8)  # Monday 09:00: 1h 30 min of office time
        service.acknowledge_call(call.id, "olga")
        client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        monday = client.get(f"/calls/{call.id}").text

    # The OLA's 15 minutes ran out Friday 16:45; its hour runs out Monday 08:30 (CET).
    assert row(saturday, "target-ola-computer-operations-respond") == [
        "OLA computer-operations",
        "office",
        "respond within 15 min",
        "2027-01-15 15:45:00 UTC",
        "30 min",
        "overdue",
    ]
    assert row(saturday, "target-ola-computer-operations-resolve") == [
        "OLA computer-operations",
        "office",
        "resolve within 1 h",
        "2027-01-18 07:30:00 UTC",
        "30 min",
        "open",
    ]
    # The web shop's SLA counts around the clock: 2 hours ran out Friday 17:30 UTC.
    assert row(saturday, "target-sla-web-shop-respond") == [
        "SLA web-shop",
        "always",
        "respond within 2 h",
        "2027-01-15 17:30:00 UTC",
        "18 h 30 min",
        "overdue",
    ]
    assert row(monday, "target-ola-computer-operations-respond")[-2:] == ["1 h 30 min", "missed"]
    assert row(monday, "target-ola-computer-operations-resolve")[-1] == "overdue"


def test_a_call_without_targets_shows_none(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service([FAST_FS, HTTP_RULE], services=SERVICES)
    token = add_token(service.config.operator_tokens_file, "olga", role=ROLE_OPERATOR)
    service.ingest(
        "web02", Reporter("web02", clock).report({"fs_used_ratio": 0.5, "http_errors_ratio": 0.9})
    )
    service.tick()
    (call,) = [c for c in service.calls("open", None) if c.rule != SERVICE_RULE]

    with TestClient(create_app(service)) as client:
        client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        page = client.get(f"/calls/{call.id}")

    assert page.status_code == 200
    assert "call-targets" not in page.text


def test_a_call_that_cleared_on_its_own_missed_no_response(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    groups: dict[str, Any] = {
        **GROUPS,
        "computer-operations": {
            **GROUPS["computer-operations"],
            "on_recovery": "resolve",
            "ola": {"respond": {"CRITICAL": "15m"}},
        },
    }
    service = make_service([FAST_FS, HTTP_RULE], services=SERVICES, groups=groups)
    token = add_token(service.config.operator_tokens_file, "olga", role=ROLE_OPERATOR)
    web02 = Reporter("web02", clock)
    service.ingest("web02", web02.report({"fs_used_ratio": 0.5, "http_errors_ratio": 0.9}))
    service.tick()
    (call,) = [c for c in service.calls("open", None) if c.rule != SERVICE_RULE]
    clock.advance(300)
    service.ingest("web02", web02.report({"fs_used_ratio": 0.5, "http_errors_ratio": 0.0}))
    service.tick()
    clock.advance(3600)

    with TestClient(create_app(service)) as client:
        client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        page = client.get(f"/calls/{call.id}").text

    assert service.store.get_call(call.id).resolved_at is not None  # type: ignore[union-attr]
    assert row(page, "target-ola-computer-operations-respond")[-2:] == ["5 min", "met"]
