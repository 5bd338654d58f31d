"""The status page for users: the public services only, nothing internal unless a service opts
in, no sign-in, one render per cache period for every visitor, and switched off on demand."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from litestar.testing import TestClient

from collector.api.application import create_app
from collector.app import CollectorService
from tests.helpers import FakeClock
from tests.test_services import FAST_FS, HTTP_RULE, SERVICES, Fleet

ATOM = "{http://www.w3.org/2005/Atom}"
INTERNAL = ("web01", "web02", "db01", "pay01", "http_failing", "filesystem_full", "90.0%")


def degraded_shop(
    make_service: Callable[..., CollectorService], clock: FakeClock, **extra: Any
) -> CollectorService:
    services = {**SERVICES, **extra.pop("services", {})}
    service = make_service([FAST_FS, HTTP_RULE], services=services, **extra)
    fleet = Fleet(service, clock)
    fleet.all_report()
    fleet.set("web01", http=0.9)
    service.tick()
    return service


def test_the_status_page_shows_public_services_and_nothing_internal(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = degraded_shop(make_service, clock, status_page={"title": "Example & Co status"})
    with TestClient(app=create_app(service)) as client:  # no sign-in
        html = client.get("/status")
        listed = client.get("/status.json")
        feed = client.get("/status.atom")

    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "<h1>Example &amp; Co status</h1>" in html.text
    assert 'id="status-web-shop"' in html.text and "Where customers order." in html.text
    assert '<span class="badge service-degraded">degraded</span>' in html.text
    assert "1 of 1 services are not fully operational." in html.text
    assert "database" not in html.text.lower() and "payroll" not in html.text.lower()
    assert html.headers["cache-control"] == "public, max-age=5"
    assert "default-src 'self'" in html.headers["content-security-policy"]

    data = listed.json()
    days = data["services"][0].pop("days")
    assert len(days) == 90
    assert days[-1] == {"date": "2027-01-15", "state": "degraded"}  # today: degraded at worst
    assert {d["state"] for d in days[:-1]} == {None}  # nothing was watched before
    assert data == {
        "title": "Example & Co status",
        "updated": clock(),
        "services": [
            {
                "service": "web-shop",
                "title": "Web shop",
                "description": "Where customers order.",
                "state": "degraded",
                "since": clock(),
            }
        ],
    }

    root = ET.fromstring(feed.content)
    assert feed.headers["content-type"].startswith("application/atom+xml")
    assert root.tag == f"{ATOM}feed"
    assert root.findtext(f"{ATOM}title") == "Example & Co status"
    (entry,) = root.findall(f"{ATOM}entry")
    assert entry.findtext(f"{ATOM}title") == "Web shop: degraded"
    assert entry.findtext(f"{ATOM}id") == "urn:runwatch:status:web-shop"
    for body in (html.text, listed.text, feed.text):
        for word in INTERNAL:
            assert word not in body, word


def test_a_service_may_opt_in_to_details(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    shop = {**SERVICES["web-shop"], "status_details": True}
    service = degraded_shop(make_service, clock, services={"web-shop": shop})
    with TestClient(app=create_app(service)) as client:
        data = client.get("/status.json").json()
        html = client.get("/status").text
    (shown,) = data["services"]
    assert "days" in shown
    assert shown["components"] == [
        {
            "name": "web servers",
            "state": "degraded",
            "problems": [{"host": "web01", "rule": "http_failing", "state": "CRITICAL"}],
        }
    ]
    assert "web servers: degraded; web01 http_failing CRITICAL" in html


def test_one_render_serves_every_visitor_for_the_cache_period(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service([FAST_FS, HTTP_RULE], services=SERVICES)
    fleet = Fleet(service, clock)
    fleet.all_report()
    fleet.set("web01", http=0.9)
    service.tick()
    with TestClient(app=create_app(service)) as client:
        first = [client.get("/status.json").content for _ in range(50)]
        for _ in range(50):
            client.get("/status")
        assert service.status_page.renders == 2  # json and html, once each
        fleet.set("web01", http=0.0)
        service.tick()
        assert client.get("/status.json").json()["services"][0]["state"] == "degraded"  # cached
        clock.advance(5)
        service.tick()
        fresh = client.get("/status.json").json()
    assert len(set(first)) == 1
    assert fresh["services"][0]["state"] == "operational"
    assert service.status_page.renders == 3


def test_the_status_page_can_be_switched_off(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = degraded_shop(make_service, clock, status_page={"enabled": False})
    with TestClient(app=create_app(service)) as client:
        answers = [client.get(path) for path in ("/status", "/status.json", "/status.atom")]
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert all("switched off" in a.text for a in answers)


def test_without_public_services_the_page_says_so(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service([FAST_FS])
    with TestClient(app=create_app(service)) as client:
        html = client.get("/status").text
        data = client.get("/status.json").json()
    assert "No services are listed here." in html
    assert data["services"] == []
    assert json.dumps(data)


def test_each_day_shows_its_worst_state() -> None:
    """Hand-worked: the day began operational, went degraded and back, then an outage from
    the evening of day 2 into day 3; day 4 in maintenance only; day 5 unchanged."""
    from collector.services.status import DAY, daily_worst

    first = 1_800_000_000.0 - 1_800_000_000.0 % DAY
    changes = [
        (first + 3600, 2),  # day 1: degraded at 01:00
        (first + 7200, 0),  # and back at 02:00
        (first + DAY + 20 * 3600, 3),  # day 2: outage at 20:00
        (first + 2 * DAY + 3600, 0),  # day 3: back at 01:00
        (first + 3 * DAY + 3600, 1),  # day 4: maintenance
        (first + 3 * DAY + 7200, 0),
    ]
    assert daily_worst(changes, 0, first, 5) == [2, 3, 3, 1, 0]
    assert daily_worst(changes, None, first - DAY, 2) == [None, 2]
    assert daily_worst([], None, first, 2) == [None, None]


def test_the_status_page_draws_the_days(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = degraded_shop(make_service, clock)
    with TestClient(app=create_app(service)) as client:
        html = client.get("/status").text
    assert html.count('class="day service-unknown"') == 89
    assert '<span class="day service-degraded" title="2027-01-15: degraded"></span>' in html
