"""Many calls at once: acknowledged, commented on, resolved or silenced from the console's
calls list, the API and the CLI, each call done and audited as its own action."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import ROLE_READ_ONLY, add_token, set_user
from collector.store.records import CallLink
from runwatch.cli import call as call_cli
from runwatch.cli import main
from runwatch.cli.common import CommandError
from tests.helpers import FS_RULE, FakeClock, Reporter

FAST_FS = {**FS_RULE, "for": "0s"}
HOSTS = ("web01", "web02", "web03", "db01", "db02")
DESKS = {
    "sinks": {
        "helpdesk": {"type": "builtin"},
        "desk": {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
    },
    "groups": {
        "systems-administration": {"sink": "helpdesk", "assign": "Systems Administration"},
        "computer-operations": {"sink": "desk", "assign": "Computer Operations"},
    },
}


@pytest.fixture
def api(
    make_service: Callable[..., CollectorService],
) -> Iterator[tuple[TestClient[Any], CollectorService, dict[str, str]]]:
    service = make_service([FAST_FS])
    operators = service.config.operator_tokens_file
    tokens = {
        "alice": add_token(operators, "alice"),
        "rob": add_token(operators, "rob", role=ROLE_READ_ONLY),
    }
    set_user(service.config.users_file, "carol", "carol-secret-1")
    set_user(service.config.users_file, "ray", "ray-secret-12", ROLE_READ_ONLY)
    with TestClient(create_app(service)) as client:
        yield client, service, tokens


def open_calls(service: CollectorService, clock: FakeClock, hosts: tuple[str, ...]) -> list[int]:
    """A full disk on each host, and each host's open call, in the order of `hosts`."""
    for host in hosts:
        service.ingest(host, Reporter(host, clock).report({"fs_used_ratio": 0.97}))
    by_host = {c.host: c.id for c in service.calls("open", None)}
    return [by_host[host] for host in hosts]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(client: TestClient[Any], **form: str) -> str:
    """Sign in; the CSRF token of the session."""
    answer = client.post("/login", data={"next": "/", **form}, follow_redirects=False)
    assert answer.status_code == 303
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/calls").text)
    assert found
    return found[1]


def audit_of(service: CollectorService) -> list[tuple[str, str, str, str]]:
    return [(a.actor, a.action, a.target, a.via) for a in reversed(service.store.list_audit(100))]


def acked(service: CollectorService, call_id: int) -> bool:
    return any(e.kind == "acknowledged" for e in service.store.call_events(call_id))


def test_the_calls_list_offers_selection_only_to_operators(api: Any, clock: FakeClock) -> None:
    client, service, _tokens = api
    ids = open_calls(service, clock, HOSTS[:3])
    sign_in(client, user="carol", password="carol-secret-1")
    page = client.get("/calls").text
    assert 'id="calls-bulk"' in page and 'id="select-page"' in page
    assert 'aria-label="Select every call on this page"' in page
    for call_id in ids:
        assert f'value="{call_id}" form="calls-bulk"' in page
        assert f'aria-label="Select call #{call_id}"' in page
    assert '<script src="/static/bulk.js"' in page
    assert client.get("/static/bulk.js").headers["content-type"].startswith("text/javascript")

    client.cookies.clear()
    sign_in(client, user="ray", password="ray-secret-12")
    read_only = client.get("/calls").text
    assert 'id="calls-bulk"' not in read_only and "select-call" not in read_only


def test_bulk_acknowledge_audits_each_call_and_says_what_was_refused(
    api: Any, clock: FakeClock
) -> None:
    client, service, _tokens = api
    ids = open_calls(service, clock, HOSTS[:4])
    service.acknowledge_call(ids[1], "bob")  # already acknowledged: refused, not fatal
    service.resolve_call(ids[3], "bob")  # resolved: refused
    csrf = sign_in(client, user="carol", password="carol-secret-1")
    answer = client.post(
        "/calls/bulk",
        data={"csrf": csrf, "action": "acknowledge", "call": [str(i) for i in ids] + ["999"]},
    )
    assert answer.status_code == 200
    page = answer.text
    assert "2 done, 3 refused." in page
    assert 'href="/calls" id="bulk-back"' in page
    assert f"call {ids[1]} is already acknowledged" in page
    assert f"call {ids[3]} is resolved" in page
    assert "no call 999" in page
    assert acked(service, ids[0]) and acked(service, ids[2])
    assert [e for e in audit_of(service) if e[0] == "carol"] == [
        ("carol", "call.acknowledge", f"call {ids[0]}", "console"),
        ("carol", "call.acknowledge", f"call {ids[2]}", "console"),
    ]
    history = [e.text for e in service.store.call_events(ids[0])]
    assert "Acknowledged by carol." in history


