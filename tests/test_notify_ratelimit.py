"""A channel's rate limit (`notifications.rate_limit`): exactly N messages in any window of M
minutes, then one digest with the rest when the window has room; nothing is lost, across a
restart too, and a digest sent again after a crash is the same digest. With a controlled clock,
delivered through apprise's json:// to a receiver on loopback, on both stores."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.settings import ConfigError
from collector.app import CollectorService
from collector.notify.delivery import Notifications, build_channels
from collector.notify.ratelimit import count_keys
from collector.store.digests import DIGEST_OP
from collector.store.records import OutboxOp
from tests.fakes.ntfy import HookReceiver
from tests.helpers import FS_RULE, FakeClock, Reporter, collector_config
from tests.helpers.sinks import outbox_worker

RULE = {**FS_RULE, "for": "0s"}
LIMIT, PER = 3, 900.0


@pytest.fixture
def hook() -> Iterator[HookReceiver]:
    with HookReceiver() as receiver:
        yield receiver


def make(
    make_service: Callable[..., CollectorService], hook: HookReceiver, **notify: Any
) -> CollectorService:
    url = "json://" + hook.url.removeprefix("http://") + "/pager"
    return make_service(
        [RULE],
        notifications={
            "channels": {"pager": {"type": "apprise", "url": url}},
            "rules": [{"channels": ["pager"]}],
            "rate_limit": {"messages": LIMIT, "per": "15m"},
            **notify,
        },
    )


class Fleet:
    """Hosts reporting to a service, each with its own sequence."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.reporters: dict[str, Reporter] = {}

    def feed(self, service: CollectorService, host: str, value: float) -> None:
        reporter = self.reporters.setdefault(host, Reporter(host, self.clock))
        service.ingest(host, reporter.report({"fs_used_ratio": value}))


def deliver(service: CollectorService, clock: FakeClock) -> int:
    notifications = Notifications(build_channels(service.config.notifications))
    with outbox_worker(service, {}, clock=clock, notifications=notifications) as worker:
        return worker.deliver_due()


def received(hook: HookReceiver) -> list[dict[str, Any]]:
    return [json.loads(body) for path, _, body in hook.received if path == "/pager"]


def hosts_in(messages: list[dict[str, Any]]) -> list[str]:
    """The hosts the messages name, in order (a digest names several, one per line)."""
    found = []
    for message in messages:
        for line in [message["title"], *message["message"].splitlines()]:
            if "[runwatch #" in line:
                found.append(line.split("] ", 1)[1].split()[0])
    return found


def digests(service: CollectorService) -> list[OutboxOp]:
    return [op for op in service.store.list_ops(None, 1000) if op.op == DIGEST_OP]


def test_exactly_n_in_the_window_then_one_digest_with_the_rest(
    make_service: Callable[..., CollectorService], clock: FakeClock, hook: HookReceiver
) -> None:
    service = make(make_service, hook)
    fleet = Fleet(clock)
    start = clock()
    hosts = [f"web{i:02d}" for i in range(10)]
    sent = 0
    for host in hosts:
        fleet.feed(service, host, 0.97)
        sent += deliver(service, clock)
        clock.advance(1)
    assert sent == LIMIT
    assert hosts_in(received(hook)) == hosts[:LIMIT]
    (digest,) = digests(service)
    assert digest.next_attempt_at == start + PER, "when the first message leaves the window"

    clock.now = start + PER - 1
    assert deliver(service, clock) == 0
    assert len(received(hook)) == LIMIT

    clock.now = start + PER
    assert deliver(service, clock) == 1
    messages = received(hook)
    assert len(messages) == LIMIT + 1
    title, body = messages[-1]["title"], messages[-1]["message"]
    assert title == "[runwatch] 7 notification(s) held back by the rate limit"
    assert "at most 3 messages per 15 min" in body
    assert hosts_in(messages) == hosts, "every call told, in order: nothing lost"

    # The window from start + 3 s holds the digest only: two places are free.
    clock.now = start + PER + 3
    for host in ("db01", "db02", "db03"):
        fleet.feed(service, host, 0.97)
        sent += deliver(service, clock)
    assert sent == LIMIT + 2
    waiting = [op for op in digests(service) if op.status == "pending"]
    assert [op.next_attempt_at for op in waiting] == [start + PER + PER], "the digest's turn"
    sent_at = sorted(op.delivered_at or 0 for op in service.store.list_ops("done", 1000))
    for i, at in enumerate(sent_at):
        inside = [t for t in sent_at[i:] if t < at + PER]
        assert len(inside) <= LIMIT, f"more than {LIMIT} within 15 min from {at}"


