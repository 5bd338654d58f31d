"""Acknowledging a call from its notification: the signed link's pages, against both stores.

GET shows the call and changes nothing; only the POST acknowledges, once, for the person the
link was sent to, through the normal path (history, audit log). Expired, tampered (each part),
replayed, wrongly signed and unknown-call links are refused with a clear page and the right
status; the confirm form's CSRF rules hold; two racing uses of one link give one
acknowledgement.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from checks.settings import ConfigError
from collector.api.application import create_app
from collector.app import CollectorService
from collector.notify.ack import KEY_FILE, AckLink, AckLinkKeys
from tests.helpers import FS_RULE, FakeClock, Reporter

BASE = "http://testserver.local"
ORIGIN = {"Origin": BASE}
DAY = 24 * 3600
NOTIFY: dict[str, Any] = {
    "channels": {
        "alice-mail": {
            "type": "email",
            "smtp": {"host": "127.0.0.1", "port": 2525, "security": "none"},
            "from": "runwatch@runwatch.test",
            "to": ["alice@example.org"],
        }
    },
    "people": {"alice": {"channels": ["alice-mail"]}},
}


def linked_service(
    make_service: Callable[..., CollectorService], **notify: Any
) -> CollectorService:
    return make_service(
        [{**FS_RULE, "for": "0s"}], external_url=BASE, notifications={**NOTIFY, **notify}
    )


@pytest.fixture
def service(make_service: Callable[..., CollectorService]) -> CollectorService:
    return linked_service(make_service)


@pytest.fixture
def client(service: CollectorService) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(service)) as test_client:
        yield test_client


def open_call(service: CollectorService, clock: FakeClock, host: str = "web01") -> int:
    service.ingest(host, Reporter(host, clock).report({"fs_used_ratio": 0.97}))
    return next(c.id for c in service.calls("open", None) if c.host == host)


def path_of(
    service: CollectorService, call_id: int, recipient: str = "alice", key: str = "k1"
) -> str:
    links = service.ack_links
    assert links is not None
    url = links.url(links.link(call_id, recipient, service.clock(), key))
    assert url.startswith(BASE + "/ack/")
    return url.removeprefix(BASE)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def confirm(client: TestClient[Any], path: str) -> Any:
    """What a person does: open the link, then press the button."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    return client.post(path, data={"csrf": csrf_of(page.text)}, headers=ORIGIN)


def acknowledgements(service: CollectorService, call_id: int) -> list[str]:
    return [e.text for e in service.store.call_events(call_id) if e.kind == "acknowledged"]


def test_get_shows_the_call_and_changes_nothing(
    service: CollectorService, client: TestClient[Any], clock: FakeClock
) -> None:
    call_id = open_call(service, clock)
    path = path_of(service, call_id)
    before = (service.store.call_events(call_id), service.store.list_audit(100))
    for _ in range(3):
        page = client.get(path)
        assert page.status_code == 200
        text = page.text
        assert f"Call #{call_id}: web01 filesystem_full" in text
        for fact in ("CRITICAL", "open", "systems-administration", "Opened", "mountpoint=/"):
            assert fact in text, fact
        assert 'id="ack-confirm"' in text and "sent to <strong>alice</strong>" in text
        assert page.headers["referrer-policy"] == "same-origin"
        assert page.headers["cache-control"] == "no-store"
    assert (service.store.call_events(call_id), service.store.list_audit(100)) == before
    links = service.ack_links
    assert links is not None
    link = links.link(call_id, "alice", clock(), "k1")
    assert service.store.ack_link_used(link.link_id) is None


def test_the_post_acknowledges_once_as_the_person_it_was_sent_to(
    service: CollectorService, client: TestClient[Any], clock: FakeClock
) -> None:
    call_id = open_call(service, clock)
    path = path_of(service, call_id)
    page = client.get(path)
    token = csrf_of(page.text)
    done = client.post(path, data={"csrf": token}, headers=ORIGIN)
    assert done.status_code == 200, done.text
    assert "Acknowledged for alice" in done.text
    assert acknowledgements(service, call_id) == ["Acknowledged by alice via notification link."]
    (entry,) = [e for e in service.store.list_audit(100) if e.action == "call.acknowledge"]
    assert (entry.actor, entry.via, entry.target) == (
        "alice",
        "notification link",
        f"call {call_id}",
    )
    (call,) = service.calls("open", None)
    assert service.acknowledged_at(call) == clock()
    # Replayed: the same form again, or the link opened again.
    again = client.post(path, data={"csrf": token}, headers=ORIGIN)
    assert again.status_code == 410 and "already used" in again.text
    assert client.get(path).status_code == 410
    assert len(acknowledgements(service, call_id)) == 1


