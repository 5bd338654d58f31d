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
        "messages": [],
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


# -- operators' messages -------------------------------------------------------------------------


def test_operators_post_change_and_end_messages_audited_and_shown_at_once(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    from collector.auth import ROLE_READ_ONLY, add_token

    service = degraded_shop(make_service, clock)
    operators = service.config.operator_tokens_file
    alice = {"Authorization": f"Bearer {add_token(operators, 'alice')}"}
    rob = {"Authorization": f"Bearer {add_token(operators, 'rob', role=ROLE_READ_ONLY)}"}
    with TestClient(app=create_app(service)) as client:
        assert client.get("/status.json").json()["messages"] == []  # cached from here on
        posted = client.post(
            "/api/v1/status/messages",
            json={"service": "web-shop", "text": "We are on it; back by 14:00."},
            headers=alice,
        )
        general = client.post(
            "/api/v1/status/messages", json={"text": "Phones are busy."}, headers=alice
        )
        internal = client.post(
            "/api/v1/status/messages",
            json={"service": "database", "text": "db01 is being restored."},
            headers=alice,
        )
        unknown = client.post(
            "/api/v1/status/messages", json={"service": "mail", "text": "x"}, headers=alice
        )
        refused = client.post("/api/v1/status/messages", json={"text": "x"}, headers=rob)
        shown = client.get("/status.json").json()["messages"]  # at once: the cache was dropped
        clock.advance(60)
        message_id = posted.json()["id"]
        changed = client.put(
            f"/api/v1/status/messages/{message_id}",
            json={"text": "Fixed the cause; back by 13:30."},
            headers=alice,
        )
        html = client.get("/status").text
        feed = client.get("/status.atom").content
        ended = client.delete(f"/api/v1/status/messages/{message_id}", headers=alice)
        again = client.delete(f"/api/v1/status/messages/{message_id}", headers=alice)
        after = client.get("/status.json").json()["messages"]
        listed = client.get("/api/v1/status/messages", params={"all_messages": "true"}, headers=rob)

    assert posted.status_code == 201 and general.status_code == 201
    assert internal.status_code == 201  # about a service that is not public: not shown
    assert unknown.status_code == 422 and "unknown service 'mail'" in unknown.json()["message"]
    assert refused.status_code == 403
    assert [(m["service"], m["text"]) for m in shown] == [
        (None, "Phones are busy."),
        ("Web shop", "We are on it; back by 14:00."),
    ]
    assert "posted_by" not in shown[0] and "alice" not in json.dumps(shown)
    assert changed.status_code == 200
    assert changed.json()["text"] == "Fixed the cause; back by 13:30."
    assert changed.json()["updated_by"] == "alice"
    assert "<strong>Web shop:</strong> Fixed the cause; back by 13:30." in html
    assert "db01" not in html
    titles = [e.findtext(f"{ATOM}title") for e in ET.fromstring(feed).findall(f"{ATOM}entry")]
    assert "Web shop: Fixed the cause; back by 13:30." in titles
    assert ended.status_code == 200 and ended.json()["ended_by"] == "alice"
    assert again.status_code == 404
    assert [m["text"] for m in after] == ["Phones are busy."]
    assert {m["id"]: m["ended_at"] is not None for m in listed.json()} == {
        message_id: True,
        general.json()["id"]: False,
        internal.json()["id"]: False,
    }
    audit = [(e.action, e.target, e.actor) for e in service.store.list_audit(20)]
    for action in ("status.post", "status.update", "status.end"):
        assert (action, f"status message {message_id}", "alice") in audit
