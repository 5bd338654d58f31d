"""The console's services page, and the services a call affects on its page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from litestar.testing import TestClient

from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import ROLE_READ_ONLY, add_token
from tests.helpers import FakeClock, Reporter
from tests.test_services import FAST_FS, HTTP_RULE, SERVICES


def test_services_page_and_a_calls_services(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service([FAST_FS, HTTP_RULE], services=SERVICES)
    token = add_token(service.config.operator_tokens_file, "rob", role=ROLE_READ_ONLY)
    reporters = {h: Reporter(h, clock) for h in ("db01", "web01", "web02")}
    for host, reporter in reporters.items():
        http = 0.9 if host == "web02" else 0.0
        service.ingest(host, reporter.report({"fs_used_ratio": 0.5, "http_errors_ratio": http}))
    pay = Reporter("pay01", clock)
    report = pay.report({"fs_used_ratio": 0.5})
    service.ingest("pay01", msgspec.structs.replace(report, labels={"role": "payroll"}))
    service.tick()
    (call,) = service.calls("open", None)

    with TestClient(create_app(service)) as client:
        away = client.get("/services", follow_redirects=False)
        client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        page = client.get("/services")
        call_page = client.get(f"/calls/{call.id}")

    assert away.status_code == 303 and away.headers["location"] == "/login?next=/services"
    assert page.status_code == 200
    text = page.text
    assert '<a href="/services">Services</a>' in text
    shop = _section(text, "web-shop")
    assert '<h2>Web shop <span class="badge service-degraded">degraded</span></h2>' in shop
    assert "Where customers order." in shop
    assert 'Depends on <a href="#service-database">database</a> (operational).' in shop
    assert "<td>web servers</td>" in shop
    assert "2 (1 down, 0 degraded)" in shop
    assert '<a href="/hosts/web02">web02</a>: http_failing CRITICAL' in shop
    assert "service-operational" in _section(text, "payroll")
    assert call_page.status_code == 200
    assert (
        '<p id="call-services">Affects <a href="/services#service-web-shop">web-shop</a>.</p>'
        in call_page.text
    )
    assert "Web shop: degraded" in call_page.text


def test_services_page_without_services(
    make_service: Callable[..., CollectorService],
) -> None:
    service = make_service([FAST_FS])
    token = add_token(service.config.operator_tokens_file, "rob", role=ROLE_READ_ONLY)
    with TestClient(create_app(service)) as client:
        client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        page = client.get("/services")
    assert page.status_code == 200
    assert 'id="no-services"' in page.text


def _section(text: str, name: str) -> Any:
    start = text.index(f'id="service-{name}"')
    return text[start : text.index("</section>", start)]


def test_operators_post_and_end_messages_from_the_services_page(
    make_service: Callable[..., CollectorService],
) -> None:
    from tests.test_console import csrf_of

    service = make_service([FAST_FS, HTTP_RULE], services=SERVICES)
    operators = service.config.operator_tokens_file
    alice = add_token(operators, "alice")
    rob = add_token(operators, "rob", role=ROLE_READ_ONLY)
    with TestClient(create_app(service)) as client:
        client.post("/login", data={"next": "/", "token": rob}, follow_redirects=False)
        read_only = client.get("/services").text
        client.post("/login", data={"next": "/", "token": alice}, follow_redirects=False)
        token = csrf_of(client.get("/services").text)
        forged = client.post("/services/messages", data={"csrf": "x", "text": "hi"})
        empty = client.post("/services/messages", data={"csrf": token, "text": " "})
        posted = client.post(
            "/services/messages",
            data={"csrf": token, "service": "payroll", "text": "Payslips are late."},
            follow_redirects=False,
        )
        listed = client.get("/services").text
        (message,) = service.status_messages.listed()
        ended = client.post(
            f"/services/messages/{message['id']}/end",
            data={"csrf": token},
            follow_redirects=False,
        )
        again = client.post(f"/services/messages/{message['id']}/end", data={"csrf": token})

    assert 'id="message-form"' not in read_only and 'id="no-messages"' in read_only
    assert forged.status_code == 403
    assert empty.status_code == 422 and "at most 1,000 characters" in empty.text
    assert posted.status_code == 303
    assert "<strong>payroll:</strong> Payslips are late." in listed
    assert message["posted_by"] == "alice"
    assert ended.status_code == 303 and service.status_messages.listed() == []
    assert again.status_code == 404
    assert [e.via for e in service.store.list_audit(5) if e.action.startswith("status.")] == [
        "console",
        "console",
    ]
