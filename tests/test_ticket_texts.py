"""Issue 19's acceptance for ticket texts, in the real Redmine and Request Tracker: after a
severity change and after recovery, what a person reads in the ticket holds the current facts
(severity, value in human units) and the link to the call in the console.

Redmine's description is rewritten at each change. RT 5 cannot edit a ticket's first message, so
there its first message says "As first seen" and each later comment carries the current state
(docs/helpdesks/call-texts.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.app import CollectorService
from collector.sinks.contract import TicketRef
from tests import helpdesk_rt, helpdesks
from tests.helpers import FS_RULE, FakeClock, Reporter
from tests.helpers.config import collector_config
from tests.test_sink_rt import comments

pytestmark = pytest.mark.slow

redmine_server = helpdesks.redmine_server
rt_server = helpdesk_rt.rt_server

CONSOLE = "https://runwatch.example.org"


@dataclass
class Ticket:
    """What a person reads in the desk: the subject, the current description, every note."""

    subject: str
    description: str
    notes: list[str]
    status: str


@dataclass
class RealDesk:
    sink: dict[str, Any]
    read: Callable[[str], Ticket]


def redmine_desk(server: Any, secret: Path) -> RealDesk:
    secret.write_text(server.api_key)
    client = httpx.Client(
        base_url=server.url, headers={"X-Redmine-API-Key": server.api_key}, timeout=10
    )

    def read(remote_id: str) -> Ticket:
        response = client.get(f"/issues/{remote_id}.json", params={"include": "journals"})
        response.raise_for_status()
        issue = response.json()["issue"]
        notes = [j["notes"] for j in issue["journals"] if j.get("notes")]
        assert issue["tracker"]["name"] == "Support", "the shipped default tracker"
        return Ticket(issue["subject"], issue["description"], notes, issue["status"]["name"])

    sink = {
        "type": "redmine",
        "url": server.url,
        "api_key": {"file": str(secret)},
        "project": "monitoring",
    }
    return RealDesk(sink, read)


def rt_desk(server: Any, secret: Path) -> RealDesk:
    secret.write_text(server.token)
    client = httpx.Client(
        base_url=f"{server.url}/REST/2.0",
        headers={"Authorization": f"token {server.token}"},
        timeout=10,
    )

    def read(remote_id: str) -> Ticket:
        response = client.get(f"/ticket/{remote_id}")
        response.raise_for_status()
        data = response.json()
        notes = comments(client, TicketRef(remote_id))
        # RT's first message cannot change: the current description is the last comment's.
        first = first_message(client, remote_id)
        return Ticket(data["Subject"], first, notes, data["Status"])

    sink = {"type": "rt", "url": server.url, "token": {"file": str(secret)}, "queue": "Monitoring"}
    return RealDesk(sink, read)


def first_message(client: httpx.Client, remote_id: str) -> str:
    history = client.get(f"/ticket/{remote_id}/history", params={"fields": "Type"})
    history.raise_for_status()
    create = next(i["id"] for i in history.json()["items"] if i["Type"] == "Create")
    attachments = client.get(
        f"/ticket/{remote_id}/attachments",
        params={"fields": "Content,TransactionId", "per_page": 100},
    )
    attachments.raise_for_status()
    return next(
        str(i["Content"]) for i in attachments.json()["items"] if i["TransactionId"] == create
    )


@pytest.fixture(params=["redmine", "rt"])
def real_desk(request: pytest.FixtureRequest, tmp_path: Path) -> RealDesk:
    if request.param == "redmine":
        return redmine_desk(request.getfixturevalue("redmine_server"), tmp_path / "secret")
    return rt_desk(request.getfixturevalue("rt_server"), tmp_path / "secret")


@pytest.fixture
def service(real_desk: RealDesk, tmp_path: Path, clock: FakeClock) -> Iterator[CollectorService]:
    """A collector (SQLite) whose group files calls in the real desk; its outbox runs by hand."""
    config = collector_config(
        tmp_path,
        [{**FS_RULE, "for": "0s"}],
        sinks={"desk": real_desk.sink},
        groups={"systems-administration": {"sink": "desk", "assign": "Systems Administration"}},
        staleness={"after_intervals": 3, "owner": "systems-administration"},
        external_url=CONSOLE,
    )
    built = CollectorService(config, clock=clock)
    yield built
    built.close()


def deliver(service: CollectorService) -> None:
    assert service.outbox is not None
    service.outbox.deliver_due()
    assert service.store.outbox_counts().get(("desk", "dead"), 0) == 0, "nothing refused"


def lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.replace("\r", "").splitlines()]


def test_ticket_holds_the_current_facts_after_a_severity_change_and_after_recovery(
    service: CollectorService, real_desk: RealDesk, clock: FakeClock
) -> None:
    host = f"web-{uuid.uuid4().hex[:8]}"  # the desks' databases outlive a session
    web = Reporter(host, clock)
    service.ingest(host, web.report({"fs_used_ratio": 0.88}))
    deliver(service)
    (call,) = service.calls(None, None)
    remote_id = service.store.get_link(call.id, "desk").remote_id  # type: ignore[union-attr]
    link = f"Console: {CONSOLE}/calls/{call.id}"

    clock.advance(600)
    service.ingest(host, web.report({"fs_used_ratio": 0.97}))
    deliver(service)
    ticket = real_desk.read(remote_id)
    print(f"\n--- after the severity change ---\n{ticket}")
    assert ticket.subject == f"[{host}] filesystem_full {{mountpoint=/}}: 97.0% (critical >= 95.0%)"
    last = lines(ticket.notes[-1])
    assert last[0].startswith("Severity changed from WARNING to CRITICAL")
    assert link in last
    current = ticket.notes[-1] if real_desk.sink["type"] == "rt" else ticket.description
    for fact in ("Severity: CRITICAL", "Value: 97.0%", "Threshold: >= 95.0%", link):
        assert fact in lines(current), fact
    if real_desk.sink["type"] == "rt":
        assert lines(ticket.description)[0].startswith("As first seen.")

    clock.advance(80 * 60)
    service.ingest(host, web.report({"fs_used_ratio": 0.50}))
    deliver(service)
    ticket = real_desk.read(remote_id)
    print(f"\n--- after recovery ---\n{ticket}")
    assert ticket.status in ("Resolved", "resolved")
    last = lines(ticket.notes[-1])
    assert last[0] == (
        "Recovered at 2027-01-15 09:30:00 UTC, after 1 h 30 min: fs_used_ratio is 50.0%, "
        "below the clear threshold 80.0%."
    )
    assert link in last
    current = ticket.notes[-1] if real_desk.sink["type"] == "rt" else ticket.description
    for fact in (
        "Recovered: 2027-01-15 09:30:00 UTC, after 1 h 30 min (fs_used_ratio is 50.0%, "
        "below the clear threshold 80.0%)",
        "Severity: OK (was CRITICAL)",
        "Value: 50.0%",
        link,
    ):
        assert fact in lines(current), fact

    clock.advance(600)  # back within reopen_within: the same ticket, its text current again
    service.ingest(host, web.report({"fs_used_ratio": 0.96}))
    deliver(service)
    ticket = real_desk.read(remote_id)
    print(f"\n--- reopened ---\n{ticket}")
    assert lines(ticket.notes[-1])[0].startswith("The problem came back within 1 h")
    current = ticket.notes[-1] if real_desk.sink["type"] == "rt" else ticket.description
    assert "Severity: CRITICAL" in lines(current)
    assert "Value: 96.0%" in lines(current)
    assert not lines(current)[-1].startswith("Recovered:")


def test_stale_host_ticket_names_the_last_report_and_its_recovery(
    service: CollectorService, real_desk: RealDesk, clock: FakeClock
) -> None:
    host = f"quiet-{uuid.uuid4().hex[:8]}"
    web = Reporter(host, clock, interval=60)
    service.ingest(host, web.report({"fs_used_ratio": 0.5}))
    clock.advance(190)
    service.tick()
    deliver(service)
    (call,) = service.calls(None, None)
    remote_id = service.store.get_link(call.id, "desk").remote_id  # type: ignore[union-attr]
    ticket = real_desk.read(remote_id)
    print(f"\n--- a silent host ---\n{ticket}")
    assert ticket.subject == (
        f"[{host}] host_stale: STALE (no report since 2027-01-15 08:00:00 UTC "
        "(expected every 1 min))"
    )
    text = lines(ticket.description)
    assert "Rule: host_stale" in text
    assert "Last report: 2027-01-15 08:00:00 UTC (silent for 3 min 10 s when this was written)" in (
        text
    )
    assert f"Console: {CONSOLE}/calls/{call.id}" in text

    clock.advance(1000)
    service.ingest(host, web.report({"fs_used_ratio": 0.5}))
    deliver(service)
    ticket = real_desk.read(remote_id)
    print(f"\n--- the host reports again ---\n{ticket}")
    last = lines(ticket.notes[-1])
    # Counted from the call's first sight, when the silence was detected (08:03:10).
    assert last[0] == (
        "Recovered at 2027-01-15 08:19:50 UTC, after 16 min 40 s: the host reports again."
    )
    assert f"Console: {CONSOLE}/calls/{call.id}" in last


def test_a_service_outage_ticket_names_its_causes_and_theirs_name_it(
    real_desk: RealDesk, tmp_path: Path, clock: FakeClock
) -> None:
    """Issue 24: the service-level call's ticket says, in the users' words first, what the
    outage is and which calls cause it; the cause's ticket names the service call."""
    tag = uuid.uuid4().hex[:8]  # the desks' databases outlive a session
    host, name = f"pay-{tag}", f"payroll-{tag}"
    config = collector_config(
        tmp_path,
        [{**FS_RULE, "for": "0s"}],
        sinks={"desk": real_desk.sink},
        groups={"systems-administration": {"sink": "desk", "assign": "Systems Administration"}},
        staleness={"after_intervals": 3, "owner": "systems-administration"},
        external_url=CONSOLE,
        services={
            name: {
                "title": "Payroll",
                "owner": "systems-administration",
                "components": [{"name": "payroll server", "hosts": [host]}],
            }
        },
    )
    service = CollectorService(config, clock=clock)
    try:
        pay = Reporter(host, clock)
        service.ingest(host, pay.report({"fs_used_ratio": 0.97}))
        service.tick()
        deliver(service)
        (disk,) = [c for c in service.calls("open", None) if c.host == host]
        (outage,) = [c for c in service.calls("open", None) if c.rule == "service_level"]
        outage_id = service.store.get_link(outage.id, "desk").remote_id  # type: ignore[union-attr]
        disk_id = service.store.get_link(disk.id, "desk").remote_id  # type: ignore[union-attr]

        ticket = real_desk.read(outage_id)
        print(f"\n--- the service call ---\n{ticket}")
        assert ticket.subject == "Payroll: outage"
        text = lines(ticket.description)
        first = (
            f"Payroll: outage — caused by: {host} filesystem_full {{mountpoint=/}} CRITICAL "
            f"(call #{disk.id})"
        )
        # RT's first message begins with "As first seen." (it cannot be edited later).
        assert text[0] == first or (real_desk.sink["type"] == "rt" and first in text[:3])
        assert f"Console: {CONSOLE}/calls/{outage.id}" in text
        cause = real_desk.read(disk_id)
        print(f"\n--- the cause's call ---\n{cause}")
        note = lines(cause.notes[-1])
        assert note[0].startswith(
            f"Payroll: outage. This problem is one of its causes: service call #{outage.id}"
        )
        assert f"Console: {CONSOLE}/calls/{outage.id}" in note

        clock.advance(600)
        service.ingest(host, pay.report({"fs_used_ratio": 0.5}))
        service.tick()
        deliver(service)
        ticket = real_desk.read(outage_id)
        print(f"\n--- the service is operational again ---\n{ticket}")
        assert ticket.status in ("Resolved", "resolved")
        assert lines(ticket.notes[-1])[0] == (
            "Payroll is operational again at 2027-01-15 08:10:00 UTC, after 10 min."
        )
    finally:
        service.close()
