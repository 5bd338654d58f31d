"""Issue 23's storm test: 1,000 hosts breaching at once give each on-call person ONE digest, not
1,000 mails. Read over IMAP from the real dovecot that postfix delivers to, counted by
Message-ID; the storm's later changes answer the digest at a bounded rate, and its end sends one
resolution. With a controlled clock, on both stores.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from collector.app import CollectorService
from collector.notify.delivery import Notifications, build_channels
from tests import mailserver
from tests.fakes.ntfy import HookReceiver
from tests.helpers import FS_RULE, FakeClock, Reporter
from tests.helpers.sinks import outbox_worker
from tests.procs import Processes

NO_MAIL = pytest.mark.skipif(bool(mailserver.missing()), reason=str(mailserver.missing()))

HOSTS = 1000
GROUPS = {
    "sys": {"sink": "helpdesk", "assign": "Systems Administration"},
    "ops": {"sink": "helpdesk", "assign": "Computer Operations"},
}
RULES = [
    {**FS_RULE, "for": "0s", "owner": "sys", "match": {"mountpoint": "/"}},
    {**FS_RULE, "name": "data_full", "for": "0s", "owner": "ops", "match": {"mountpoint": "/data"}},
]
WAIT, UPDATE_EVERY = 30.0, 900.0


@pytest.fixture
def mail(processes: Processes) -> Iterator[mailserver.MailSystem]:
    system = mailserver.start_mail_system(processes, ["alice", "bob"])
    try:
        yield system
    finally:
        system.close()


def mail_channel(system: mailserver.MailSystem, person: str) -> dict[str, Any]:
    return {
        "type": "email",
        "smtp": {"host": "127.0.0.1", "port": system.smtp_port, "security": "none"},
        "from": "runwatch@example.org",
        "to": [f"{person}@example.org"],
    }


def storm_service(
    make_service: Callable[..., CollectorService], system: mailserver.MailSystem
) -> CollectorService:
    return make_service(
        RULES,
        groups=GROUPS,
        staleness={"after_intervals": 3, "owner": "sys"},
        storm={"max_calls": 20, "window": "5m", "update_every": "5s"},
        notifications={
            "channels": {
                "alice-mail": mail_channel(system, "alice"),
                "bob-mail": mail_channel(system, "bob"),
            },
            "people": {"alice": {"channels": ["alice-mail"]}, "bob": {"channels": ["bob-mail"]}},
            "rotas": {
                "sys": {"people": ["alice"], "starts": "2026-01-05 09:00"},
                "ops": {"people": ["bob"], "starts": "2026-01-05 09:00"},
            },
            "rules": [{"oncall": True, "groups": ["sys", "ops"]}],
            "storm": {"wait": "30s", "update_every": "15m", "max_listed": 50},
        },
    )


class Fleet:
    """1,000 hosts: the even ones fill `/` (sys), the odd ones `/data` (ops)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.hosts = [f"h{i:04d}" for i in range(HOSTS)]
        # Reporting hourly: none goes stale while the test moves the clock by minutes.
        self.reporters = {host: Reporter(host, clock, interval=3600) for host in self.hosts}

    def feed(self, service: CollectorService, hosts: list[str], value: float) -> None:
        for host in hosts:
            mount = "/" if int(host[1:]) % 2 == 0 else "/data"
            report = self.reporters[host].report(
                {"fs_used_ratio": value}, labels={"mountpoint": mount}
            )
            service.ingest(host, report)


def deliver(service: CollectorService, clock: FakeClock) -> int:
    service.tick()  # storm control brings its umbrellas up to date
    notifications = Notifications(build_channels(service.config.notifications))
    with outbox_worker(service, {}, clock=clock, notifications=notifications) as worker:
        return worker.deliver_due()


