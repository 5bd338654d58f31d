"""The HTTP API: bad input is answered with a clear 4xx and changes nothing."""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from checks.schema import encode
from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import add_token
from tests.helpers import FS_RULE, FakeClock, Reporter
from tests.helpers.cases import cases


@pytest.fixture
def api(
    make_service: Callable[..., CollectorService],
) -> Iterator[tuple[TestClient[Any], CollectorService, str]]:
    service = make_service(
        [{**FS_RULE, "for": "0s"}], limits={"max_body_bytes": 64 * 1024, "max_measurements": 500}
    )
    token = add_token(service.config.tokens_file, "web01")
    with TestClient(create_app(service)) as client:
        yield client, service, token


def post(client: TestClient[Any], body: bytes, token: str | None, **headers: str) -> Any:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.setdefault("Content-Type", "application/json")
    return client.post("/api/v1/reports", content=body, headers=headers)


def nothing_changed(service: CollectorService) -> bool:
    return not service.fleet.hosts and not service.calls(None, None)


def rejected(service: CollectorService, reason: str) -> float:
    value = service.registry.get_sample_value("runwatch_reports_rejected_total", {"reason": reason})
    return value or 0.0


def test_valid_report_is_accepted_and_gzip_works(api: Any, clock: FakeClock) -> None:
    client, service, token = api
    web = Reporter("web01", clock)
    response = post(client, encode(web.report({"fs_used_ratio": 0.5})), token)
    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "seq": 1}
    zipped = gzip.compress(encode(web.report({"fs_used_ratio": 0.97})))
    assert post(client, zipped, token, **{"Content-Encoding": "gzip"}).status_code == 202
    assert service.fleet.hosts["web01"].record.last_seq == 2
    assert len(service.calls("open", None)) == 1


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    cases(
        {
            "no token": (None, 401, "missing bearer token"),
            "unknown token": ("rwt_not-a-real-token", 401, "unknown or revoked token"),
        }
    ),
)
def test_bad_token_gets_401(
    api: Any, clock: FakeClock, token: str | None, status: int, reason: str
) -> None:
    client, service, _ = api
    response = post(client, encode(Reporter("web01", clock).report({"x": 1})), token)
    assert response.status_code == status
    assert response.json()["message"] == reason
    assert response.headers["www-authenticate"] == "Bearer"
    assert nothing_changed(service)
    assert rejected(service, "unauthorized") == 1


def test_report_for_another_host_gets_403(api: Any, clock: FakeClock) -> None:
    client, service, token = api
    response = post(client, encode(Reporter("db01", clock).report({"fs_used_ratio": 0.99})), token)
    assert response.status_code == 403
    assert response.json()["field"] == "host"
    assert "web01" in response.json()["message"]
    assert nothing_changed(service)


def test_revoked_token_gets_401(api: Any, clock: FakeClock) -> None:
    from collector.auth import revoke_token

    client, service, token = api
    web = Reporter("web01", clock)
    assert post(client, encode(web.report({"x": 1})), token).status_code == 202
    revoke_token(service.config.tokens_file, "web01")
    service.tokens._checked_at = float("-inf")  # skip the 1 s re-read throttle
    assert post(client, encode(web.report({"x": 1})), token).status_code == 401


def _report(clock: FakeClock, **changes: Any) -> bytes:
    data = msgspec.to_builtins(Reporter("web01", clock).report({"fs_used_ratio": 0.5}))
    for path, value in changes.items():
        target = data
        *parents, leaf = path.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return json.dumps(data).encode()


_DELETE = object()


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    cases(
        {
            "value not a number": (
                {"measurements__0__value": "high"},
                "measurements -> 1 -> value",
                "Expected `float`",
            ),
            "negative seq": ({"seq": -1}, "seq", ">= 0"),
            "bad host name": ({"host": "bad host!"}, "host", "matching regex"),
            "unknown schema": ({"schema_version": 7}, "schema_version", "Invalid"),
            "bad metric name": (
                {"measurements__0__name": "fs used"},
                "measurements -> 1 -> name",
                "matching regex",
            ),
            "reserved label": (
                {"measurements__0__labels": {"host": "x"}},
                "measurements -> 1",
                "reserved",
            ),
            "counter-style name": (
                {"measurements__0__name": "errors_total"},
                "measurements -> 1",
                "_total",
            ),
            "labels too large": (
                {"measurements__0__labels": {f"l{i}": "x" * 1000 for i in range(3)}},
                "measurements -> 1",
                "the limit is 2048",
            ),
            "missing field": ({"boot_id": _DELETE}, "", "boot_id"),
            "unknown field": ({"extra": 1}, "", "unknown field `extra`"),
        }
    ),
)
def test_schema_violation_gets_422_naming_the_field(
    api: Any, clock: FakeClock, changes: dict[str, Any], field: str, words: str
) -> None:
    client, service, token = api
    response = post(client, _report(clock, **changes), token)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid"
    assert body.get("field", "") == field
    assert words in body["message"]
    assert nothing_changed(service)


@pytest.mark.parametrize(
    "body",
    cases(
        {
            "malformed JSON": b"{not json",
            "empty body": b"",
        }
    ),
)
def test_malformed_body_gets_400(api: Any, body: bytes) -> None:
    client, service, token = api
    response = post(client, body, token)
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["message"]
    assert nothing_changed(service)