def test_bulk_comment_and_resolve_each_call_once(api: Any, clock: FakeClock) -> None:
    client, service, _tokens = api
    ids = open_calls(service, clock, HOSTS[:3])
    csrf = sign_in(client, user="carol", password="carol-secret-1")
    empty = client.post(
        "/calls/bulk", data={"csrf": csrf, "action": "comment", "text": " ", "call": ids}
    )
    assert empty.status_code == 422 and "the comment is empty" in empty.text
    assert "Nothing was changed" in empty.text
    commented = client.post(
        "/calls/bulk",
        # the same call twice, and "all on this page" on top of the boxes: each call once
        data={
            "csrf": csrf,
            "action": "comment",
            "text": "looking",
            "call": [ids[0], ids[0]],
            "all": "page",
            "page": " ".join(map(str, ids)) + " ",
        },
    )
    assert commented.status_code == 200 and "3 done, 0 refused." in commented.text
    for call_id in ids:
        comments = [e.text for e in service.store.call_events(call_id) if e.kind == "comment"]
        assert comments == ["carol: looking"]
    back = client.post(
        "/calls/bulk",
        data={"csrf": csrf, "action": "comment", "text": "again", "call": ids[:1]},
        headers={"Referer": "http://testserver.local/calls?state=all&group=systems-administration"},
    )
    assert 'href="/calls?state=all&amp;group=systems-administration"' in back.text
    elsewhere = client.post(
        "/calls/bulk",
        data={"csrf": csrf, "action": "comment", "text": "again", "call": ids[:1]},
        headers={"Referer": "https://evil.example/calls?x=1"},
    )
    assert 'href="/calls" id="bulk-back"' in elsewhere.text
    resolved = client.post(
        "/calls/bulk",
        data={"csrf": csrf, "action": "resolve", "text": "disks swapped", "call": ids[:2]},
    )
    assert resolved.status_code == 200 and "2 done, 0 refused." in resolved.text
    assert [service.store.get_call(i).status for i in ids] == ["resolved", "resolved", "open"]  # type: ignore[union-attr]
    assert [a for a in audit_of(service) if a[1] == "call.resolve"] == [
        ("carol", "call.resolve", f"call {ids[0]}", "console"),
        ("carol", "call.resolve", f"call {ids[1]}", "console"),
    ]
    nothing = client.post("/calls/bulk", data={"csrf": csrf, "action": "resolve"})
    assert nothing.status_code == 422 and "no calls selected" in nothing.text
    bad = client.post("/calls/bulk", data={"csrf": csrf, "action": "resolve", "call": "x1"})
    assert bad.status_code == 422 and "no call number" in bad.text
    unknown = client.post("/calls/bulk", data={"csrf": csrf, "action": "delete", "call": ids})
    assert unknown.status_code == 422 and service.store.get_call(ids[2]).status == "open"  # type: ignore[union-attr]


