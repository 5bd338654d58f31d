"""Every endpoint against the role matrix, walked from the collector's own OpenAPI document.

An endpoint that appears in `/openapi.json` without a rule here fails the test, so nobody adds
one without deciding who may call it. Each endpoint is called with no token, an agent token,
a read-only operator token and an operator token; "denied" means 401 or 403, anything else
(200, 404, 422, ...) means the door let the caller through. Each walk runs under four access
settings: the read API and /metrics explicitly open, explicitly behind a token, and the defaults
on loopback and beyond it. A request whose Host header names another site (DNS rebinding) is
refused with 421 unless it carries a valid token (liveness excepted).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from checks.schema import encode
from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import ROLE_READ_ONLY, add_token
from tests.helpers import FakeClock, Reporter

CALLERS = ("anonymous", "agent", "read-only", "operator")
EVERYONE = frozenset(CALLERS)
OPERATORS = frozenset({"read-only", "operator"})
CHANGERS = frozenset({"operator"})
AGENTS = frozenset({"agent"})

# The access settings each walk runs under, and the column of the matrix that applies.
PROFILES: dict[str, tuple[dict[str, Any], str]] = {
    "open": ({"operators": {"read_api": "open", "metrics": "open"}}, "open"),
    "token": ({"operators": {"read_api": "token", "metrics": "token"}}, "token"),
    "default on loopback": ({"listen": "127.0.0.1:9330"}, "open"),
    "default beyond loopback": ({"listen": "0.0.0.0:9330"}, "token"),
}

# (method, path template): who may call it, when the read API and /metrics are open and when
# they need a token.
READ = {"open": EVERYONE, "token": OPERATORS}
OPERATORS_ONLY = {"open": OPERATORS, "token": OPERATORS}
CHANGES = {"open": CHANGERS, "token": CHANGERS}
MATRIX: dict[tuple[str, str], dict[str, frozenset[str]]] = {
    ("POST", "/api/v1/reports"): {"open": AGENTS, "token": AGENTS},
    ("GET", "/api/v1/hosts"): READ,
    ("GET", "/api/v1/calls"): READ,
    ("GET", "/api/v1/calls/{call_id}"): READ,
    ("GET", "/api/v1/outbox"): READ,
    ("GET", "/api/v1/silences"): READ,
    ("GET", "/api/v1/silences/preview"): READ,
    ("GET", "/api/v1/rules/{rule}/explain"): READ,
    ("GET", "/api/v1/rules"): READ,
    # Outbox repairs are changes: operators only, wherever they come from.
    ("POST", "/api/v1/outbox/retry"): CHANGES,
    ("POST", "/api/v1/outbox/discard"): CHANGES,
    ("GET", "/api/v1/tokens"): OPERATORS_ONLY,
    ("GET", "/api/v1/tokens/{host}"): OPERATORS_ONLY,
    ("POST", "/api/v1/tokens"): CHANGES,
    ("DELETE", "/api/v1/tokens/{host}"): CHANGES,
    ("GET", "/api/v1/audit"): OPERATORS_ONLY,
    ("POST", "/api/v1/silences"): CHANGES,
    ("DELETE", "/api/v1/silences/{silence_id}"): CHANGES,
    ("POST", "/api/v1/calls/{call_id}/acknowledge"): CHANGES,
    ("POST", "/api/v1/calls/{call_id}/comment"): CHANGES,
    ("POST", "/api/v1/calls/{call_id}/resolve"): CHANGES,
    ("POST", "/api/v1/calls/bulk"): CHANGES,
    ("POST", "/api/v1/hosts/{name}/retire"): CHANGES,
    ("POST", "/api/v1/hosts/{name}/restore"): CHANGES,
    ("GET", "/healthz"): {"open": EVERYONE, "token": EVERYONE},
    ("GET", "/metrics"): READ,
    ("GET", "/api/v1/services"): READ,
    ("GET", "/api/v1/services/{name}"): READ,
    ("GET", "/status.json"): {"open": EVERYONE, "token": EVERYONE},  # the status page, for users
    ("GET", "/api/v1/status/messages"): READ,
    ("POST", "/api/v1/status/messages"): CHANGES,
    ("PUT", "/api/v1/status/messages/{message_id}"): CHANGES,
    ("DELETE", "/api/v1/status/messages/{message_id}"): CHANGES,
}

# Liveness answers whatever name a load balancer probes it by (nothing in it is worth a
# rebinding attack: no host count unless the read API is open anyway).
ANY_HOST = {("GET", "/healthz")}

PATH_VALUES = {
    "call_id": "1",
    "rule": "filesystem_full",
    "host": "web02",
    "silence_id": "1",
    "name": "web02",
    "message_id": "1",
}
QUERY_VALUES = {
    ("POST", "/api/v1/outbox/discard"): {"op_id": "1"},
    ("GET", "/api/v1/silences/preview"): {"host": "web*", "rule": "*"},
}


def request_body(method: str, path: str, clock: FakeClock) -> bytes | None:
    """A body each endpoint accepts, so that only the door can say no."""
    if (method, path) == ("POST", "/api/v1/reports"):
        return encode(Reporter("web01", clock).report({"fs_used_ratio": 0.5}))
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/api/v1/tokens"): {"host": "web02"},
        ("POST", "/api/v1/silences"): {
            "host": "web*",
            "rule": "*",
            "duration": "1h",
            "reason": "role matrix",
            "confirm_fleet_share": True,
        },
        ("POST", "/api/v1/calls/bulk"): {"action": "acknowledge", "ids": [1]},
        ("POST", "/api/v1/calls/{call_id}/comment"): {"text": "role matrix"},
        ("POST", "/api/v1/calls/{call_id}/resolve"): {"text": "role matrix"},
        ("POST", "/api/v1/hosts/{name}/retire"): {"reason": "role matrix"},
        ("POST", "/api/v1/hosts/{name}/restore"): {"reason": "role matrix"},
        ("POST", "/api/v1/status/messages"): {"text": "role matrix"},
        ("PUT", "/api/v1/status/messages/{message_id}"): {"text": "role matrix"},
    }
    body = bodies.get((method, path))
    return json.dumps(body).encode() if body is not None else None


@pytest.fixture(params=list(PROFILES))
def profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def read_api(profile: str) -> str:
    """The matrix column of the access profile under test."""
    return PROFILES[profile][1]


@pytest.fixture
def client(
    make_service: Callable[..., CollectorService], profile: str
) -> Iterator[tuple[TestClient[Any], dict[str, str | None]]]:
    # The walk sends every caller's token everywhere, so an address would soon be throttled
    # for its failures (tests/test_rate_limits.py covers that): the matrix is about roles.
    service = make_service(**PROFILES[profile][0], limits={"address_failures_per_second": 0})
    operators = service.config.operator_tokens_file
    tokens: dict[str, str | None] = {
        "anonymous": None,
        "agent": add_token(service.config.tokens_file, "web01"),
        "read-only": add_token(operators, "rob", role=ROLE_READ_ONLY),
        "operator": add_token(operators, "alice"),
    }
    with TestClient(create_app(service)) as test_client:
        yield test_client, tokens


def documented(test_client: TestClient[Any]) -> set[tuple[str, str]]:
    document = test_client.get("/openapi.json").json()
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


def test_every_documented_endpoint_has_a_rule(
    client: tuple[TestClient[Any], dict[str, str | None]],
) -> None:
    test_client, _ = client
    missing = sorted(documented(test_client) - set(MATRIX))
    assert not missing, f"endpoints without a rule in the role matrix: {missing}"
    gone = sorted(set(MATRIX) - documented(test_client))
    assert not gone, f"rules for endpoints that do not exist: {gone}"


def walk(
    test_client: TestClient[Any], tokens: dict[str, str | None], clock: FakeClock, **headers: str
) -> Iterator[tuple[str, str, str, Any]]:
    """Call every documented endpoint as each caller: (method, template, caller, answer)."""
    for method, template in sorted(documented(test_client)):
        path = template.format(**PATH_VALUES)
        for caller in CALLERS:
            token = tokens[caller]
            sent = {"Content-Type": "application/json", **headers}
            if token is not None:
                sent["Authorization"] = f"Bearer {token}"
            body = request_body(method, template, clock)
            answer = test_client.request(
                method,
                path,
                headers=sent,
                content=body,
                params=QUERY_VALUES.get((method, template)),
            )
            yield method, template, caller, answer


def test_every_endpoint_answers_each_role_as_the_matrix_says(
    client: tuple[TestClient[Any], dict[str, str | None]], read_api: str, clock: FakeClock
) -> None:
    test_client, tokens = client
    wrong = []
    for method, template, caller, answer in walk(test_client, tokens, clock):
        allowed = MATRIX[(method, template)][read_api]
        denied = answer.status_code in (401, 403)
        if denied == (caller in allowed):
            wrong.append(
                f"{method} {template} as {caller}: {answer.status_code} {answer.text[:120]}"
            )
    assert not wrong, "\n".join(wrong)


def test_a_request_naming_another_host_is_refused_unless_it_holds_a_token(
    client: tuple[TestClient[Any], dict[str, str | None]], read_api: str, clock: FakeClock
) -> None:
    """DNS rebinding: a page on evil.example whose name now points at the collector makes the
    browser send `Host: evil.example` with no token. A caller with a valid token (an agent
    reporting through a DNS alias) is judged by the matrix as usual."""
    test_client, tokens = client
    wrong = []
    for method, template, caller, answer in walk(
        test_client, tokens, clock, Host="evil.example:9330"
    ):
        if caller == "anonymous" and (method, template) not in ANY_HOST:
            if answer.status_code != 421 or "evil.example" not in answer.json()["message"]:
                wrong.append(
                    f"{method} {template} as {caller}: {answer.status_code} {answer.text[:120]}"
                )
            continue
        denied = answer.status_code in (401, 403, 421)
        if denied == (caller in MATRIX[(method, template)][read_api]):
            wrong.append(
                f"{method} {template} as {caller}: {answer.status_code} {answer.text[:120]}"
            )
    assert not wrong, "\n".join(wrong)


def test_a_denied_read_says_why_in_the_api_error_shape(
    make_service: Callable[..., CollectorService],
) -> None:
    service = make_service(operators={"read_api": "token"})
    with TestClient(create_app(service)) as test_client:
        answer = test_client.get("/api/v1/hosts")
    assert answer.status_code == 401
    assert answer.json() == {
        "error": "unauthorized",
        "message": "missing bearer token (an operator token)",
    }


def test_read_commands_send_the_operator_token_from_the_environment(
    make_service: Callable[..., CollectorService],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With `read_api: token`, `runwatch calls` says what it needs, and works with it."""
    import threading
    import time

    import uvicorn

    from collector.server import bind, url_of
    from runwatch.cli import main

    service = make_service(operators={"read_api": "token"})
    token_file = tmp_path / "rob.token"
    token_file.write_text(
        add_token(service.config.operator_tokens_file, "rob", role=ROLE_READ_ONLY) + "\n"
    )
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        monkeypatch.delenv("RUNWATCH_OPERATOR_TOKEN_FILE", raising=False)
        monkeypatch.delenv("RUNWATCH_OPERATOR_TOKEN", raising=False)
        assert main(["calls", "--collector", url_of(sock)]) != 0
        assert "needs an operator token" in capsys.readouterr().err
        monkeypatch.setenv("RUNWATCH_OPERATOR_TOKEN_FILE", str(token_file))
        assert main(["calls", "--collector", url_of(sock), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == []
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
