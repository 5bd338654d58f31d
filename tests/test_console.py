"""Roles, the audit log, calls handled by hand, and the console's sessions and forms."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import (
    ROLE_READ_ONLY,
    TokenFileError,
    add_token,
    read_tokens,
    remove_user,
    set_user,
    verify_password,
)
from runwatch.cli import main
from tests.helpers import FS_RULE, FakeClock, Reporter

FAST_FS = {**FS_RULE, "for": "0s"}


@pytest.fixture
def api(
    make_service: Callable[..., CollectorService],
) -> Iterator[tuple[TestClient[Any], CollectorService, dict[str, str]]]:
    service = make_service([FAST_FS])
    operators = service.config.operator_tokens_file
    tokens = {
        "web01": add_token(service.config.tokens_file, "web01"),
        "alice": add_token(operators, "alice"),
        "rob": add_token(operators, "rob", role=ROLE_READ_ONLY),
    }
    set_user(service.config.users_file, "carol", "carol-secret-1")
    set_user(service.config.users_file, "ray", "ray-secret-12", ROLE_READ_ONLY)
    with TestClient(create_app(service)) as client:
        yield client, service, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def open_call(service: CollectorService, clock: FakeClock) -> int:
    web = Reporter("web01", clock)
    service.ingest("web01", web.report({"fs_used_ratio": 0.97}))
    (call,) = service.calls("open", None)
    return call.id


def test_operator_token_file_keeps_old_lines_readable(tmp_path: Any) -> None:
    path = tmp_path / "operators.tokens"
    path.write_text("alice sha256:" + "a" * 64 + " 1700000000\nbob sha256:" + "b" * 64 + "\n")
    assert [(e.host, e.role) for e in read_tokens(path)] == [
        ("alice", "operator"),
        ("bob", "operator"),
    ]
    add_token(path, "rob", role=ROLE_READ_ONLY)
    assert [e.role for e in read_tokens(path)] == ["operator", "operator", "read-only"]
    # Operator lines keep their three fields, so an older collector still reads them.
    assert path.read_text().splitlines()[1].count(" ") == 2
    path.write_text("eve sha256:" + "e" * 64 + " 1 admin\n")
    with pytest.raises(TokenFileError, match="role 'admin'"):
        read_tokens(path)


def test_passwords_are_salted_pbkdf2(tmp_path: Any) -> None:
    set_user(tmp_path / "users", "carol", "carol-secret-1")
    line = (tmp_path / "users").read_text().splitlines()[1]
    name, role, stored = line.split()
    assert (name, role) == ("carol", "operator") and stored.startswith("pbkdf2_sha256$")
    assert "carol-secret-1" not in line
    assert verify_password("carol-secret-1", stored)
    assert not verify_password("carol-secret-2", stored)
    with pytest.raises(TokenFileError, match="at least 8"):
        set_user(tmp_path / "users", "dave", "short")


def test_read_only_token_reads_and_changes_nothing(api: Any, clock: FakeClock) -> None:
    client, service, tokens = api
    call_id = open_call(service, clock)
    body = {"host": "*", "rule": "*", "duration": "1h", "reason": "try"}
    refused = client.post("/api/v1/silences", json=body, headers=bearer(tokens["rob"]))
    assert refused.status_code == 403 and "read-only" in refused.json()["message"]
    for action, payload in (
        ("acknowledge", None),
        ("comment", {"text": "x"}),
        ("resolve", {"text": ""}),
    ):
        answer = client.post(
            f"/api/v1/calls/{call_id}/{action}", json=payload, headers=bearer(tokens["rob"])
        )
        assert answer.status_code == 403, action
    assert (
        client.post(
            "/api/v1/tokens", json={"host": "db01"}, headers=bearer(tokens["rob"])
        ).status_code
        == 403
    )
    assert client.get("/api/v1/tokens", headers=bearer(tokens["rob"])).status_code == 200
    assert client.get("/api/v1/audit", headers=bearer(tokens["rob"])).json() == []
    assert client.get("/api/v1/audit").status_code == 401
    assert client.get("/api/v1/audit", headers=bearer(tokens["web01"])).status_code == 401
    assert service.store.get_call(call_id).status == "open"  # type: ignore[union-attr]


def test_calls_handled_by_hand_are_audited(api: Any, clock: FakeClock) -> None:
    client, service, tokens = api
    call_id = open_call(service, clock)
    alice = bearer(tokens["alice"])

    def act(action: str, **body: Any) -> Any:
        """Alice takes `action` on the call; a body is sent with every action but acknowledge."""
        sent = None if action == "acknowledge" else body
        return client.post(f"/api/v1/calls/{call_id}/{action}", json=sent, headers=alice)

    clock.advance(120)
    assert act("acknowledge").status_code == 200
    again = act("acknowledge")
    assert again.status_code == 409 and "already acknowledged" in again.json()["message"]
    assert act("comment", text="  ").status_code == 422
    clock.advance(60)
    assert act("comment", text="swapping disk").status_code == 200
    clock.advance(60)
    resolved = act("resolve", text="fixed")
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    assert act("resolve").status_code == 409
    assert client.post("/api/v1/calls/999/acknowledge", headers=alice).status_code == 404
    events = client.get(f"/api/v1/calls/{call_id}").json()["events"]
    assert [(e["kind"], e["text"]) for e in events][1:] == [
        ("acknowledged", "Acknowledged by alice."),
        ("comment", "alice: swapping disk"),
        ("resolved", "Resolved by alice: fixed"),
    ]
    assert service.acknowledged_at(service.store.get_call(call_id)) == clock() - 120
    # The disk is still full: the next report opens a new call, not the resolved one.
    clock.advance(60)
    later = Reporter("web01", clock)
    later.seq = 10  # after open_call's report
    service.ingest("web01", later.report({"fs_used_ratio": 0.97}))
    (new,) = service.calls("open", None)
    assert new.id != call_id

    client.post(
        "/api/v1/silences",
        json={
            "host": "web*",
            "rule": "*",
            "duration": "1h",
            "reason": "swap",
            "confirm_fleet_share": True,  # web01 is the whole fleet
        },
        headers=alice,
    )
    client.post("/api/v1/tokens", json={"host": "db01"}, headers=alice)
    client.delete("/api/v1/tokens/db01", headers=alice)
    audit = client.get("/api/v1/audit", headers=alice).json()
    assert [(a["actor"], a["action"], a["target"], a["via"]) for a in reversed(audit)] == [
        ("alice", "call.acknowledge", f"call {call_id}", "api"),
        ("alice", "call.comment", f"call {call_id}", "api"),
        ("alice", "call.resolve", f"call {call_id}", "api"),
        ("alice", "silence.add", "silence 1", "api"),
        ("alice", "token.enrol", "host db01", "api"),
        ("alice", "token.revoke", "host db01", "api"),
    ]


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found[1]


def sign_in(client: TestClient[Any], **form: str) -> Any:
    return client.post("/login", data={"next": "/", **form}, follow_redirects=False)


def test_console_sign_in_sessions_and_csrf(api: Any, clock: FakeClock) -> None:
    client, service, tokens = api
    first = client.get("/", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=/"
    assert sign_in(client, token="rwt_wrong").status_code == 401
    assert sign_in(client, user="carol", password="nope-nope").status_code == 401
    answer = sign_in(client, token=tokens["alice"])
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert '"' not in cookie
    overview = client.get("/")
    assert overview.status_code == 200 and "alice (operator)" in overview.text
    assert "default-src 'self'" in overview.headers["content-security-policy"]

    call_id = open_call(service, clock)
    page = client.get(f"/calls/{call_id}").text
    token = csrf_of(page)
    forged = client.post(f"/calls/{call_id}/acknowledge", data={"csrf": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    done = client.post(
        f"/calls/{call_id}/acknowledge", data={"csrf": token}, follow_redirects=False
    )
    assert done.status_code == 303
    added = client.post(
        "/silences",
        data={
            "csrf": token,
            "host": "web*",
            "rule": "*",
            "duration": "30m",
            "reason": "disk swap",
            # web01 is the whole fleet: confirmed as the preview asks (tests/test_silence_safety.py)
            "confirm_fleet_share": "yes",
            "confirmed_host": "web*",
            "confirmed_rule": "*",
        },
        follow_redirects=False,
    )
    assert added.status_code == 303
    (silence,) = service.store.list_silences(clock())
    assert (silence.host_pattern, silence.ends_at - silence.starts_at) == ("web*", 1800)
    assert 'class="end-silence"' in client.get("/silences").text
    ended = client.post(f"/silences/{silence.id}/end", data={"csrf": token}, follow_redirects=False)
    assert ended.status_code == 303 and service.store.list_silences(clock()) == []
    assert client.post(f"/silences/{silence.id}/end", data={"csrf": token}).status_code == 404
    bad = client.post("/silences", data={"csrf": token, "duration": "soon", "reason": "x"})
    assert bad.status_code == 422 and 'id="silence-error"' in bad.text
    audit = service.store.list_audit(10)
    assert [(a.actor, a.action, a.via) for a in reversed(audit)] == [
        ("alice", "call.acknowledge", "console"),
        ("alice", "silence.add", "console"),
        ("alice", "silence.end", "console"),
    ]
    assert "disk swap" in client.get("/audit").text
    cross = client.post(
        "/silences",
        data={"csrf": token, "duration": "1h", "reason": "x"},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403 and "another site" in cross.text
    assert (
        client.post(
            "/login", data={"token": tokens["alice"]}, headers={"Origin": "https://evil.example"}
        ).status_code
        == 403
    )

    # A tampered cookie, or a revoked token, ends the session.
    value = client.cookies.get("runwatch_session")
    client.cookies.set("runwatch_session", value[:-2] + "00")
    assert client.get("/", follow_redirects=False).status_code == 303
    client.cookies.set("runwatch_session", value)
    assert client.get("/", follow_redirects=False).status_code == 200
    assert (
        main(
            [
                "token",
                "revoke",
                "alice",
                "--operator",
                "--tokens-file",
                str(service.config.operator_tokens_file),
            ]
        )
        == 0
    )
    clock.advance(2)
    service.operators._checked_at = float("-inf")  # the verifier re-reads at most once a second
    assert client.get("/", follow_redirects=False).status_code == 303


def test_console_read_only_user_changes_nothing(api: Any, clock: FakeClock) -> None:
    client, service, _tokens = api
    call_id = open_call(service, clock)
    assert sign_in(client, user="ray", password="ray-secret-12").status_code == 303
    page = client.get(f"/calls/{call_id}").text
    assert "Read-only" in page and 'id="acknowledge"' not in page
    token = csrf_of(page)  # the sign-out form carries it
    for path, form in (
        (f"/calls/{call_id}/acknowledge", {}),
        (f"/calls/{call_id}/resolve", {"text": "no"}),
        ("/silences", {"duration": "1h", "reason": "no"}),
    ):
        refused = client.post(path, data={"csrf": token, **form})
        assert refused.status_code == 403 and "read-only" in refused.text, path
    assert service.store.list_audit(10) == []
    assert 'id="silence-form"' not in client.get("/silences").text
    assert client.get("/report?period=2026-11").status_code == 200
    assert client.get("/report?period=2026-11&format=csv").text.startswith("period,")
    assert client.get("/audit").status_code == 200


def test_console_pages_render(api: Any, clock: FakeClock) -> None:
    client, service, _tokens = api
    call_id = open_call(service, clock)
    assert sign_in(client, user="carol", password="carol-secret-1").status_code == 303
    assert "web01" in client.get("/").text
    host = client.get("/hosts/web01").text
    assert "filesystem_full" in host and f"/calls/{call_id}" in host
    assert client.get("/hosts/nope").status_code == 404
    assert f"#{call_id}" in client.get("/calls?state=open&group=systems-administration").text
    assert "No calls match" in client.get("/calls?state=resolved").text
    assert client.get("/report?period=2026-13").status_code == 422
    future = client.get("/report?period=2099-01")
    assert future.status_code == 422 and "period 2099-01 has not begun" in future.text
    assert client.get("/static/console.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/../api.py").status_code == 404
    assert client.get("/login?next=//evil.example/").text.count('value="/"') == 2


def test_calls_in_an_external_help_desk_link_to_their_ticket(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    from collector.store.records import CallLink

    service = make_service(
        [FAST_FS],
        sinks={
            "helpdesk": {"type": "builtin"},
            "desk": {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
        },
        groups={
            "systems-administration": {"sink": "desk", "assign": "Systems Administration"},
            "computer-operations": {"sink": "helpdesk", "assign": "Computer Operations"},
        },
    )
    token = add_token(service.config.operator_tokens_file, "alice")
    call_id = open_call(service, clock)
    with service.store.transaction():
        service.store.save_link(
            CallLink(call_id, "desk", "T-42", url="https://desk.example/tickets/42")
        )
    with TestClient(create_app(service)) as client:
        refused = client.post(f"/api/v1/calls/{call_id}/acknowledge", headers=bearer(token))
        assert refused.status_code == 409 and "desk" in refused.json()["message"]
        assert sign_in(client, token=token).status_code == 303
        page = client.get(f"/calls/{call_id}").text
        assert 'href="https://desk.example/tickets/42"' in page
        assert 'id="acknowledge"' not in page and 'id="resolve"' not in page
        listing = client.get("/calls?sink=desk").text
        assert "desk T-42" in listing
        assert "No calls match" in client.get("/calls?sink=helpdesk").text


def test_sign_out_ends_the_session_on_the_server(api: Any) -> None:
    client, service, _tokens = api
    assert sign_in(client, user="carol", password="carol-secret-1").status_code == 303
    captured = client.cookies.get("runwatch_session")
    token = csrf_of(client.get("/").text)
    answer = client.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    # Someone who copied the cookie before the sign-out gets nowhere with it.
    client.cookies.set("runwatch_session", captured)
    again = client.get("/", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"].startswith("/login")
    form = client.post("/silences", data={"csrf": token, "duration": "1h", "reason": "x"})
    assert form.status_code == 401 and "session has ended" in form.text
    assert service.store.list_silences(None) == []


def test_sessions_outlive_a_restart_and_a_sign_out_ends_them_at_every_replica(
    make_service: Callable[..., CollectorService],
) -> None:
    """On SQLite the second service is the collector after a restart; on PostgreSQL it is
    also a replica sharing the database."""
    first = make_service([FAST_FS])
    set_user(first.config.users_file, "carol", "carol-secret-1")
    with TestClient(create_app(first)) as one:
        assert sign_in(one, user="carol", password="carol-secret-1").status_code == 303
        cookie = one.cookies.get("runwatch_session")
        csrf = csrf_of(one.get("/").text)
        second = make_service([FAST_FS])
        with TestClient(create_app(second), cookies={"runwatch_session": cookie}) as two:
            assert two.get("/", follow_redirects=False).status_code == 200, (
                "still signed in after a restart"
            )
            assert (
                one.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
            )
            assert two.get("/", follow_redirects=False).status_code == 303


def test_a_changed_password_or_a_removed_user_ends_their_sessions(api: Any) -> None:
    client, service, _tokens = api
    assert sign_in(client, user="carol", password="carol-secret-1").status_code == 303
    set_user(service.config.users_file, "carol", "carol-secret-2")
    assert client.get("/", follow_redirects=False).status_code == 303
    assert sign_in(client, user="carol", password="carol-secret-2").status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 200
    remove_user(service.config.users_file, "carol")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_the_store_keeps_live_sessions_and_forgets_old_ones(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    store = make_service([FAST_FS]).store
    now = clock()
    with store.transaction():
        store.add_session("a" * 64, "carol", now + 3600)
        store.add_session("b" * 64, "alice", now + 60)
    assert store.session_live("a" * 64, now) and store.session_live("b" * 64, now)
    assert not store.session_live("c" * 64, now), "an id never issued"
    assert not store.session_live("b" * 64, now + 60), "expired"
    with store.transaction():
        assert store.end_session("a" * 64)
        assert not store.end_session("a" * 64)
    assert not store.session_live("a" * 64, now)
    with store.transaction():
        assert store.prune_sessions(now + 61) == 1
        assert store.prune_sessions(now + 61) == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_store_of_the_previous_schema_gains_the_sessions_table(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    from collector.store import postgresql as pg_store
    from collector.store import sqlite as sqlite_store

    def open_store() -> Any:
        if backend == "sqlite":
            return sqlite_store.SQLiteStore(tmp_path / "runwatch.db")
        return pg_store.PostgresStore(dsn)

    dsn = request.getfixturevalue("pg_dsn") if backend == "postgresql" else ""
    with monkeypatch.context() as older:  # the collector before sessions were kept
        older.setattr(
            sqlite_store, "MIGRATIONS", {k: v for k, v in sqlite_store.MIGRATIONS.items() if k <= 3}
        )
        older.setattr(sqlite_store, "SCHEMA_VERSION", 3)
        older.setattr(pg_store, "MIGRATIONS", pg_store.MIGRATIONS[:4])
        open_store().close()
    store = open_store()
    try:
        with store.transaction():
            store.add_session("d" * 64, "carol", 2e9)
        assert store.session_live("d" * 64, 1e9)
        if backend == "postgresql":
            assert store.schema_version == len(pg_store.MIGRATIONS) >= 5
    finally:
        store.close()
    if backend == "sqlite":
        check = sqlite3.connect(tmp_path / "runwatch.db")
        assert check.execute("PRAGMA user_version").fetchone()[0] == sqlite_store.SCHEMA_VERSION
        check.close()