@NO_MAIL
@pytest.mark.slow
def test_a_thousand_hosts_at_once_give_each_person_one_digest(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    mail: mailserver.MailSystem,
) -> None:
    service = storm_service(make_service, mail)
    fleet = Fleet(clock)
    boxes = {person: mailserver.Mailbox(mail, person) for person in ("alice", "bob")}
    began = time.monotonic()
    fleet.feed(service, fleet.hosts, 0.97)  # 1,000 hosts breach at once
    fed = time.monotonic() - began
    assert deliver(service, clock) == 0, "the opens wait 30 s for the storm to show"

    clock.advance(WAIT)
    assert deliver(service, clock) == 2, "one digest per person"
    digests = {}
    for person, box in boxes.items():
        (digest,) = box.wait_for(1)
        time.sleep(0.5)  # a second mail would arrive now
        assert len(box.messages()) == 1, f"{person} got more than the digest"
        digests[person] = digest
        body = digest.get_content()
        group = "sys" if person == "alice" else "ops"
        assert str(digest["Subject"]).startswith("[runwatch #")
        assert f"Storm in {group}: 500 problems" in str(digest["Subject"])
        held = int(body.split("Held back on this call (")[1].split(",")[0])
        own = body.split("just before the storm (")
        before = int(own[1].split(")")[0]) if len(own) > 1 else 0
        assert held + before == 500, "every host of the group named or counted"
        assert f"… and {held - 50} more" in body
        assert "In-Reply-To" not in digest

    # The storm changes: 200 hosts recover. One update per person, no sooner than 15 minutes
    # after the digest, answering it.
    recovered = fleet.hosts[:200]
    for _ in range(2):
        clock.advance(300)
        fleet.feed(service, recovered, 0.50)
        deliver(service, clock)
    assert [len(box.messages()) for box in boxes.values()] == [1, 1], [
        (str(m["Subject"]), m.get_content()[:300]) for m in boxes["alice"].messages()[1:]
    ]
    clock.advance(UPDATE_EVERY)
    assert deliver(service, clock) == 2
    for box in boxes.values():
        digest, update = box.wait_for(2)
        assert update["In-Reply-To"] == digest["Message-ID"]
        assert "100 recovered" in str(update["Subject"])

    # The storm ends: one resolution each, in the digest's thread; the calls the digest took
    # in resolve without mails of their own.
    clock.advance(60)
    fleet.feed(service, fleet.hosts, 0.50)
    deliver(service, clock)
    for person, box in boxes.items():
        mails = box.wait_for(3)
        time.sleep(0.5)
        mails = box.messages()
        ids = Counter(str(m["Message-ID"]) for m in mails)
        assert len(mails) == 3 and all(n == 1 for n in ids.values()), [
            str(m["Subject"]) for m in mails
        ]
        resolution = mails[-1]
        assert resolution["In-Reply-To"] == digests[person]["Message-ID"]
        assert "RESOLVED" in str(resolution["Subject"])
        assert [len(t) for t in box.threads()] == [3], "one thread per storm"
        box.close()
    print(f"1,000 hosts fed in {fed:.1f} s")


# -- the same, quickly: 60 hosts through apprise's json:// to a receiver on loopback ----------


def hook_service(
    make_service: Callable[..., CollectorService], hook: HookReceiver, **notify: Any
) -> CollectorService:
    base = "json://" + hook.url.removeprefix("http://")
    return make_service(
        RULES,
        groups=GROUPS,
        staleness={"after_intervals": 3, "owner": "sys"},
        storm={"max_calls": 10, "window": "5m", "update_every": "5s"},
        notifications={
            "channels": {
                "alice-hook": {"type": "apprise", "url": f"{base}/alice"},
                "bob-hook": {"type": "apprise", "url": f"{base}/bob"},
            },
            "people": {"alice": {"channels": ["alice-hook"]}, "bob": {"channels": ["bob-hook"]}},
            "rotas": {
                "sys": {"people": ["alice"], "starts": "2026-01-05 09:00"},
                "ops": {"people": ["bob"], "starts": "2026-01-05 09:00"},
            },
            "rules": [{"oncall": True, "groups": ["sys", "ops"]}],
            "storm": {"wait": "30s", "update_every": "15m", "max_listed": 5},
            **notify,
        },
    )


