"""Issue 23's storm test: 1,000 hosts breaching at once give each on-call person ONE digest, not
1,000 mails. Read over IMAP from the real dovecot that postfix delivers to, counted by
Message-ID; the storm's later changes answer the digest at a bounded rate, and its end sends one
resolution. With a controlled clock, on both stores.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from collector.app import CollectorService
from collector.notify.delivery import Notifications, build_channels
from tests import mailserver
from tests.helpers import FS_RULE, FakeClock, Reporter
from tests.helpers.sinks import outbox_worker
from tests.procs import Processes

pytestmark = pytest.mark.skipif(bool(mailserver.missing()), reason=str(mailserver.missing()))

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