def test_bad_gzip_gets_400(api: Any) -> None:
    client, service, token = api
    response = post(client, b"\x1f\x8b not gzip", token, **{"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert nothing_changed(service)


@pytest.mark.parametrize(
    "compressed",
    cases(
        {
            "plain body over the limit": False,
            "gzip bomb inflating past the limit": True,
        }
    ),
)
def test_oversized_body_gets_413(api: Any, clock: FakeClock, compressed: bool) -> None:
    client, service, token = api
    body = _report(clock, agent_version="x" * 60) + b" " * (100 * 1024)
    headers = {}
    if compressed:
        body = gzip.compress(body)
        assert len(body) < 64 * 1024
        headers["Content-Encoding"] = "gzip"
    response = post(client, body, token, **headers)
    assert response.status_code == 413
    assert "limit" in response.json()["message"]
    assert nothing_changed(service)
    assert rejected(service, "too_large") == 1


def test_too_many_measurements_gets_413(api: Any, clock: FakeClock) -> None:
    client, service, token = api
    from checks.schema import Measurement

    many = [
        Measurement(check="c", name="m", value=1.0, labels={"i": str(i)}, timestamp=clock())
        for i in range(501)
    ]
    response = post(client, encode(Reporter("web01", clock).report(measurements=many)), token)
    assert response.status_code == 413
    assert response.json()["field"] == "measurements"
    assert nothing_changed(service)


def test_read_side_and_openapi(api: Any, clock: FakeClock) -> None:
    client, _, token = api
    post(client, encode(Reporter("web01", clock).report({"fs_used_ratio": 0.97})), token)
    (host,) = client.get("/api/v1/hosts").json()
    assert host["host"] == "web01"
    assert host["state"] == "CRITICAL"
    assert host["measurements"][0]["name"] == "fs_used_ratio"
    (call,) = client.get("/api/v1/calls", params={"status": "open"}).json()
    detail = client.get(f"/api/v1/calls/{call['id']}").json()
    assert [e["kind"] for e in detail["events"]] == ["opened"]
    assert client.get("/api/v1/calls/999").status_code == 404
    assert client.get("/healthz").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in ("/api/v1/reports", "/api/v1/hosts", "/api/v1/calls", "/healthz", "/metrics"):
        assert path in spec["paths"]
    body = spec["paths"]["/api/v1/reports"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Report"}
    assert "Measurement" in spec["components"]["schemas"]


@pytest.mark.parametrize(
    "error",
    cases(
        {
            "disk full": sqlite3.OperationalError("database or disk is full"),
            "no space": OSError(28, "No space left on device"),
        }
    ),
)
def test_store_that_cannot_write_gets_503_and_the_agent_sends_again(
    api: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    client, service, token = api
    web = Reporter("web01", clock)
    real = service.ingestor.ingest_many

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(service.ingestor, "ingest_many", failing)
    body = encode(web.report({"fs_used_ratio": 0.99}))
    response = post(client, body, token)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "unavailable"
    assert service.registry.get_sample_value("runwatch_reports_failed_total") == 1
    monkeypatch.setattr(service.ingestor, "ingest_many", real)
    assert post(client, body, token).status_code == 202, "the same report, sent again"
    assert len(service.calls("open", None)) == 1


def test_an_unexpected_error_is_logged_with_its_traceback(
    api: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client, service, _ = api

    def broken(only: str | None = None) -> Any:
        raise RuntimeError("the fleet view is broken")

    monkeypatch.setattr(service, "hosts", broken)
    assert client.get("/api/v1/hosts").status_code == 500
    failed = [r for r in caplog.records if "GET /api/v1/hosts failed" in r.getMessage()]
    assert failed and failed[0].exc_info is not None
    caplog.clear()
    assert client.get("/api/v1/calls/99").status_code == 404
    assert not [r for r in caplog.records if "failed" in r.getMessage()], "a 404 is no error"


def test_a_store_at_its_size_cap_answers_503_and_nothing_is_lost(
    make_service: Callable[..., CollectorService], store_backend: dict[str, Any], clock: FakeClock
) -> None:
    if store_backend["backend"] != "sqlite":
        pytest.skip("store.max_bytes is SQLite's")
    service = make_service(
        [{**FS_RULE, "for": "0s"}], store={"backend": "sqlite", "max_bytes": 256 * 1024}
    )
    token = add_token(service.config.tokens_file, "web01")
    web = Reporter("web01", clock)
    statuses = []
    with TestClient(create_app(service)) as client:
        for number in range(400):
            labels = {"mountpoint": f"/srv/{number}", "pad": "x" * 500}
            body = encode(web.report({"fs_used_ratio": 0.5}, labels=labels))
            statuses.append(post(client, body, token).status_code)
            if statuses[-1] == 503:
                break
        assert statuses[-1] == 503, "the file grew to its cap"
        assert set(statuses[:-1]) == {202}
        accepted = len(statuses) - 1
        assert service.fleet.hosts["web01"].record.last_seq == accepted
        assert client.get("/api/v1/hosts").status_code == 200, "the read side still answers"