def titles(hook: HookReceiver, person: str) -> list[str]:
    return [json.loads(body)["title"] for path, _, body in hook.received if path == f"/{person}"]


@pytest.fixture
def hook() -> Iterator[HookReceiver]:
    with HookReceiver() as receiver:
        yield receiver


def test_a_storm_restarted_in_the_middle_still_gives_one_digest_each(
    make_service: Callable[..., CollectorService], clock: FakeClock, hook: HookReceiver
) -> None:
    service = hook_service(make_service, hook)
    fleet = Fleet(clock)
    fleet.feed(service, fleet.hosts[:30], 0.97)
    service.close()  # a restart while the storm grows and the digests wait

    again = hook_service(make_service, hook)
    fleet.feed(again, fleet.hosts[30:60], 0.97)
    clock.advance(WAIT)
    assert deliver(again, clock) == 2
    for person, group in (("alice", "sys"), ("bob", "ops")):
        (title,) = titles(hook, person)
        assert f"Storm in {group}: 30 problems" in title, title
    (body,) = [json.loads(b)["message"] for p, _, b in hook.received if p == "/alice"]
    assert "Held back on this call (25, the first 5 listed):" in body
    assert "… and 20 more" in body
    assert "Opened as calls of their own just before the storm (5):" in body

    clock.advance(60)
    fleet.feed(again, fleet.hosts[:60], 0.50)  # the storm ends
    deliver(again, clock)
    for person in ("alice", "bob"):
        assert len(titles(hook, person)) == 2
        assert "RESOLVED" in titles(hook, person)[-1]

    # Long after, a host the digest took in fails again: that is news of its own.
    clock.advance(3600)
    fleet.feed(again, ["h0000"], 0.97)
    clock.advance(WAIT)
    assert deliver(again, clock) == 1
    assert "h0000 filesystem_full" in titles(hook, "alice")[-1]


def test_a_storm_digest_sent_again_after_a_crash_is_the_same_message(
    make_service: Callable[..., CollectorService], clock: FakeClock, hook: HookReceiver
) -> None:
    service = hook_service(make_service, hook)
    fleet = Fleet(clock)
    fleet.feed(service, fleet.hosts[:40], 0.97)
    clock.advance(WAIT)
    notifications = Notifications(build_channels(service.config.notifications))
    (digest,) = [
        op
        for op in service.store.list_ops("pending", 100)
        if op.sink == "notify:alice-hook" and op.payload["storm"]
    ]
    first = notifications.message(digest, service.store)  # sent; then kill -9
    fleet.feed(service, fleet.hosts[40:50], 0.97)  # the storm grows meanwhile
    (again,) = [op for op in service.store.list_ops("pending", 100) if op.id == digest.id]
    second = notifications.message(again, service.store)
    assert (second.key, second.subject, second.body) == (first.key, first.subject, first.body)
    assert "20 problems" in first.subject


def test_a_rate_limit_and_a_storm_together(
    make_service: Callable[..., CollectorService], clock: FakeClock, hook: HookReceiver
) -> None:
    """Opens that go at once (no wait) count against the limit; the storm's digest then
    waits for the window like any message, and nothing is lost."""
    service = hook_service(
        make_service,
        hook,
        storm={"wait": "0s", "update_every": "15m", "max_listed": 50},
        rate_limit={"messages": 2, "per": "15m"},
    )
    fleet = Fleet(clock)
    for host in fleet.hosts[:40]:
        fleet.feed(service, [host], 0.97)
        deliver(service, clock)
    assert len(titles(hook, "alice")) == 2
    clock.advance(900)
    deliver(service, clock)
    sent = titles(hook, "alice")
    assert len(sent) == 3 and sent[-1].endswith("held back by the rate limit")
    body = [json.loads(b)["message"] for p, _, b in hook.received if p == "/alice"][-1]
    named = {f"h{i:04d}" for i in range(0, 40, 2)}
    told = " ".join([*sent[:2], body])
    # The first calls on their own, the rest and the storm's digest in the rate digest.
    assert all(f"{host} " in told for host in sorted(named)[:5]), told
    assert "Storm in sys" in body