def test_a_digest_waits_for_what_it_holds_and_new_messages_join_it(
    make_service: Callable[..., CollectorService], clock: FakeClock, hook: HookReceiver
) -> None:
    """While a digest waits, a call's later news joins it too: nothing overtakes it."""
    service = make(make_service, hook)
    fleet = Fleet(clock)
    for host in ("a1", "a2", "a3", "a4"):
        fleet.feed(service, host, 0.97)
    deliver(service, clock)
    clock.advance(300)
    fleet.feed(service, "a1", 0.50)  # a1 resolves: the window is still full
    clock.advance(PER)
    assert deliver(service, clock) == 1
    body = received(hook)[-1]["message"]
    assert "a4 filesystem_full" in body and "a1 filesystem_full" in body
    assert body.index("a4 filesystem_full") < body.index("a1 filesystem_full")
    assert "RESOLVED (was CRITICAL)" in body


def test_a_restart_keeps_the_count_and_the_digest(
    tmp_path: Path,
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    hook: HookReceiver,
    store_backend: dict[str, Any],
) -> None:
    service = make(make_service, hook)
    fleet = Fleet(clock)
    start = clock()
    for host in ("b1", "b2", "b3", "b4"):
        fleet.feed(service, host, 0.97)
    assert deliver(service, clock) == LIMIT
    service.close()

    again = make(make_service, hook)  # the same store: a restart
    clock.advance(60)
    fleet.feed(again, "b5", 0.97)  # counted across the restart: it waits too
    assert deliver(again, clock) == 0
    assert [op.status for op in digests(again)] == ["pending"]
    clock.now = start + PER
    assert deliver(again, clock) == 1
    assert hosts_in(received(hook)) == ["b1", "b2", "b3", "b4", "b5"]


def test_a_digest_sent_again_after_a_crash_is_the_same_digest(
    make_service: Callable[..., CollectorService], clock: FakeClock, hook: HookReceiver
) -> None:
    """Crash after sending, before recording: the digest goes again with what it carried
    (same key, so the same Message-ID by mail); what came after its first send is not in it."""
    service = make(make_service, hook)
    fleet = Fleet(clock)
    for host in ("c1", "c2", "c3", "c4", "c5"):
        fleet.feed(service, host, 0.97)
    deliver(service, clock)
    clock.advance(PER)
    notifications = Notifications(build_channels(service.config.notifications))
    # Read as the worker would, without claiming (PostgreSQL leases what due_ops returns).
    (digest,) = service.store.list_ops("pending", 10)
    first = notifications.message(digest, service.store)  # sent; then kill -9
    fleet.feed(service, "c6", 0.97)  # after the first send: not in this digest
    (again,) = [op for op in service.store.list_ops("pending", 10) if op.op == DIGEST_OP]
    second = notifications.message(again, service.store)
    assert (second.key, second.subject, second.body) == (first.key, first.subject, first.body)
    assert "c6" not in second.body and "c5" in second.body
    # The digest, recorded this time, and c6 on its own: the window has room again.
    assert deliver(service, clock) == 2
    assert hosts_in(received(hook)) == ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert [op.status for op in digests(service)] == ["done"]


