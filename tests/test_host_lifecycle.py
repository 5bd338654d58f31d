"""A host's life: retired by an operator (its calls resolved with who and why, its series gone
from /metrics and the fleet, its history kept, its reports refused) and restored, on both
stores, through the service, the API and between replicas."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from checks.schema import encode
from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import ROLE_READ_ONLY, add_token
from collector.config import CHECK_STALE_RULE, STALE_RULE
from collector.errors import Rejection
from tests.helpers import (
    FS_RULE,
    FakeClock,
    Reporter,
    collector_config,
    write_collector_yaml,
)
from tests.helpers.tools import runwatch
from tests.procs import Processes, get_json, post_report, read_url

FAST_FS = {**FS_RULE, "for": "0s"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def breached(service: CollectorService, clock: FakeClock, host: str = "web01") -> Reporter:
    """A host that reported a full disk: one open call."""
    reporter = Reporter(host, clock)
    service.ingest(host, reporter.report({"fs_used_ratio": 0.97}))
    return reporter


def retired_after_a_breach(
    make_service: Callable[..., CollectorService], clock: FakeClock, *reason: str
) -> tuple[CollectorService, Reporter]:
    """A collector whose web01 reported a full disk and was then retired by alice."""
    service = make_service([FAST_FS])
    web = breached(service, clock)
    service.retire_host("web01", "alice", *reason)
    return service, web


def test_retiring_resolves_the_calls_with_who_and_why_and_drops_the_series(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service([FAST_FS])
    breached(service, clock, "web01")
    service.ingest("web02", Reporter("web02", clock).report({"fs_used_ratio": 0.5}))
    (call,) = service.calls("open", None)
    assert 'host="web01"' in service.metrics.render().decode()
    clock.advance(60)

    retirement = service.retire_host("web01", "alice", "decommissioned", via="cli")

    assert (retirement.host, retirement.retired_by, retirement.reason) == (
        "web01",
        "alice",
        "decommissioned",
    )
    assert retirement.retired_at == clock()
    resolved = service.store.get_call(call.id)
    assert resolved is not None and resolved.status == "resolved"
    assert resolved.resolved_at == clock()
    last = service.store.call_events(call.id)[-1]
    assert (last.kind, last.text) == (
        "resolved",
        "Resolved: host web01 was retired by alice: decommissioned",
    )
    assert [h["host"] for h in service.hosts()] == ["web02"]
    text = service.metrics.render().decode()
    assert 'host="web01"' not in text and 'host="web02"' in text
    (entry,) = [e for e in service.store.list_audit(10) if e.action == "host.retire"]
    assert (entry.actor, entry.target, entry.detail, entry.via) == (
        "alice",
        "host web01",
        "decommissioned",
        "cli",
    )
    # History up to the retirement stays for the reports.
    changes = service.store.state_changes(0, clock() + 1)
    assert any(c.host == "web01" and c.rule == "filesystem_full" for c in changes)
    (stored,) = service.store.retirements()
    assert stored.host == "web01" and stored.record is not None
    assert stored.record.first_seen == clock() - 60

    # Silent from now on: no host_stale, no check_stale, no call at all.
    for _ in range(10):
        clock.advance(600)
        service.tick()
    assert [c.id for c in service.calls(None, None) if c.host == "web01"] == [call.id]


def test_a_retired_host_stays_retired_after_a_restart(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    _, web = retired_after_a_breach(make_service, clock, "gone")
    again = make_service([FAST_FS])  # the same store, read afresh
    assert "web01" in again.fleet.retired and "web01" not in again.fleet.hosts
    with pytest.raises(Rejection) as refused:
        again.ingest("web01", web.report({"fs_used_ratio": 0.97}))
    assert refused.value.status == 409
    assert [h["state"] for h in again.retired_hosts()] == ["RETIRED"]


def test_a_retired_hosts_report_is_refused_until_it_is_restored(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service, web = retired_after_a_breach(make_service, clock, "moved to the new rack")
    clock.advance(60)
    with pytest.raises(Rejection) as refused:
        service.ingest("web01", web.report({"fs_used_ratio": 0.5}))
    assert refused.value.status == 409 and refused.value.reason == "retired"
    message = refused.value.message
    assert "host web01 was retired on" in message
    assert "by alice (moved to the new rack)" in message
    assert "`runwatch host restore web01` or a new deploy brings it back" in message
    assert service.calls("open", None) == []

    with pytest.raises(Rejection) as twice:
        service.retire_host("web01", "bob")
    assert twice.value.status == 409
    with pytest.raises(Rejection) as unknown:
        service.retire_host("nosuch", "bob")
    assert unknown.value.status == 404
    with pytest.raises(Rejection) as not_retired:
        service.restore_host("nosuch", "bob")
    assert not_retired.value.status == 409

    ended = service.restore_host("web01", "bob", "back in service")
    assert ended.retired_by == "alice"
    assert service.store.retirements() == [] and "web01" not in service.fleet.retired
    assert service.ingest("web01", web.report({"fs_used_ratio": 0.5})).status == "accepted"
    assert [h["host"] for h in service.hosts()] == ["web01"]
    actions = [(e.actor, e.action) for e in service.store.list_audit(10)]
    assert ("bob", "host.restore") in actions


def test_a_restored_host_that_stays_silent_goes_stale_after_its_limit(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service, _ = retired_after_a_breach(make_service, clock)
    clock.advance(3600)
    service.restore_host("web01", "alice")
    clock.advance(150)  # within 3 intervals of the restore
    service.tick()
    assert service.calls("open", None) == []
    clock.advance(60)
    service.tick()
    (stale,) = service.calls("open", None)
    assert (stale.host, stale.rule) == ("web01", STALE_RULE)


def test_retiring_a_host_resolves_its_help_desk_ticket_through_the_outbox(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service(
        [FAST_FS],
        sinks={"desk": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}},
        groups={"systems-administration": {"sink": "desk", "assign": "Systems"}},
    )
    breached(service, clock)
    (call,) = service.calls("open", None)
    service.retire_host("web01", "alice", "decommissioned")
    ops = [(op.call_id, op.op, op.payload.get("text")) for op in service.store.list_ops(None, 10)]
    assert (call.id, "resolve", "Resolved: host web01 was retired by alice: decommissioned") in ops


@pytest.fixture
def api(
    make_service: Callable[..., CollectorService],
) -> Iterator[tuple[TestClient[Any], CollectorService, dict[str, str]]]:
    service = make_service([FAST_FS])
    tokens = {
        "web01": add_token(service.config.tokens_file, "web01"),
        "alice": add_token(service.config.operator_tokens_file, "alice"),
        "viewer": add_token(service.config.operator_tokens_file, "viewer", role=ROLE_READ_ONLY),
    }
    with TestClient(create_app(service)) as client:
        yield client, service, tokens


def test_retire_and_restore_through_the_api(api: Any, clock: FakeClock) -> None:
    client, service, tokens = api
    web = Reporter("web01", clock)
    sent = client.post(
        "/api/v1/reports",
        content=encode(web.report({"fs_used_ratio": 0.97})),
        headers=bearer(tokens["web01"]),
    )
    assert sent.status_code == 202
    body = {"reason": "decommissioned"}
    assert client.post("/api/v1/hosts/web01/retire", json=body).status_code == 401
    as_agent = client.post("/api/v1/hosts/web01/retire", json=body, headers=bearer(tokens["web01"]))
    assert as_agent.status_code == 401
    read_only = client.post(
        "/api/v1/hosts/web01/retire", json=body, headers=bearer(tokens["viewer"])
    )
    assert read_only.status_code == 403
    unknown = client.post("/api/v1/hosts/nosuch/retire", json=body, headers=bearer(tokens["alice"]))
    assert unknown.status_code == 404

    retired = client.post("/api/v1/hosts/web01/retire", json=body, headers=bearer(tokens["alice"]))
    assert retired.status_code == 200
    assert retired.json() == {
        "status": "retired",
        "host": "web01",
        "retired_at": clock(),
        "retired_by": "alice",
        "reason": "decommissioned",
    }
    again = client.post("/api/v1/hosts/web01/retire", json=body, headers=bearer(tokens["alice"]))
    assert again.status_code == 409
    assert client.get("/api/v1/hosts").json() == []
    (listed,) = client.get("/api/v1/hosts", params={"all": "true"}).json()
    assert listed["state"] == "RETIRED"
    assert listed["retired"] == {"at": clock(), "by": "alice", "reason": "decommissioned"}
    assert listed["agent_version"] == "test" and listed["last_report_at"] == clock()

    refused = client.post(
        "/api/v1/reports",
        content=encode(web.report({"fs_used_ratio": 0.97})),
        headers=bearer(tokens["web01"]),
    )
    assert refused.status_code == 409
    assert refused.json()["error"] == "retired"
    rejected = service.registry.get_sample_value(
        "runwatch_reports_rejected_total", {"reason": "retired"}
    )
    assert rejected == 1
    assert "runwatch host restore web01" in refused.json()["message"]

    restored = client.post(
        "/api/v1/hosts/web01/restore", json={"reason": "back"}, headers=bearer(tokens["alice"])
    )
    assert restored.status_code == 200 and restored.json()["status"] == "restored"
    assert restored.json()["was"]["retired_by"] == "alice"
    not_retired = client.post(
        "/api/v1/hosts/web01/restore", json={}, headers=bearer(tokens["alice"])
    )
    assert not_retired.status_code == 409
    accepted = client.post(
        "/api/v1/reports",
        content=encode(web.report({"fs_used_ratio": 0.5})),
        headers=bearer(tokens["web01"]),
    )
    assert accepted.status_code == 202
    audit = client.get("/api/v1/audit", headers=bearer(tokens["alice"])).json()
    assert [(a["action"], a["actor"]) for a in audit[:2]] == [
        ("host.restore", "alice"),
        ("host.retire", "alice"),
    ]


def test_a_host_retired_at_one_replica_is_refused_at_the_other(
    tmp_path: Path, clock: FakeClock, pg_dsn: str
) -> None:
    def replica(name: str) -> CollectorService:
        store = {"backend": "postgresql", "dsn": pg_dsn}
        return CollectorService(
            collector_config(tmp_path / name, [FAST_FS], store=store), clock=clock
        )

    a, b = replica("a"), replica("b")
    try:
        web = breached(a, clock)
        clock.advance(60)
        b.ingest("web01", web.report({"fs_used_ratio": 0.97}))  # b knows web01 now
        a.retire_host("web01", "alice", "gone")
        clock.advance(60)
        with pytest.raises(Rejection) as refused:
            b.ingest("web01", web.report({"fs_used_ratio": 0.97}))
        assert refused.value.status == 409
        assert "web01" in b.fleet.retired and "web01" not in b.fleet.hosts
        assert b.store.hosts_to_tick(clock() + 86400, 3, STALE_RULE) == []
        b.restore_host("web01", "bob")
        clock.advance(60)
        assert a.ingest("web01", web.report({"fs_used_ratio": 0.5})).status == "accepted"
        assert a.calls("open", None) == []
    finally:
        a.close()
        b.close()


RETIRED_ANSWER = (
    '{"error": "retired", "message": "host web01 was retired on 2026-12-02 05:00:00 UTC by '
    'alice (gone); `runwatch host restore web01` or a new deploy brings it back", '
    '"field": "host"}'
)


@pytest.mark.parametrize(
    ("status", "detail", "retired"),
    [
        pytest.param(409, RETIRED_ANSWER, True, id="409 retired: dropped, logged once"),
        pytest.param(409, '{"error": "conflict"}', False, id="other 409: retried"),
        pytest.param(503, RETIRED_ANSWER, False, id="503: retried"),
        pytest.param(None, "connection refused", False, id="unreachable: queued"),
    ],
)
def test_the_agent_drops_reports_of_a_retired_host_and_says_so_once(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    status: int | None,
    detail: str,
    retired: bool,
) -> None:
    from agent.shipper import ReportShipper, RetryLater, SendResult
    from agent.spool import Spool

    spool = Spool(tmp_path, max_bytes=1 << 20, max_reports=100)
    for _ in range(3):
        spool.put(spool.next_seq(), b"{}")
    answers = [SendResult(status, detail)] * 3 + [SendResult(202, "ok")]
    shipper = ReportShipper(spool, lambda body: answers.pop(0))
    if not retired:
        with pytest.raises(RetryLater):
            shipper.drain_once()
        assert spool.stats().reports == 3, "kept for the next attempt"
        return
    with caplog.at_level("INFO", logger="agent.shipper"):
        assert shipper.drain_once() == 0
        assert spool.stats().reports == 0 and not (tmp_path / "rejected").exists()
        spool.put(spool.next_seq(), b"{}")
        assert shipper.drain_once() == 1  # restored: taken again
    refusals = [r for r in caplog.records if "refuses this host's reports" in r.message]
    assert len(refusals) == 1
    assert "`runwatch host restore web01`" in refusals[0].message
    assert any("takes this host's reports again" in r.message for r in caplog.records)


def test_a_host_that_falls_silent_opens_host_stale_and_no_check_stale(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    """An agent's last report carries no check runs (it stopped just after): its checks
    fall silent a moment before the host does, and still only host_stale speaks."""
    service = make_service([FAST_FS])
    web = Reporter("web01", clock)
    for _ in range(5):
        clock.advance(60)
        service.ingest("web01", web.compose([], [web.run("memory"), web.run("load")]))
    checks_seen = clock()
    clock.advance(55)
    service.ingest("web01", web.compose([], []))  # the last one, with no check runs
    # The first evaluation after it comes when the checks are past their limit (3 x 60 s)
    # and the host is not yet.
    clock.advance(checks_seen + 181 - clock())
    for _ in range(120):
        service.tick()
        clock.advance(10)
    assert [(c.host, c.rule) for c in service.calls(None, None)] == [("web01", STALE_RULE)]


def test_check_stale_says_the_host_still_reports_only_when_it_does(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service([FAST_FS])
    web = Reporter("web01", clock)
    service.ingest("web01", web.compose([], [web.run("memory"), web.run("backup")]))
    for _ in range(6):  # backup hangs; the host and its memory check go on
        clock.advance(60)
        service.ingest("web01", web.compose([], [web.run("memory")]))
        service.tick()
    (call,) = service.calls("open", None)
    assert call.rule == CHECK_STALE_RULE and call.labels == {"check": "backup"}
    assert "while the host still reports" in call.description


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_store_of_the_previous_schema_keeps_its_hosts_and_can_retire_them(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    from collector.store import postgresql as pg_store
    from collector.store import sqlite as sqlite_store
    from collector.store.records import HostRecord

    dsn = request.getfixturevalue("pg_dsn") if backend == "postgresql" else ""

    def open_store() -> Any:
        if backend == "sqlite":
            return sqlite_store.SQLiteStore(tmp_path / "runwatch.db")
        return pg_store.PostgresStore(dsn)

    record = HostRecord("web01", 100.0, 200.0, 60.0, "1.0", "boot", 7, {"role": "web"})
    with monkeypatch.context() as older:  # the collector before hosts could be retired
        older.setattr(
            sqlite_store, "MIGRATIONS", {k: v for k, v in sqlite_store.MIGRATIONS.items() if k <= 4}
        )
        older.setattr(sqlite_store, "SCHEMA_VERSION", 4)
        older.setattr(pg_store, "MIGRATIONS", pg_store.MIGRATIONS[:5])
        store = open_store()
        with store.transaction():
            store.save_hosts([record])
        store.close()
    store = open_store()
    try:
        assert list(store.load_hosts()) == [record]
        assert store.retirements() == []
        with store.transaction():
            retired = store.retire_host("web01", 300.0, "alice", "gone")
            assert store.retire_host("web01", 301.0, "bob", "again") is None
            assert store.retire_host("nosuch", 301.0, "bob", "") is None
        assert retired is not None and retired.record == record
        assert (retired.retired_at, retired.retired_by, retired.reason) == (300.0, "alice", "gone")
        assert list(store.load_hosts()) == []
        assert store.retirements() == [retired]
        with store.transaction():
            ended = store.restore_host("web01", 400.0)
            assert store.restore_host("web01", 401.0) is None
        assert ended == retired
        (back,) = store.load_hosts()
        assert back.last_report_at == 400.0 and back.first_seen == 100.0
    finally:
        store.close()


# -- the CLI against a real collector process ---------------------------------------------------


def test_host_list_retire_and_restore_commands(tmp_path: Path, processes: Processes) -> None:
    config = write_collector_yaml(
        tmp_path / "collector.yaml",
        tmp_path / "data",
        {"systems-administration": {"sink": "helpdesk", "assign": "SA"}},
        rules=[FAST_FS],
        staleness={"after_intervals": 3, "owner": "systems-administration"},
    )
    agents = {
        name: add_token(tmp_path / "data" / "agents.tokens", name) for name in ("web01", "web02")
    }
    operator = tmp_path / "operator.token"
    operator.write_text(add_token(tmp_path / "data" / "operators.tokens", "ops-alice"))
    url = read_url(processes.runwatch("collector", config, stderr=subprocess.PIPE))
    base = ["--collector", url]
    as_alice = {"RUNWATCH_OPERATOR_TOKEN_FILE": str(operator)}
    clock = FakeClock(time.time())
    reporters = {name: Reporter(name, clock) for name in agents}

    def send(name: str, value: float) -> int:
        report = msgspec.structs.replace(
            reporters[name].report({"fs_used_ratio": value}), labels={"role": "web"}
        )
        return post_report(url, agents[name], encode(report))

    assert send("web01", 0.99) == 202 and send("web02", 0.5) == 202
    listed = runwatch("host", "list", *base)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["HOST", "STATE", "LAST", "REPORT", "AGENT", "LABELS"]
    assert re.match(r"web01\s+CRITICAL\s+(just now|[\d.]+ s ago)\s+test\s+role=web$", lines[1])
    assert re.match(r"web02\s+OK\s+", lines[2])
    as_json = json.loads(runwatch("host", "list", "--json", *base).stdout)
    assert [(h["host"], h["state"], h["problems"]) for h in as_json] == [
        ("web01", "CRITICAL", 1),
        ("web02", "OK", 0),
    ]
    assert as_json[0]["labels"] == {"role": "web"} and as_json[0]["agent_version"] == "test"

    refused = runwatch(
        "host",
        "retire",
        "web01",
        *base,
        env={"RUNWATCH_OPERATOR_TOKEN": "", "RUNWATCH_OPERATOR_TOKEN_FILE": ""},
    )
    assert refused.returncode == 1 and "operator token" in refused.stderr
    unknown = runwatch("host", "retire", "nosuch", *base, env=as_alice)
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr
    retired = runwatch("host", "retire", "web01", "--reason", "decommissioned", *base, env=as_alice)
    assert retired.returncode == 0, retired.stderr
    assert retired.stdout.startswith("host web01 retired by ops-alice: on ")
    assert "(decommissioned); its open calls are resolved" in retired.stdout
    assert get_json(f"{url}/api/v1/calls?status=open") == []

    current = runwatch("host", "list", *base).stdout
    assert "web01" not in current and "web02" in current
    everything = runwatch("host", "list", "--all", *base).stdout
    assert re.search(
        r"web01\s+RETIRED .* retired (just now|[\d.]+ s ago) by ops-alice \(decommissioned\)",
        everything,
    )
    (gone,) = [
        h
        for h in json.loads(runwatch("host", "list", "--all", "--json", *base).stdout)
        if h["host"] == "web01"
    ]
    assert gone["retired"]["by"] == "ops-alice" and gone["state"] == "RETIRED"
    assert send("web01", 0.99) == 409

    restored = runwatch("host", "restore", "web01", *base, env=as_alice)
    assert restored.returncode == 0, restored.stderr
    assert "host web01 restored" in restored.stdout
    assert send("web01", 0.5) == 202
    again = runwatch("host", "restore", "web01", *base, env=as_alice)
    assert again.returncode == 1 and "HTTP 409" in again.stderr and "not retired" in again.stderr


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found[1]


def test_the_console_retires_and_restores_a_host_with_a_csrf_checked_form(
    api: Any, clock: FakeClock
) -> None:
    client, service, tokens = api
    breached(service, clock)
    viewer = client.post("/login", data={"next": "/", "token": tokens["viewer"]})
    assert viewer.status_code == 200
    assert 'id="retire"' not in client.get("/hosts/web01").text, "read-only: no button"
    token = csrf_of(client.get("/hosts/web01").text)
    as_viewer = client.post("/hosts/web01/retire", data={"csrf": token})
    assert as_viewer.status_code == 403 and "web01" not in service.fleet.retired

    client.cookies.clear()
    client.post("/login", data={"next": "/", "token": tokens["alice"]})
    page = client.get("/hosts/web01").text
    assert 'id="retire"' in page
    forged = client.post("/hosts/web01/retire", data={"csrf": "forged", "reason": "x"})
    assert forged.status_code == 403 and "web01" not in service.fleet.retired
    done = client.post(
        "/hosts/web01/retire",
        data={"csrf": csrf_of(page), "reason": "decommissioned"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/hosts/web01"
    retired_page = client.get("/hosts/web01").text
    assert "RETIRED" in retired_page and "by alice (decommissioned)" in retired_page
    assert 'id="restore"' in retired_page and 'id="retire"' not in retired_page
    assert "web01" not in client.get("/").text.split('id="hosts"')[1]
    again = client.post("/hosts/web01/retire", data={"csrf": csrf_of(page)})
    assert again.status_code == 409 and "already retired" in again.text
    back = client.post("/hosts/web01/restore", data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert back.status_code == 303 and "web01" not in service.fleet.retired
    assert [(a.actor, a.action, a.via) for a in service.store.list_audit(2)] == [
        ("alice", "host.restore", "console"),
        ("alice", "host.retire", "console"),
    ]


def test_retiring_the_hosts_held_back_in_a_storm_empties_and_resolves_the_umbrella(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service([FAST_FS], storm={"max_calls": 2, "window": "5m"})
    for name in ("db0", "db1", "db2", "db3"):
        breached(service, clock, name)
    (umbrella,) = [c for c in service.calls("open", None) if c.rule == "call_storm"]
    clock.advance(5)  # storm.update_every: the umbrella's texts catch up in one batch
    service.tick()
    batched = service.store.get_call(umbrella.id)
    assert batched is not None and batched.summary.startswith("[storm] 2 problem(s)")
    service.retire_host("db2", "alice", "gone")
    clock.advance(5)
    service.tick()
    umbrella_now = service.store.get_call(umbrella.id)
    assert umbrella_now is not None and umbrella_now.status == "open"
    assert umbrella_now.summary.startswith("[storm] 1 problem(s)")
    service.retire_host("db3", "alice", "gone")
    assert service.store.get_call(umbrella.id).status == "resolved"  # type: ignore[union-attr]
    assert {c.host for c in service.calls("open", None)} == {"db0", "db1"}
