"""Fuzz the collector's API: no input gets a 5xx, and a refused report changes nothing stored.

The default run tries a bounded number of examples; the long run sets RUNWATCH_FUZZ_EXAMPLES
(e.g. 2000) and prints the figures: `pytest -m '' -s tests/test_fuzz_api.py`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from litestar.testing import TestClient

from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import add_token
from tests.apifuzz import (
    FuzzFigures,
    adversarial_reports,
    fuzz_openapi,
    serve_in_thread,
    store_snapshot,
)
from tests.helpers import FS_RULE, FakeClock

LONG = int(os.environ.get("RUNWATCH_FUZZ_EXAMPLES", "0"))

# Fuzzing must not be slowed or skewed by the rate limits, which have tests of their own.
NO_LIMITS = {
    "agent_requests_per_second": 0,
    "operator_requests_per_second": 0,
    "address_failures_per_second": 0,
    "max_body_bytes": 256 * 1024,
    "max_measurements": 1000,
}


def fuzz_service(make_service: Callable[..., CollectorService]) -> CollectorService:
    return make_service([{**FS_RULE, "for": "0s"}], limits=NO_LIMITS, evaluation_interval="1h")


def test_adversarial_reports_get_4xx_with_a_message_and_change_nothing(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = fuzz_service(make_service)
    token = add_token(service.config.tokens_file, "web01")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    figures = FuzzFigures()
    seqs = itertools.count(1).__next__
    with TestClient(create_app(service)) as client:

        @given(body=adversarial_reports("web01", seqs, clock()))
        @settings(
            max_examples=LONG or 60,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def post(body: bytes) -> None:
            before = store_snapshot(service)
            response = client.post("/api/v1/reports", content=body, headers=headers)
            figures.count(response.status_code, response.text[:300])
            assert response.status_code < 500, response.text
            if response.status_code == 202:
                return
            if response.status_code >= 400:
                answer = response.json()
                assert answer["error"] and answer["message"], answer
            else:
                assert response.json()["status"] == "duplicate"
            assert store_snapshot(service) == before, "a refused report changed the store"

        post()
    print(f"\nadversarial reports ({service.config.store.backend}): {figures.summary()}")
    assert not figures.server_errors


@pytest.mark.parametrize(
    "examples",
    [
        pytest.param(8, id="bounded"),
        pytest.param(LONG or 40, id="more", marks=pytest.mark.slow),
    ],
)
def test_every_operation_in_openapi_answers_without_5xx(
    make_service: Callable[..., CollectorService], store_backend: dict[str, Any], examples: int
) -> None:
    if store_backend["backend"] == "postgresql" and examples == 8:
        pytest.skip("the bounded run uses SQLite; the slow run covers PostgreSQL")
    service = fuzz_service(make_service)
    tokens = {
        "agent": add_token(service.config.tokens_file, "web01"),
        "operator": add_token(service.config.operator_tokens_file, "admin-anna"),
    }
    figures = FuzzFigures()
    with serve_in_thread(service) as url:
        fuzz_openapi(url, tokens, examples, figures)
    print(f"\nschemathesis ({service.config.store.backend}): {figures.summary()}")
    assert figures.tried > 0
    assert not figures.server_errors, "\n".join(figures.server_errors[:10])


def _hostile(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(report: dict[str, Any]) -> None:
        target = report
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            _hostile(("measurements", 0, "labels"), {"mountpoint": "a\x00b"}),
            id="NUL in a label value",
        ),
        pytest.param(_hostile(("measurements", 0, "check"), "fs\x00"), id="NUL in a check name"),
        pytest.param(_hostile(("agent_version",), "\x00"), id="NUL in the agent version"),
        pytest.param(_hostile(("boot_id",), "\ud800"), id="lone surrogate in the boot id"),
        pytest.param(_hostile(("checks", 0, "output"), "out\x00put"), id="NUL in check output"),
        pytest.param(
            _hostile(("checks", 0, "error"), {"kind": "error", "message": "\x00"}),
            id="NUL in a check error",
        ),
        pytest.param(_hostile(("labels",), {"role": "\x00"}), id="NUL in a host label"),
        # Larger than a database index entry may be: refused at the door, not a 503 for ever.
        pytest.param(
            _hostile(("measurements", 0, "labels"), {f"l{i}": "x" * 1000 for i in range(15)}),
            id="15 kB of labels",
        ),
        pytest.param(
            _hostile(("measurements", 0, "labels"), {"mountpoint": "\u00e9" * 1024}),
            id="2 kB of labels in 1,024 characters",
        ),
        pytest.param(_hostile(("measurements", 0, "timestamp"), 1e300), id="timestamp 1e300"),
        pytest.param(_hostile(("sent_at",), 1e300), id="sent_at 1e300"),
        pytest.param(_hostile(("checks", 0, "started_at"), 1e300), id="check started 1e300"),
        pytest.param(_hostile(("interval_seconds",), 1e300), id="interval 1e300"),
        pytest.param(_hostile(("checks", 0, "duration_seconds"), 1e300), id="duration 1e300"),
        pytest.param(_hostile(("measurements", 0, "value"), 1e308), id="value 1e308"),
        pytest.param(_hostile(("measurements", 0, "value"), -1e308), id="value -1e308"),
        pytest.param(_hostile(("measurements", 0, "value"), 5e-324), id="denormal value"),
        pytest.param(_hostile(("seq",), 2**63 - 1), id="largest seq"),
        pytest.param(_hostile(("seq",), 2**63), id="seq past 64 bits"),
    ],
)
def test_named_hostile_reports_get_an_answer_not_a_crash(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    change: Callable[[dict[str, Any]], None],
) -> None:
    import json

    from tests.apifuzz import valid_report

    service = fuzz_service(make_service)
    token = add_token(service.config.tokens_file, "web01")
    with TestClient(create_app(service)) as client:
        # A host known first, so the hostile one meets stored state.
        first = json.dumps(valid_report("web01", 1, clock())).encode()
        assert (
            client.post(
                "/api/v1/reports", content=first, headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 202
        )
        report = valid_report("web01", 2, clock())
        report["measurements"][0]["value"] = 0.99  # a breach: a call opens if accepted
        change(report)
        before = store_snapshot(service)
        body = json.dumps(report).encode("utf-8", "surrogatepass")
        response = client.post(
            "/api/v1/reports", content=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code in (202, 400, 413, 422), response.text
        if response.status_code != 202:
            assert response.json()["message"]
            assert store_snapshot(service) == before
        # Whatever came in, the read side still answers.
        assert client.get("/api/v1/hosts").status_code == 200
        assert client.get("/api/v1/calls").status_code == 200
        assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "/api/v1/hosts?host=a%00b", None, id="hosts"),
        pytest.param("GET", "/api/v1/calls?group=a%00b", None, id="calls by group"),
        pytest.param("GET", "/api/v1/rules/filesystem_full/explain?host=a%00b", None, id="explain"),
        pytest.param("GET", "/api/v1/tokens/a%00b", None, id="token"),
        pytest.param("DELETE", "/api/v1/tokens/a%00b", None, id="revoke"),
        pytest.param("POST", "/api/v1/tokens", {"host": "a\x00b"}, id="enrol"),
        pytest.param(
            "POST", "/api/v1/silences", {"reason": "a\x00b", "duration": "1h"}, id="silence reason"
        ),
        pytest.param(
            "POST",
            "/api/v1/silences",
            {"reason": "r", "host": "a\x00", "duration": "1h"},
            id="silence host",
        ),
    ],
)
def test_nul_in_any_request_gets_an_answer_not_a_crash(
    make_service: Callable[..., CollectorService],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    service = fuzz_service(make_service)
    operator = add_token(service.config.operator_tokens_file, "admin-anna")
    with TestClient(create_app(service)) as client:
        response = client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {operator}"}
        )
        assert response.status_code < 500, response.text