@pytest.mark.parametrize(
    ("limit", "path", "words"),
    [
        pytest.param({"messages": 0, "per": "15m"}, "messages", ">= 1", id="no messages"),
        pytest.param({"messages": 10, "per": "10s"}, "per", "at least 1m", id="window too short"),
        pytest.param({"messages": 10}, "rate_limit", "per", id="window missing"),
        pytest.param(
            {"messages": 10, "per": "1h", "burst": 3}, "rate_limit", "burst", id="unknown key"
        ),
    ],
)
def test_a_bad_rate_limit_is_refused_with_its_key_path(
    tmp_path: Path, limit: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        collector_config(
            tmp_path,
            [RULE],
            notifications={
                "channels": {"pager": {"type": "apprise", "url": "json://127.0.0.1:9/x"}},
                "rules": [{"channels": ["pager"]}],
                "rate_limit": limit,
            },
        )
    assert caught.value.path.startswith("notifications -> rate_limit")
    assert path in caught.value.path or path in caught.value.message
    assert words in str(caught.value)


def test_two_replicas_racing_count_against_one_limit(
    tmp_path: Path, clock: FakeClock, pg_dsn: str, hook: HookReceiver
) -> None:
    """Two services on one PostgreSQL database, breached at the same moment from two threads:
    the store's lock counts their messages one after the other. Three go, one digest waits
    with the other 27, and a delivery from either replica sends it once."""
    url = "json://" + hook.url.removeprefix("http://") + "/pager"
    replicas = [
        CollectorService(
            collector_config(
                tmp_path / f"replica{n}",
                [RULE],
                store={"backend": "postgresql", "dsn": pg_dsn},
                storm={"max_calls": 100, "window": "5m"},
                notifications={
                    "channels": {"pager": {"type": "apprise", "url": url}},
                    "rules": [{"channels": ["pager"]}],
                    "rate_limit": {"messages": LIMIT, "per": "15m"},
                },
            ),
            clock=clock,
        )
        for n in range(2)
    ]
    try:
        barrier = threading.Barrier(2)
        failures: list[BaseException] = []

        def breach(service: CollectorService, prefix: str) -> None:
            reporters = [Reporter(f"{prefix}{i:02d}", clock) for i in range(15)]
            reports = [(r.host, r.report({"fs_used_ratio": 0.97})) for r in reporters]
            try:
                barrier.wait(30)
                for host, report in reports:
                    service.ingest(host, report)
            except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
                failures.append(exc)

        threads = [
            threading.Thread(target=breach, args=(service, prefix))
            for service, prefix in zip(replicas, ("a", "b"), strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert failures == []
        ops = replicas[0].store.list_ops(None, 100)
        assert len([op for op in ops if op.op == "notify"]) == LIMIT
        assert len([op for op in ops if op.op == DIGEST_OP]) == 1
        assert deliver(replicas[0], clock) == LIMIT
        clock.advance(PER)
        assert deliver(replicas[1], clock) == 1
        assert deliver(replicas[0], clock) == 0
        assert len(set(hosts_in(received(hook)))) == 30, "every host told once"
        assert len(received(hook)) == LIMIT + 1
    finally:
        for service in replicas:
            service.close()


def test_a_call_told_in_a_digest_is_followed_like_one_told_on_its_own(
    make_service: Callable[..., CollectorService], clock: FakeClock, hook: HookReceiver
) -> None:
    """A rule for CRITICAL only follows a call it told of back to WARNING: also when the
    CRITICAL went in a digest."""
    url = "json://" + hook.url.removeprefix("http://") + "/pager"
    service = make_service(
        [RULE],
        notifications={
            "channels": {"pager": {"type": "apprise", "url": url}},
            "rules": [{"channels": ["pager"], "severities": ["CRITICAL"]}],
            "rate_limit": {"messages": 1, "per": "15m"},
        },
    )
    fleet = Fleet(clock)
    for host in ("d1", "d2", "d3"):
        fleet.feed(service, host, 0.97)
    clock.advance(60)
    fleet.feed(service, "d3", 0.90)  # back to WARNING: the pager heard of its CRITICAL
    clock.advance(PER)
    assert deliver(service, clock) == 2
    body = received(hook)[-1]["message"]
    assert "d3 filesystem_full {mountpoint=/}: CRITICAL -> WARNING" in body


def test_a_person_reached_on_two_channels_gets_n_in_all(
    make_service: Callable[..., CollectorService], clock: FakeClock, hook: HookReceiver
) -> None:
    """The limit is a person's: alice's mail and phone count against one limit of hers, so she
    gets LIMIT messages in the window across both, then the rest in a digest. A team channel
    (no one person's) keeps a count of its own."""
    base = "json://" + hook.url.removeprefix("http://")
    service = make_service(
        [RULE],
        notifications={
            "channels": {
                name: {"type": "apprise", "url": f"{base}/{name}"}
                for name in ("alice-mail", "alice-phone", "team")
            },
            "people": {"alice": {"channels": ["alice-mail", "alice-phone"]}},
            "rules": [{"channels": ["alice-mail", "alice-phone", "team"]}],
            "rate_limit": {"messages": LIMIT, "per": "15m"},
        },
    )
    fleet = Fleet(clock)
    start = clock()
    notifications = Notifications(
        build_channels(service.config.notifications),
        count_keys=count_keys(service.config.notifications),
    )

    def deliver_all() -> int:
        with outbox_worker(service, {}, clock=clock, notifications=notifications) as worker:
            return worker.deliver_due()

    for i in range(4):
        fleet.feed(service, f"web{i:02d}", 0.97)
        deliver_all()
        clock.advance(1)

    def to(name: str) -> list[dict[str, Any]]:
        return [json.loads(body) for path, _, body in hook.received if path == f"/{name}"]

    alice = to("alice-mail") + to("alice-phone")
    assert len(alice) == LIMIT, "alice: LIMIT messages across her two channels"
    assert len(to("team")) == LIMIT, "the team's channel counts on its own"
    held = {op.sink for op in digests(service)}
    assert "notify:team" in held
    assert held & {"notify:alice-mail", "notify:alice-phone"}

    clock.now = start + PER + 1
    deliver_all()
    # Every call reached alice once on each channel: on its own or in a digest.
    named = hosts_in(to("alice-mail")) + hosts_in(to("alice-phone"))
    assert sorted(named) == sorted(f"web{i:02d}" for i in range(4) for _ in range(2))
