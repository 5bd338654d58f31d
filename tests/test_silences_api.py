"""Maintenance windows, explanations and flapping through the collector's API and the CLI."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from checks.schema import encode
from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import add_token
from tests.helpers import FS_RULE, FakeClock, Reporter, write_collector_yaml
from tests.helpers.tools import runwatch
from tests.procs import Processes, get_json, get_text, promtool_check, read_url, wait_for

FAST_FS = {**FS_RULE, "for": "0s"}
HOST_GROUPS = [
    {
        "name": "databases",
        "hosts": ["db*"],
        "thresholds": {"filesystem_full": {"warning": 0.92, "critical": 0.98, "clear": 0.9}},
    }
]


@pytest.fixture
def api(
    make_service: Callable[..., CollectorService],
) -> Iterator[tuple[TestClient[Any], CollectorService, dict[str, str]]]:
    service = make_service([FAST_FS], host_groups=HOST_GROUPS)
    tokens = {
        "web01": add_token(service.config.tokens_file, "web01"),
        "alice": add_token(service.config.operator_tokens_file, "alice"),
    }
    with TestClient(create_app(service)) as client:
        yield client, service, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_silences_through_the_api(api: Any, clock: FakeClock) -> None:
    client, _, tokens = api
    body = {"host": "web*", "rule": "filesystem_*", "duration": "2h", "reason": "disk swap"}
    assert client.post("/api/v1/silences", json=body).status_code == 401
    refused = client.post("/api/v1/silences", json=body, headers=bearer(tokens["web01"]))
    assert refused.status_code == 401, "an agent token is no operator token"
    bad = client.post(
        "/api/v1/silences", json={**body, "duration": "soon"}, headers=bearer(tokens["alice"])
    )
    assert bad.status_code == 422 and bad.json()["field"] == "duration"
    assert (
        client.post(
            "/api/v1/silences", json={**body, "reason": ""}, headers=bearer(tokens["alice"])
        ).status_code
        == 400
    )

    created = client.post("/api/v1/silences", json=body, headers=bearer(tokens["alice"]))
    assert created.status_code == 201
    silence = created.json()
    assert (silence["created_by"], silence["reason"]) == ("alice", "disk swap")
    assert silence["ends_at"] == clock() + 7200
    (listed,) = client.get("/api/v1/silences").json()
    assert listed["id"] == silence["id"] and listed["active"]

    web = Reporter("web01", clock)
    posted = client.post(
        "/api/v1/reports",
        content=encode(web.report({"fs_used_ratio": 0.97})),
        headers={**bearer(tokens["web01"]), "Content-Type": "application/json"},
    )
    assert posted.status_code == 202
    assert client.get("/api/v1/calls", params={"status": "open"}).json() == []
    (host,) = client.get("/api/v1/hosts").json()
    assert host["problems"][0]["silenced"] is True
    assert "runwatch_rules_silenced 1.0" in client.get("/metrics").text

    assert client.delete(f"/api/v1/silences/{silence['id']}").status_code == 401
    ended = client.delete(f"/api/v1/silences/{silence['id']}", headers=bearer(tokens["alice"]))
    assert ended.status_code == 200 and ended.json()["ended_by"] == "alice"
    (call,) = client.get("/api/v1/calls", params={"status": "open"}).json()
    assert call["severity"] == "CRITICAL", "the problem is still there: its call opens"
    again = client.delete(f"/api/v1/silences/{silence['id']}", headers=bearer(tokens["alice"]))
    assert again.status_code == 404
    assert client.get("/api/v1/silences").json() == []
    assert len(client.get("/api/v1/silences", params={"include_ended": True}).json()) == 1


def test_explain_through_the_api(api: Any) -> None:
    client, _, _ = api
    found = client.get("/api/v1/rules/filesystem_full/explain", params={"host": "db01"}).json()
    assert found["source"] == "host_groups -> 1 (databases)"
    assert found["effective_thresholds"]["warning"] == 0.92
    assert found["host_known"] is False
    missing = client.get("/api/v1/rules/nope/explain", params={"host": "db01"})
    assert missing.status_code == 404


def test_the_openapi_document_lists_the_new_endpoints(api: Any) -> None:
    client, _, _ = api
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/api/v1/silences",
        "/api/v1/silences/{silence_id}",
        "/api/v1/rules/{rule}/explain",
    } <= set(paths)


# -- the CLI against a real collector process ---------------------------------------------------


def test_silence_and_explain_commands_end_to_end(tmp_path: Path, processes: Processes) -> None:
    never = {"name": "never", "weekly": [{"days": ["sun"], "start": "03:00", "duration": "1m"}]}
    config = write_collector_yaml(
        tmp_path / "collector.yaml",
        tmp_path / "data",
        {"systems-administration": {"sink": "helpdesk", "assign": "SA"}},
        evaluation_interval="0.2s",
        rules=[FAST_FS],
        host_groups=HOST_GROUPS,
        flapping={"changes": 2, "window": "1h"},
        maintenance=[never],
    )
    agent_token = add_token(tmp_path / "data" / "agents.tokens", "db01")
    operator = tmp_path / "operator.token"
    operator.write_text(add_token(tmp_path / "data" / "operators.tokens", "ops-alice"))
    collector = processes.runwatch("collector", config, stderr=subprocess.PIPE)
    url = read_url(collector)
    base = ["--collector", url]

    refused = runwatch(
        "silence",
        "add",
        "--host",
        "db*",
        "--rule",
        "*",
        "--for",
        "1h",
        "--reason",
        "x",
        *base,
        env={"RUNWATCH_OPERATOR_TOKEN": "", "RUNWATCH_OPERATOR_TOKEN_FILE": ""},
    )
    assert refused.returncode == 1 and "operator token" in refused.stderr
    added = runwatch(
        "silence",
        "add",
        "--host",
        "db*",
        "--rule",
        "filesystem_*",
        "--for",
        "2h",
        "--reason",
        "replacing disks",
        "--token-file",
        str(operator),
        "--json",
        *base,
    )
    assert added.returncode == 0, added.stderr
    silence = json.loads(added.stdout)
    assert silence["created_by"] == "ops-alice"

    listed = runwatch("silence", "list", *base)
    assert listed.returncode == 0
    assert "replacing disks" in listed.stdout and "ops-alice" in listed.stdout
    assert "never" in listed.stdout, "weekly windows from the config are listed too"

    db = Reporter("db01", FakeClock(time.time()))

    def send(value: float) -> None:
        request = urllib.request.Request(
            f"{url}/api/v1/reports",
            data=encode(db.report({"fs_used_ratio": value})),
            headers={"Authorization": f"Bearer {agent_token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 202

    send(0.99)
    assert get_json(f"{url}/api/v1/calls") == []
    status = runwatch("status", *base)
    assert re.search(
        r"db01\s+filesystem_full\s+mountpoint=/\s+CRITICAL\s+99\.0%\s+.*\s+silenced$",
        status.stdout,
        re.MULTILINE,
    ), status.stdout
    removed = runwatch(
        "silence",
        "remove",
        str(silence["id"]),
        *base,
        env={"RUNWATCH_OPERATOR_TOKEN_FILE": str(operator)},
    )
    assert removed.returncode == 0, removed.stderr
    assert "ended by ops-alice" in removed.stdout
    (call,) = wait_for("the held-back call", lambda: get_json(f"{url}/api/v1/calls"))
    assert call["severity"] == "CRITICAL"
    gone = runwatch(
        "silence",
        "remove",
        str(silence["id"]),
        *base,
        env={"RUNWATCH_OPERATOR_TOKEN_FILE": str(operator)},
    )
    assert gone.returncode == 1 and "HTTP 404" in gone.stderr

    explained = runwatch("rules", "explain", "db01", "filesystem_full", *base)
    assert explained.returncode == 0, explained.stderr
    assert "decided by:        host_groups -> 1 (databases)" in explained.stdout
    assert "host group databases: APPLIES (the host name matches 'db*')" in explained.stdout
    assert "warning 92.0%, critical 98.0%, clear 90.0%" in explained.stdout
    as_json = json.loads(
        runwatch("rules", "explain", "web01", "filesystem_full", "--json", *base).stdout
    )
    assert as_json["source"] == "rule"
    unknown = runwatch("rules", "explain", "db01", "no_such_rule", *base)
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr

    for value in (0.5, 0.99, 0.5):  # three changes within the hour: flapping
        send(value)
    metrics = get_text(f"{url}/metrics")
    assert (
        'runwatch_rule_flapping{host="db01",rule="filesystem_full",series="mountpoint=/"} 1.0'
    ) in metrics
    assert "runwatch_rules_flapping 1.0" in metrics
    assert [c["status"] for c in get_json(f"{url}/api/v1/calls")] == ["open"]
    with contextlib.suppress(pytest.skip.Exception):  # promtool is optional here
        promtool_check(metrics)
