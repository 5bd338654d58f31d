"""No help-desk credential reaches a log line, a SinkError or the outbox's last_error.

Every HTTP sink talks to a desk behind a proxy that echoes the request (its line and every
header) in its error page. Whatever the desk echoes, the credentials the sink sent must come out
redacted in every form a reader could use: the value itself, percent- and JSON-escaped, base64
(Basic `user:password`), the password alone, URL user info and query-string secrets.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from checks.settings import convert
from collector.app import CollectorService
from collector.incidents.outbox import OutboxWorker, RetryPolicy
from collector.sinks.contract import SinkError, TicketRef
from collector.sinks.jira import JiraSink, JiraSinkConfig
from collector.sinks.redmine import RedmineSink, RedmineSinkConfig
from collector.sinks.rt import RTSink, RTSinkConfig
from collector.sinks.servicenow import ServiceNowSink, ServiceNowSinkConfig
from collector.sinks.webhook import WebhookSink, WebhookSinkConfig
from collector.sinks.zammad import ZammadSink, ZammadSinkConfig
from collector.store.opening import open_store
from tests.fakes.echo import EchoDesk
from tests.helpers import FS_RULE, FakeClock, Reporter

SECRET_ENV = "RUNWATCH_TEST_REDACT_SECRET"
# Characters that percent-encoding and JSON change, so that every escaped form is tried.
SECRET = 'tok-9Qz"x/p+w=Lk7%Ve3@Ra8&s\\NdX1'
QUERY_SECRET = "qsig-7Hc2Kx9Wm4Pz"
URL_PASSWORD = "urlpw-3Fv8Nq6Tb1"
USER = "ops-api@example.com"


def forms(secret: str, *, user: str | None = None) -> list[str]:
    """Every form of a secret a desk could echo back, and the ends of each long one."""
    values = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode(),
    }
    if user is not None:
        pair = f"{user}:{secret}"
        values |= {pair, base64.b64encode(pair.encode()).decode()}
    ends = {part for value in values if len(value) >= 16 for part in (value[:10], value[-10:])}
    # The user's half of a Basic pair is no secret: look for the part that encodes the password.
    if user is not None:
        pair = base64.b64encode(f"{user}:{secret}".encode()).decode()
        ends -= {pair[:10], f"{user}:{secret}"[:10]}
        first = (len(f"{user}:".encode()) // 3 + 1) * 4  # the first quartet of password only
        ends.add(pair[first : first + 10])
    return sorted(values | ends)


@dataclass
class Case:
    header: str  # the header that carries the credential
    build: Callable[[str], Any]  # desk URL -> sink
    secrets: list[str]  # every form that must not appear


def _webhook(url: str) -> WebhookSink:
    return WebhookSink(
        convert(
            {
                "type": "webhook",
                "url": f"{url}/hook?sig={QUERY_SECRET}&v=1",
                "secret_header": "X-Hook-Token",
                "secret": {"env": SECRET_ENV},
                "headers": {"Authorization": f"Bearer {SECRET}"},
            },
            WebhookSinkConfig,
        )
    )


CASES = [
    pytest.param(
        Case("X-Hook-Token", _webhook, forms(SECRET) + forms(QUERY_SECRET)),
        id="webhook: secret header, bearer header, query secret",
    ),
    pytest.param(
        Case(
            "X-Redmine-API-Key",
            lambda url: RedmineSink(
                convert(
                    {
                        "type": "redmine",
                        "url": url,
                        "api_key": {"env": SECRET_ENV},
                        "project": "ops",
                    },
                    RedmineSinkConfig,
                )
            ),
            forms(SECRET),
        ),
        id="redmine: api key header",
    ),
    pytest.param(
        Case(
            "Authorization",
            lambda url: RTSink(
                convert(
                    {"type": "rt", "url": url, "token": {"env": SECRET_ENV}, "queue": "General"},
                    RTSinkConfig,
                )
            ),
            forms(SECRET),
        ),
        id="rt: token",
    ),
    pytest.param(
        Case(
            "Authorization",
            lambda url: JiraSink(
                convert(
                    {
                        "type": "jira",
                        "url": url,
                        "email": USER,
                        "api_token": {"env": SECRET_ENV},
                        "project": "OPS",
                    },
                    JiraSinkConfig,
                )
            ),
            forms(SECRET, user=USER),
        ),
        id="jira: basic email:token",
    ),
    pytest.param(
        Case(
            "Authorization",
            lambda url: ServiceNowSink(
                convert(
                    {
                        "type": "servicenow",
                        "url": url,
                        "user": USER,
                        "password": {"env": SECRET_ENV},
                    },
                    ServiceNowSinkConfig,
                )
            ),
            forms(SECRET, user=USER),
        ),
        id="servicenow: basic user:password",
    ),
    pytest.param(
        Case(
            "Authorization",
            lambda url: ZammadSink(
                convert(
                    {
                        "type": "zammad",
                        "url": url,
                        "token": {"env": SECRET_ENV},
                        "group": "Users",
                        "customer": "ops@example.com",
                    },
                    ZammadSinkConfig,
                )
            ),
            forms(SECRET),
        ),
        id="zammad: token",
    ),
    pytest.param(
        Case(
            "Authorization",
            lambda url: ServiceNowSink(
                convert(
                    {
                        "type": "servicenow",
                        "url": url.replace("://", f"://{USER}:{URL_PASSWORD}@"),
                        "user": USER,
                        "password": {"env": SECRET_ENV},
                    },
                    ServiceNowSinkConfig,
                )
            ),
            forms(SECRET, user=USER)
            + forms(URL_PASSWORD, user=USER)
            + forms(URL_PASSWORD, user=quote(USER, safe="")),
        ),
        id="servicenow: user info in the URL",
    ),
]


@pytest.fixture
def store_backend() -> dict[str, Any]:
    return {"backend": "sqlite"}  # redaction does not depend on the store


@pytest.fixture(params=[None, "header"], ids=["echo", "echo cut mid-credential"])
def echo(request: pytest.FixtureRequest) -> Iterator[EchoDesk]:
    with EchoDesk(status=502, straddle=request.param) as desk:
        yield desk


def assert_clean(text: str, secrets: list[str], where: str) -> None:
    leaked = [form for form in secrets if form in text]
    assert not leaked, f"{where} holds credential forms {leaked}: {text[:600]}"


@pytest.mark.parametrize("case", CASES)
def test_an_echoed_credential_is_redacted_everywhere(  # noqa: PLR0917 - pytest fixtures
    case: Case,
    echo: EchoDesk,
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    if echo.straddle is not None:
        echo.straddle = case.header
    caplog.set_level(logging.DEBUG)
    sink = case.build(echo.url)

    with pytest.raises(SinkError) as raised:
        sink.find("5f0c1d2e3a4b")  # the webhook cannot search: its comment asks the desk
        sink.comment(TicketRef("7"), "hello")
    assert echo.requests >= 1
    assert raised.value.status == 502
    assert "[redac" in str(raised.value), "the echo must have held a credential"
    assert_clean(str(raised.value), case.secrets, "the SinkError")

    service = make_service([{**FS_RULE, "for": "0s"}])
    service.incidents._external = {"helpdesk": lambda severity: "P1"}
    store = open_store(service.config)
    try:
        worker = OutboxWorker(
            store,
            {"helpdesk": sink},
            clock=clock,
            policy=RetryPolicy(base_seconds=10, max_seconds=100),
        )
        service.ingest("web01", Reporter("web01", clock).report({"fs_used_ratio": 0.97}))
        worker.deliver_due()
    finally:
        store.close()
        sink.close()
    (op,) = service.store.list_ops(None, 10)
    assert op.last_error and "502" in op.last_error
    assert_clean(op.last_error, case.secrets, "last_error")
    assert "502" in caplog.text
    assert_clean(caplog.text, case.secrets, "the log")


def test_the_forms_list_catches_a_leak() -> None:
    """The check itself: a message quoting the Basic header of a pair is caught."""
    pair = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    with pytest.raises(AssertionError):
        assert_clean(f"... authorization: Basic {pair[:-3]}", forms(SECRET, user=USER), "x")
