"""Chat and paging channels through apprise, to receivers on loopback: json:// and form:// to a
local HTTP server, and ntfy's publish API to a local stand-in (tests/fakes/ntfy.py)."""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from collector.app import CollectorService
from collector.incidents.outbox import RetryPolicy
from collector.notify.delivery import Notifications, build_channels
from tests.fakes.ntfy import HookReceiver, NtfyServer
from tests.helpers import FS_RULE, FakeClock, Reporter
from tests.helpers.sinks import outbox_worker

pytest.importorskip("apprise", reason="needs apprise (pip install apprise)")

TOKEN = "tk_0123456789abcdefghijklmnopqr"  # an ntfy access token's shape


@pytest.fixture
def hook() -> Iterator[HookReceiver]:
    with HookReceiver() as receiver:
        yield receiver


@pytest.fixture
def ntfy() -> Iterator[NtfyServer]:
    with NtfyServer(token=TOKEN) as server:
        yield server


def port_of(url: str) -> int:
    return int(url.rpartition(":")[2])


def make(
    make_service: Callable[..., CollectorService], channels: dict[str, Any], **rule: Any
) -> CollectorService:
    return make_service(
        [{**FS_RULE, "for": "0s"}],
        notifications={
            "channels": channels,
            "rules": [{"channels": sorted(channels), **rule}],
        },
    )


def deliver(service: CollectorService, clock: FakeClock) -> int:
    notifications = Notifications(build_channels(service.config.notifications))
    policy = RetryPolicy(base_seconds=10, max_seconds=60)
    with outbox_worker(
        service, {}, clock=clock, policy=policy, notifications=notifications
    ) as worker:
        return worker.deliver_due()


def feed(service: CollectorService, reporter: Reporter, value: float) -> None:
    service.ingest(reporter.host, reporter.report({"fs_used_ratio": value}))