def test_a_call_acknowledged_or_resolved_already_says_so(
    service: CollectorService, client: TestClient[Any], clock: FakeClock
) -> None:
    call_id = open_call(service, clock)
    assert confirm(client, path_of(service, call_id, key="first")).status_code == 200
    # Another person's link for the same call: no error, it says who did.
    bob = path_of(service, call_id, recipient="bob", key="second")
    page = client.get(bob)
    assert page.status_code == 200
    assert "already acknowledged" in page.text and "alice" in page.text
    assert 'id="ack-confirm"' not in page.text
    # Resolved while the page was open: said, no button, and the POST acknowledges nothing.
    other = open_call(service, clock, "web02")
    path = path_of(service, other, key="third")
    token = csrf_of(client.get(path).text)
    service.resolve_call(other, "carol")
    page = client.get(path)
    assert page.status_code == 200 and "This call is resolved" in page.text
    assert 'id="ack-confirm"' not in page.text
    posted = client.post(path, data={"csrf": token}, headers=ORIGIN)
    assert posted.status_code == 200 and "This call is resolved" in posted.text
    assert acknowledgements(service, other) == []


def test_an_expired_link_is_refused(
    service: CollectorService, client: TestClient[Any], clock: FakeClock
) -> None:
    call_id = open_call(service, clock)
    path = path_of(service, call_id)
    token = csrf_of(client.get(path).text)
    clock.advance(DAY - 1)
    assert client.get(path).status_code == 200  # still valid a second before
    clock.advance(1)
    page = client.get(path)
    assert page.status_code == 410 and "expired" in page.text
    posted = client.post(path, data={"csrf": token}, headers=ORIGIN)
    assert posted.status_code == 410
    assert acknowledgements(service, call_id) == []


def test_the_expiry_is_configurable(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = linked_service(make_service, ack_links={"expire_after": "2h"})
    call_id = open_call(service, clock)
    with TestClient(create_app(service)) as client:
        path = path_of(service, call_id)
        clock.advance(7199)
        assert client.get(path).status_code == 200
        clock.advance(1)
        assert client.get(path).status_code == 410


def _tamper(token: str, index: int, value: Any) -> str:
    body, _, mac = token.partition(".")
    fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    fields[index] = value
    raw = base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode())
    return raw.decode().rstrip("=") + "." + mac


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda t, c: _tamper(t, 1, c + 1), id="the call"),
        pytest.param(lambda t, c: _tamper(t, 2, "mallory"), id="the recipient"),
        pytest.param(lambda t, c: _tamper(t, 3, 9_999_999_999), id="the expiry"),
        pytest.param(lambda t, c: _tamper(t, 4, "0" * 24), id="the link id"),
        pytest.param(lambda t, c: _tamper(t, 0, 2), id="the version"),
        pytest.param(lambda t, c: t[:-1] + ("A" if t[-1] != "A" else "B"), id="the signature"),
        pytest.param(lambda t, c: t.partition(".")[0], id="no signature"),
        pytest.param(lambda t, c: t[:-5], id="cut short"),
        pytest.param(lambda t, c: "x" + t, id="the body"),
        pytest.param(lambda t, c: "not-a-link", id="garbage"),
    ],
)
def test_a_tampered_link_is_refused(
    service: CollectorService,
    client: TestClient[Any],
    clock: FakeClock,
    change: Callable[[str, int], str],
) -> None:
    call_id = open_call(service, clock)
    open_call(service, clock, "web02")  # a call the changed id could name
    path = path_of(service, call_id)
    token = path.removeprefix("/ack/")
    bad = "/ack/" + change(token, call_id)
    page = client.get(bad)
    assert page.status_code == 403, page.text
    assert "not valid" in page.text
    good_csrf = csrf_of(client.get(path).text)
    assert client.post(bad, data={"csrf": good_csrf}, headers=ORIGIN).status_code == 403
    assert [acknowledgements(service, c.id) for c in service.calls("open", None)] == [[], []]


