"""Agent token enrolment through the API: operators only, and a revoked token gets 401."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from checks.schema import encode
from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import add_token, read_tokens, token_fingerprint
from tests.helpers import FakeClock, Reporter


@pytest.fixture
def api(
    make_service: Callable[..., CollectorService],
) -> Iterator[tuple[TestClient[Any], CollectorService, dict[str, str]]]:
    service = make_service()
    operator = add_token(service.config.operator_tokens_file, "admin-anna")
    with TestClient(create_app(service)) as client:
        yield client, service, {"Authorization": f"Bearer {operator}"}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({}, "missing bearer token (an operator token)", id="no token"),
        pytest.param(
            {"Authorization": "Bearer rwt_wrong"},
            "unknown or revoked operator token",
            id="unknown token",
        ),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/api/v1/tokens", id="list"),
        pytest.param("GET", "/api/v1/tokens/web01", id="get"),
        pytest.param("POST", "/api/v1/tokens", id="enrol"),
        pytest.param("DELETE", "/api/v1/tokens/web01", id="revoke"),
    ],
)
def test_token_endpoints_refuse_without_an_operator_token(
    api: Any, headers: dict[str, str], message: str, method: str, path: str
) -> None:
    client, service, _ = api
    body = {"json": {"host": "web01"}} if method == "POST" else {}
    response = client.request(method, path, headers=headers, **body)
    assert response.status_code == 401
    assert response.json()["message"] == message
    assert read_tokens(service.config.tokens_file) == []


def test_agent_token_is_no_operator_token(api: Any) -> None:
    client, service, _ = api
    agent = add_token(service.config.tokens_file, "web01")
    response = client.post(
        "/api/v1/tokens", json={"host": "web02"}, headers={"Authorization": f"Bearer {agent}"}
    )
    assert response.status_code == 401


def test_enrol_report_revoke(api: Any, clock: FakeClock) -> None:
    client, service, operator = api
    created = client.post("/api/v1/tokens", json={"host": "web01"}, headers=operator)
    assert created.status_code == 201
    token = created.json()["token"]
    assert created.json()["fingerprint"] == token_fingerprint(token)
    assert token not in service.config.tokens_file.read_text(encoding="utf-8")

    shown = client.get("/api/v1/tokens/web01", headers=operator).json()
    assert shown["fingerprint"] == token_fingerprint(token)
    assert [t["host"] for t in client.get("/api/v1/tokens", headers=operator).json()] == ["web01"]

    web = Reporter("web01", clock)
    report = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = encode(web.report({"fs_used_ratio": 0.5}))
    assert client.post("/api/v1/reports", content=body, headers=report).status_code == 202

    again = client.post("/api/v1/tokens", json={"host": "web01"}, headers=operator)
    assert again.status_code == 409, "an existing token is replaced only when asked"

    assert client.delete("/api/v1/tokens/web01", headers=operator).json()["revoked"] is True
    service.tokens._checked_at = float("-inf")  # skip the 1 s re-read throttle
    body = encode(web.report({"fs_used_ratio": 0.5}))
    assert client.post("/api/v1/reports", content=body, headers=report).status_code == 401
    assert client.delete("/api/v1/tokens/web01", headers=operator).status_code == 404
    assert client.get("/api/v1/tokens/web01", headers=operator).status_code == 404


def test_replace_gives_a_new_token_and_the_old_one_stops_working(api: Any) -> None:
    client, _, operator = api
    first = client.post("/api/v1/tokens", json={"host": "db1"}, headers=operator).json()
    second = client.post(
        "/api/v1/tokens", json={"host": "db1", "replace": True}, headers=operator
    ).json()
    assert first["token"] != second["token"]
    shown = client.get("/api/v1/tokens/db1", headers=operator).json()
    assert shown["fingerprint"] == second["fingerprint"] != first["fingerprint"]


def test_enrol_refuses_a_bad_host_name(api: Any) -> None:
    client, service, operator = api
    response = client.post("/api/v1/tokens", json={"host": "../etc"}, headers=operator)
    assert response.status_code == 422
    assert response.json()["field"] == "host"
    assert read_tokens(service.config.tokens_file) == []