def poll(ntfy: NtfyServer, topic: str) -> list[dict[str, Any]]:
    """Read a topic as the ntfy app does (`GET /<topic>/json?poll=1`)."""
    request = urllib.request.Request(
        f"{ntfy.url}/{topic}/json?poll=1", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return [json.loads(line) for line in answer.read().decode().splitlines()]


def test_json_form_and_ntfy_hear_of_the_open_and_the_resolve(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    hook: HookReceiver,
    ntfy: NtfyServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "RUNWATCH_TEST_NTFY_URL", f"ntfy://{TOKEN}@127.0.0.1:{port_of(ntfy.url)}/ops"
    )
    port = port_of(hook.url)
    service = make(
        make_service,
        {
            "hook-json": {"type": "apprise", "url": f"json://127.0.0.1:{port}/hooks/runwatch"},
            "hook-form": {"type": "apprise", "url": f"form://127.0.0.1:{port}/forms/runwatch"},
            "phones": {"type": "apprise", "url": {"env": "RUNWATCH_TEST_NTFY_URL"}},
        },
    )
    web = Reporter("web01", clock)
    feed(service, web, 0.97)
    clock.advance(300)
    feed(service, web, 0.50)
    assert deliver(service, clock) == 6
    (call,) = service.calls(None, None)
    subject = f"[runwatch #{call.id}] web01 filesystem_full {{mountpoint=/}}"

    as_json = [json.loads(body) for path, _, body in hook.received if path == "/hooks/runwatch"]
    assert [(m["title"], m["type"]) for m in as_json] == [
        (f"{subject}: CRITICAL", "failure"),
        (f"Re: {subject}: RESOLVED (was CRITICAL)", "success"),
    ]
    assert "97.0%" in as_json[0]["message"] and ">= 95.0%" in as_json[0]["message"]
    assert "after 5 min" in as_json[1]["message"]

    as_form = [
        parse_qs(body.decode()) for path, _, body in hook.received if path == "/forms/runwatch"
    ]
    assert [m["title"][0] for m in as_form] == [
        f"{subject}: CRITICAL",
        f"Re: {subject}: RESOLVED (was CRITICAL)",
    ]

    messages = poll(ntfy, "ops")
    assert [m["title"] for m in messages] == [
        f"{subject}: CRITICAL",
        f"Re: {subject}: RESOLVED (was CRITICAL)",
    ]
    assert "Host:        web01" in messages[0]["message"]
    assert all(op.status == "done" for op in service.store.list_ops(None, 10))


def test_a_refused_token_is_retried_never_shown_and_a_rotated_file_is_used(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    ntfy: NtfyServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "tk_wrongwrongwrongwrongwrongwr"
    secret = tmp_path / "ntfy.url"
    url = f"ntfy://{{}}@127.0.0.1:{port_of(ntfy.url)}/ops"
    secret.write_text(url.format(wrong) + "\n")
    service = make(make_service, {"phones": {"type": "apprise", "url": {"file": str(secret)}}})
    feed(service, Reporter("web01", clock), 0.97)
    assert deliver(service, clock) == 0
    (waiting,) = service.store.list_ops("pending", 10)
    assert waiting.sink == "notify:phones" and waiting.attempts == 1
    assert "unauthorized" in (waiting.last_error or ""), waiting.last_error
    assert wrong not in (waiting.last_error or "") and wrong not in caplog.text
    assert ntfy.refused == 1 and ntfy.messages == []

    secret.write_text(url.format(TOKEN) + "\n")  # the secret is rotated; no restart
    clock.advance(120)
    assert deliver(service, clock) == 1
    assert [m["topic"] for m in ntfy.messages] == ["ops"]
    assert TOKEN not in caplog.text


def test_a_receiver_down_is_retried_in_order(
    make_service: Callable[..., CollectorService], clock: FakeClock, hook: HookReceiver
) -> None:
    port = port_of(hook.url)
    service = make(make_service, {"hook": {"type": "apprise", "url": f"json://127.0.0.1:{port}/h"}})
    web = Reporter("web01", clock)
    feed(service, web, 0.97)
    hook.fail_next = 1
    assert deliver(service, clock) == 0
    feed(service, web, 0.50)
    assert deliver(service, clock) == 0, "the resolve waits behind the open"
    clock.advance(120)
    assert deliver(service, clock) == 2
    titles = [json.loads(body)["title"] for _, _, body in hook.received]
    assert [t.rpartition(": ")[2] for t in titles] == ["CRITICAL", "RESOLVED (was CRITICAL)"]


def test_a_token_in_the_query_never_reaches_a_log_line(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    hook: HookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "q-token-5d1c9e7a2b4f6081"
    port = port_of(hook.url)
    # apprise's json:// sends `-name=value` as a query parameter of its request.
    url = f"json://127.0.0.1:{port}/h?-token={token}"
    service = make(make_service, {"hook": {"type": "apprise", "url": url}})
    feed(service, Reporter("web01", clock), 0.97)
    caplog.set_level(logging.DEBUG)
    assert deliver(service, clock) == 1
    ((path, _, _),) = hook.received
    assert path == f"/h?token={token}", "the receiver got it"
    assert "POST /h?…" in caplog.text, "urllib3's line is there, without its query"
    assert token not in caplog.text


def test_a_chat_message_carries_the_acknowledge_link_for_its_channel(
    make_service: Callable[..., CollectorService], clock: FakeClock, hook: HookReceiver
) -> None:
    """A channel no one person owns: the link names the channel, and acknowledges as it."""
    from litestar.testing import TestClient

    from collector.api.application import create_app

    service = make_service(
        [{**FS_RULE, "for": "0s"}],
        external_url="https://runwatch.example.org",
        notifications={
            "channels": {
                "team-chat": {"type": "apprise", "url": f"json://127.0.0.1:{port_of(hook.url)}/c"}
            },
            "rules": [{"channels": ["team-chat"]}],
        },
    )
    feed(service, Reporter("web01", clock), 0.97)
    notifications = Notifications(
        build_channels(service.config.notifications), ack_links=service.ack_links
    )
    with outbox_worker(
        service,
        {},
        clock=clock,
        policy=RetryPolicy(base_seconds=10, max_seconds=60),
        notifications=notifications,
    ) as worker:
        assert worker.deliver_due() == 1
    (message,) = [json.loads(body) for _, _, body in hook.received]
    found = re.search(
        r"^  Acknowledge: https://runwatch\.example\.org(/ack/[\w.-]+)$", message["message"], re.M
    )
    assert found, message["message"]
    with TestClient(create_app(service)) as client:
        page = client.get(found.group(1))
        assert "sent to <strong>team-chat</strong>" in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        done = client.post(
            found.group(1),
            data={"csrf": csrf.group(1)},
            headers={"Origin": "http://testserver.local"},
        )
        assert done.status_code == 200
    (call,) = service.calls("open", None)
    (entry,) = [e for e in service.store.list_audit(10) if e.action == "call.acknowledge"]
    assert (entry.actor, entry.via, entry.target) == (
        "team-chat",
        "notification link",
        f"call {call.id}",
    )