def test_a_link_signed_with_another_key_is_refused_and_a_previous_key_still_works(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, new = "o" * 40, "n" * 40
    monkeypatch.setenv("RUNWATCH_TEST_ACK_OLD", old)
    monkeypatch.setenv("RUNWATCH_TEST_ACK_NEW", new)
    service = linked_service(
        make_service,
        ack_links={
            "secret": {"env": "RUNWATCH_TEST_ACK_NEW"},
            "previous_secrets": [{"env": "RUNWATCH_TEST_ACK_OLD"}],
        },
    )
    call_id = open_call(service, clock)
    link = AckLink(call_id, "alice", clock() + 3600, "abc")
    with TestClient(create_app(service)) as client:
        stranger = AckLinkKeys([b"s" * 40]).token(link)
        assert client.get(f"/ack/{stranger}").status_code == 403
        rotated_out = AckLinkKeys([old.encode()]).token(link)
        assert confirm(client, f"/ack/{rotated_out}").status_code == 200
    assert len(acknowledgements(service, call_id)) == 1
    assert not (service.config.data_dir / KEY_FILE).exists()  # configured: none generated


def test_a_link_for_an_unknown_call_is_404(
    service: CollectorService, client: TestClient[Any], clock: FakeClock
) -> None:
    open_call(service, clock)
    page = client.get(path_of(service, 4242))
    assert page.status_code == 404 and "no call #4242" in page.text


@pytest.mark.parametrize(
    ("form", "headers", "cookie"),
    [
        pytest.param({}, ORIGIN, True, id="no csrf token"),
        pytest.param({"csrf": "x" * 43}, ORIGIN, True, id="a wrong csrf token"),
        pytest.param("other link", ORIGIN, True, id="another link's csrf token"),
        pytest.param("valid", ORIGIN, False, id="no nonce cookie"),
        pytest.param("valid", {"Origin": "https://evil.example"}, True, id="from another site"),
        pytest.param("valid", {"Sec-Fetch-Site": "cross-site"}, True, id="fetched cross-site"),
    ],
)
def test_the_csrf_rules_hold(  # noqa: PLR0917 - pytest fixtures
    service: CollectorService,
    client: TestClient[Any],
    clock: FakeClock,
    form: Any,
    headers: dict[str, str],
    cookie: bool,
) -> None:
    call_id = open_call(service, clock)
    path = path_of(service, call_id)
    token = csrf_of(client.get(path).text)
    if form == "valid":
        form = {"csrf": token}
    elif form == "other link":
        form = {"csrf": csrf_of(client.get(path_of(service, call_id, key="other")).text)}
    if not cookie:
        client.cookies.clear()
    posted = client.post(path, data=form, headers=headers)
    assert posted.status_code == 403, posted.text
    assert acknowledgements(service, call_id) == []
    # The link is not spent by a refused form: the real one still works.
    client.cookies.clear()
    assert confirm(client, path).status_code == 200


def test_two_racing_uses_of_one_link_acknowledge_once(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    """Two replicas (two services on one store) take the same link at the same moment."""
    first = linked_service(make_service)
    second = linked_service(make_service)
    call_id = open_call(first, clock)
    links = first.ack_links
    assert links is not None
    link = links.link(call_id, "alice", clock(), "race")
    results: list[str] = []
    start = threading.Barrier(2)

    def use(service: CollectorService) -> None:
        start.wait(timeout=10)
        results.append(service.acknowledge_from_link(call_id, "alice", link.link_id).outcome)

    threads = [threading.Thread(target=use, args=(s,)) for s in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) in (["acknowledged", "used"], ["acknowledged", "already"]), results
    assert len(acknowledgements(first, call_id)) == 1
    assert first.store.ack_link_used(link.link_id) is not None


def test_concurrent_posts_through_the_pages_acknowledge_once(
    service: CollectorService, client: TestClient[Any], clock: FakeClock
) -> None:
    call_id = open_call(service, clock)
    path = path_of(service, call_id)
    token = csrf_of(client.get(path).text)
    statuses: list[int] = []

    def post() -> None:
        statuses.append(client.post(path, data={"csrf": token}, headers=ORIGIN).status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [200, 410, 410, 410]
    assert len(acknowledgements(service, call_id)) == 1


def test_tampered_links_count_as_failed_authentications(
    service: CollectorService, client: TestClient[Any], clock: FakeClock
) -> None:
    call_id = open_call(service, clock)
    good = path_of(service, call_id)
    burst = service.config.limits.address_burst_failures
    answers = [client.get(f"/ack/forged{i}.{'A' * 43}").status_code for i in range(burst + 1)]
    assert answers[:burst] == [403] * burst
    assert answers[burst] == 429
    assert client.get(good).status_code == 429  # the address waits, whatever it sends
    failures = service.registry.get_sample_value("runwatch_auth_failures_total", {"via": "link"})
    assert failures == burst


def test_logs_never_hold_a_whole_token(
    service: CollectorService,
    client: TestClient[Any],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    call_id = open_call(service, clock)
    path = path_of(service, call_id)
    token = path.removeprefix("/ack/")
    client.get(path[:-2] + "AA")  # tampered: logged
    client.post(path, data={}, headers=ORIGIN)  # no CSRF token: logged
    confirm(client, path)
    clock.advance(2 * DAY)
    client.get(path)  # expired: logged
    # The collector's own records (the test's HTTP client logs the URLs it asks for).
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("collector"))
    assert "acknowledge link" in text
    body, _, mac = token.partition(".")
    assert token[:-2] not in text and mac not in text and body not in text


def test_the_generated_key_is_kept_in_the_data_dir_with_0600(
    service: CollectorService, make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    secret = service.config.data_dir / KEY_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    call_id = open_call(service, clock)
    path = path_of(service, call_id)
    # A restart (or another replica on this data dir) reads the same key: old links work.
    again = linked_service(make_service)
    assert again.ack_links is not None and service.ack_links is not None
    token = path.removeprefix("/ack/")
    assert again.ack_links.keys.read(token, clock()).call_id == call_id


def test_without_external_url_or_switched_off_no_links(
    make_service: Callable[..., CollectorService],
) -> None:
    assert make_service([FS_RULE], notifications=NOTIFY).ack_links is None
    off = linked_service(make_service, ack_links={"enabled": False})
    assert off.ack_links is None
    with TestClient(create_app(off)) as client:
        assert client.get(f"/ack/x.{'A' * 43}").status_code == 404


@pytest.mark.parametrize(
    ("links", "path", "message"),
    [
        pytest.param({"expire_after": "1m"}, "expire_after", "between 5m and 30d", id="too short"),
        pytest.param({"expire_after": "60d"}, "expire_after", "between 5m and 30d", id="too long"),
        pytest.param(
            {"secret": {"env": "RUNWATCH_TEST_ACK_SHORT"}},
            "secret",
            "at least 32 characters, this one has 5",
            id="a short key",
        ),
        pytest.param(
            {"secret": {"env": "RUNWATCH_TEST_ACK_UNSET"}}, "secret", "is not set", id="no key"
        ),
        pytest.param(
            {"previous_secrets": [{"file": "missing.key"}]},
            "previous_secrets -> 1",
            "cannot read secret file",
            id="an unreadable old key",
        ),
        pytest.param({"expiry": "1h"}, "expiry", "", id="an unknown key"),
    ],
)
def test_bad_link_settings_are_refused_at_load_with_their_key_path(
    make_service: Callable[..., CollectorService],
    monkeypatch: pytest.MonkeyPatch,
    links: dict[str, Any],
    path: str,
    message: str,
) -> None:
    monkeypatch.setenv("RUNWATCH_TEST_ACK_SHORT", "short")
    monkeypatch.delenv("RUNWATCH_TEST_ACK_UNSET", raising=False)
    with pytest.raises(ConfigError) as raised:
        linked_service(make_service, ack_links=links)
    assert raised.value.path.startswith(f"notifications -> ack_links -> {path}"), raised.value
    assert message in raised.value.message
    assert "short" not in raised.value.message.replace("too short", "")


def test_a_call_in_a_help_desk_is_acknowledged_there_too(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    """The acknowledgement goes to the ticket as a comment, through the outbox, and the
    desk's escalation sees it: the call counts as acknowledged."""
    from collector.store.records import CallLink

    service = make_service(
        [{**FS_RULE, "for": "0s"}],
        external_url=BASE,
        notifications=NOTIFY,
        sinks={"desk": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}},
        groups={
            "systems-administration": {"sink": "desk", "assign": "Systems Administration"},
            "computer-operations": {"sink": "desk", "assign": "Computer Operations"},
        },
    )
    call_id = open_call(service, clock)
    with service.store.transaction():
        service.store.save_link(CallLink(call_id, "desk", "T-42"))
    clock.advance(120)
    # Straight to the service: the app's background sync would read the (absent) desk.
    link_id = "desk-link"
    assert service.acknowledge_from_link(call_id, "alice", link_id).outcome == "acknowledged"
    text = "Acknowledged by alice via notification link."
    assert acknowledgements(service, call_id) == [text]
    comments = [
        op.payload
        for op in service.store.list_ops("pending", 10)
        if op.sink == "desk" and op.op == "comment"
    ]
    assert comments == [{"text": text}]
    ticket = service.store.get_link(call_id, "desk")
    assert ticket is not None and ticket.acknowledged_at == clock()
    (entry,) = [e for e in service.store.list_audit(10) if e.action == "call.acknowledge"]
    assert (entry.actor, entry.via) == ("alice", "notification link")


def test_a_message_sent_again_carries_the_same_link(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    """A retry (after a crash) is the same message, link included; the link's time runs from
    the event, not from the delivery; a resolution carries no link."""
    from collector.notify.delivery import Notifications
    from collector.notify.message import Message

    sent: list[Message] = []

    class Capture:
        name = "alice-mail"

        def send(self, message: Message) -> None:
            sent.append(message)

    service = linked_service(make_service, rules=[{"channels": ["alice-mail"]}])
    notifications = Notifications({"alice-mail": Capture()}, ack_links=service.ack_links)
    call_id = open_call(service, clock)
    (op,) = service.store.list_ops("pending", 10)
    notifications.deliver(op, service.store)
    clock.advance(3600)
    notifications.deliver(op, service.store)
    first, again = sent
    assert first.body == again.body and "/ack/" in first.body
    links = service.ack_links
    assert links is not None
    token = re.search(r"/ack/([\w.-]+)", first.body)
    assert token
    link = links.keys.read(token.group(1), clock())
    assert (link.call_id, link.recipient) == (call_id, "alice")
    assert link.expires_at == op.created_at + DAY
    service.resolve_call(call_id, "carol")
    (resolved,) = [
        o for o in service.store.list_ops("pending", 10) if o.payload["event"] == "resolve"
    ]
    notifications.deliver(resolved, service.store)
    assert "/ack/" not in sent[-1].body


def test_replicas_without_a_shared_secret_are_warned(
    make_service: Callable[..., CollectorService],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On PostgreSQL (replicas) a key generated in each data dir would make one replica
    refuse the links another sent: the collector says so at start, and not once a secret is
    configured, nor on SQLite (one collector)."""
    with caplog.at_level(logging.WARNING, logger="collector.app"):
        service = linked_service(make_service)
    warned = [r.getMessage() for r in caplog.records if "ack_links.secret" in r.getMessage()]
    if service.config.store.backend == "postgresql":
        assert len(warned) == 1 and "same secret file" in warned[0]
    else:
        assert warned == []
    caplog.clear()
    monkeypatch.setenv("RUNWATCH_TEST_ACK_SHARED", "s" * 40)
    with caplog.at_level(logging.WARNING, logger="collector.app"):
        linked_service(make_service, ack_links={"secret": {"env": "RUNWATCH_TEST_ACK_SHARED"}})
    assert not [r for r in caplog.records if "ack_links.secret" in r.getMessage()]