def test_bulk_resolve_refuses_calls_of_an_external_help_desk(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    rules = [FAST_FS, {**FAST_FS, "name": "fs_ops", "owner": "computer-operations"}]
    service = make_service(rules, **DESKS)
    set_user(service.config.users_file, "carol", "carol-secret-1")
    service.ingest("web01", Reporter("web01", clock).report({"fs_used_ratio": 0.97}))
    calls = {c.rule: c.id for c in service.calls("open", None)}
    with service.store.transaction():
        service.store.save_link(CallLink(calls["fs_ops"], "desk", "T-7"))
    with TestClient(create_app(service)) as client:
        csrf = sign_in(client, user="carol", password="carol-secret-1")
        answer = client.post(
            "/calls/bulk",
            data={"csrf": csrf, "action": "resolve", "call": sorted(calls.values())},
        )
    assert answer.status_code == 200 and "1 done, 1 refused." in answer.text
    assert "lives in the help desk desk: handle it there" in answer.text
    assert service.store.get_call(calls["fs_ops"]).status == "open"  # type: ignore[union-attr]
    assert service.store.get_call(calls["filesystem_full"]).status == "resolved"  # type: ignore[union-attr]


def test_bulk_forms_need_csrf_a_changing_role_and_this_site(api: Any, clock: FakeClock) -> None:
    client, service, _tokens = api
    ids = open_calls(service, clock, HOSTS[:2])
    form = {"action": "acknowledge", "call": ids}
    assert client.post("/calls/bulk", data={"csrf": "x", **form}).status_code == 401
    csrf = sign_in(client, user="carol", password="carol-secret-1")
    forged = client.post("/calls/bulk", data={"csrf": "forged", **form})
    assert forged.status_code == 403 and "CSRF" in forged.text
    cross = client.post(
        "/calls/bulk", data={"csrf": csrf, **form}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403 and "another site" in cross.text
    client.cookies.clear()
    csrf = sign_in(client, user="ray", password="ray-secret-12")
    refused = client.post("/calls/bulk", data={"csrf": csrf, **form})
    assert refused.status_code == 403 and "read-only" in refused.text
    assert service.store.list_audit(10) == [] and not any(acked(service, i) for i in ids)


def test_bulk_silence_sets_a_silence_per_call_and_asks_over_the_fleet_share(
    api: Any, clock: FakeClock
) -> None:
    client, service, _tokens = api
    ids = open_calls(service, clock, HOSTS)  # five hosts; 20 % is one host
    csrf = sign_in(client, user="carol", password="carol-secret-1")
    form = {"csrf": csrf, "action": "silence", "duration": "2h", "reason": "disk swap"}
    no_reason = client.post("/calls/bulk", data={**form, "reason": "", "call": ids[:1]})
    assert no_reason.status_code == 422 and "say why" in no_reason.text
    no_time = client.post("/calls/bulk", data={**form, "duration": "", "call": ids[:1]})
    assert no_time.status_code == 422
    wide = client.post("/calls/bulk", data={**form, "call": ids[:2]})
    assert wide.status_code == 409
    assert "2 of 5 hosts (40.0% of the fleet)" in wide.text
    assert 'id="bulk-confirm-share"' in wide.text
    for call_id in ids[:2]:  # the confirmation form keeps the selection
        assert f'name="call" value="{call_id}"' in wide.text
    assert service.store.list_silences(None) == []

    done = client.post("/calls/bulk", data={**form, "call": ids[:2], "confirm_fleet_share": "yes"})
    assert done.status_code == 200 and "2 done, 0 refused." in done.text
    silences = sorted(service.store.list_silences(None), key=lambda s: s.id)
    assert [(s.host_pattern, s.rule_pattern, s.ends_at - s.starts_at) for s in silences] == [
        ("web01", "filesystem_full", 7200),
        ("web02", "filesystem_full", 7200),
    ]
    assert silences[0].reason == f"call {ids[0]}: disk swap"
    assert [a for a in audit_of(service) if a[1] == "silence.add"] == [
        ("carol", "silence.add", f"silence {silences[0].id}", "console"),
        ("carol", "silence.add", f"silence {silences[1].id}", "console"),
    ]
    one = client.post("/calls/bulk", data={**form, "call": ids[2:3]})
    assert one.status_code == 200, "one host of five is not over 20 %"
    # The silences hold: the calendar followed at once.
    assert service.calendar.silenced("web03", "filesystem_full", clock())
    assert not service.calendar.silenced("db01", "filesystem_full", clock())


def test_bulk_actions_through_the_api(api: Any, clock: FakeClock) -> None:
    client, service, tokens = api
    ids = open_calls(service, clock, HOSTS[:3])
    body = {"action": "acknowledge", "ids": [*ids, 999]}
    assert client.post("/api/v1/calls/bulk", json=body).status_code == 401
    refused = client.post("/api/v1/calls/bulk", json=body, headers=bearer(tokens["rob"]))
    assert refused.status_code == 403
    answer = client.post("/api/v1/calls/bulk", json=body, headers=bearer(tokens["alice"]))
    assert answer.status_code == 200
    result = answer.json()
    assert (result["done"], result["refused"]) == (3, 1)
    assert [(c["id"], c["done"], c["status"]) for c in result["calls"]] == [
        (ids[0], True, 200),
        (ids[1], True, 200),
        (ids[2], True, 200),
        (999, False, 404),
    ]
    assert [a for a in audit_of(service) if a[0] == "alice"] == [
        ("alice", "call.acknowledge", f"call {i}", "api") for i in ids
    ]
    empty = client.post(
        "/api/v1/calls/bulk",
        json={"action": "comment", "ids": ids},
        headers=bearer(tokens["alice"]),
    )
    assert empty.status_code == 422 and empty.json()["field"] == "text"
    too_many = client.post(
        "/api/v1/calls/bulk",
        json={"action": "acknowledge", "ids": list(range(1, 502))},
        headers=bearer(tokens["alice"]),
    )
    assert too_many.status_code == 400
    silence = {"action": "silence", "ids": ids, "duration": "1h", "reason": "swap"}
    wide = client.post("/api/v1/calls/bulk", json=silence, headers=bearer(tokens["alice"]))
    assert wide.status_code == 409 and wide.json()["error"] == "confirm"
    assert "silences.confirm_over" in wide.json()["message"]
    confirmed = client.post(
        "/api/v1/calls/bulk",
        json={**silence, "confirm_fleet_share": True},
        headers=bearer(tokens["alice"]),
    )
    assert confirmed.status_code == 200 and confirmed.json()["done"] == 3
    assert all(c["silence_id"] for c in confirmed.json()["calls"])


def test_call_commands_take_several_calls(
    api: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`runwatch call ack 1 2 3` goes through POST /api/v1/calls/bulk (sent here to the app
    in process: tests/test_console_browser.py runs `runwatch call` against a real collector)."""
    client, service, tokens = api
    ids = open_calls(service, clock, HOSTS[:3])
    sent: list[str] = []

    def send(url: str, path: str, method: str, token: str, body: Any = None) -> Any:
        sent.append(path)
        answer = client.request(method, path, json=body, headers=bearer(token))
        if answer.status_code >= 400:
            raise CommandError(
                f"{url}{path}: HTTP {answer.status_code}: {answer.json()['message']}"
            )
        return answer.json()

    monkeypatch.setattr(call_cli, "collector_send", send)
    monkeypatch.setenv("RUNWATCH_OPERATOR_TOKEN", tokens["alice"])
    monkeypatch.delenv("RUNWATCH_OPERATOR_TOKEN_FILE", raising=False)
    service.acknowledge_call(ids[2], "bob")
    assert main(["call", "ack", *map(str, ids)]) == 1, "one refused: exit 1"
    out = capsys.readouterr().out
    assert f"call {ids[0]} acknowledged: " in out
    assert f"call {ids[2]} refused: call {ids[2]} is already acknowledged" in out
    assert "2 done, 1 refused" in out
    assert sent == ["/api/v1/calls/bulk"]
    assert main(["call", "comment", "--text", "on it", str(ids[0]), str(ids[1])]) == 0
    assert main(["call", "resolve", str(ids[0])]) == 0, "one call: its own endpoint"
    assert sent[-1] == f"/api/v1/calls/{ids[0]}/resolve"
    capsys.readouterr()
    assert (
        main(["call", "silence", "--for", "1h", "--reason", "swap", str(ids[1]), str(ids[2])]) == 1
    )
    assert "add --confirm-fleet-share" in capsys.readouterr().err
    assert (
        main(
            [
                "call",
                "silence",
                "--for",
                "1h",
                "--reason",
                "swap",
                "--confirm-fleet-share",
                "--json",
                str(ids[1]),
                str(ids[2]),
            ]
        )
        == 0
    )
    assert '"done": 2' in capsys.readouterr().out
    assert [a[1] for a in audit_of(service) if a[0] == "alice"] == [
        "call.acknowledge",
        "call.acknowledge",
        "call.comment",
        "call.comment",
        "call.resolve",
        "silence.add",
        "silence.add",
    ]
