"""Storm control: a switch fails and 200 hosts go STALE. The help desk gets 20 calls and one
umbrella call listing the rest, never 200 calls; every host is still watched."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from collector.app import CollectorService
from collector.incidents.outbox import OutboxWorker
from collector.sinks.contract import NewTicket, RemoteStatus, TicketRef
from tests.helpers import FS_RULE, FakeClock, Reporter, collector_config
from tests.helpers.counting import Counts, counting
from tests.helpers.sinks import outbox_worker

MakeService = Callable[..., CollectorService]


def test_two_hundred_stale_hosts_make_twenty_calls_and_one_umbrella(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FS_RULE], storm={"max_calls": 20, "window": "5m"})
    hosts = [Reporter(f"web{i:03d}", clock) for i in range(200)]
    for host in hosts:
        service.ingest(host.host, host.report({"fs_used_ratio": 0.5}))
    clock.advance(200)  # the switch is down: nothing arrives for 3+ intervals
    service.tick()
    clock.advance(5)  # storm.update_every: the umbrella's texts catch up in one batch
    service.tick()

    open_calls = service.calls("open", None)
    umbrellas = [c for c in open_calls if c.rule == "call_storm"]
    singles = [c for c in open_calls if c.rule == "host_stale"]
    assert len(singles) == 20
    (umbrella,) = umbrellas
    assert umbrella.group == "systems-administration"
    assert umbrella.summary.startswith("[storm] 180 problem(s)")
    assert umbrella.description.count("\n- ") == 180
    assert (
        service.registry.get_sample_value(
            "runwatch_calls_suppressed_total", {"group": "systems-administration"}
        )
        == 180
    )
    # Per-host state is kept for all 200.
    assert sum(1 for h in service.hosts() if h["state"] == "STALE") == 200

    # The switch comes back: every call resolves, the umbrella with the last of its members.
    for host in hosts:
        service.ingest(host.host, host.report({"fs_used_ratio": 0.5}))
    assert service.calls("open", None) == []
    assert service.store.get_call(umbrella.id).status == "resolved"


def test_new_problems_open_calls_again_once_the_window_has_passed(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}], storm={"max_calls": 2, "window": "5m"})
    for i in range(3):
        host = Reporter(f"db{i}", clock)
        service.ingest(host.host, host.report({"fs_used_ratio": 0.97}))
    assert [c.rule for c in service.calls("open", None)].count("call_storm") == 1
    clock.advance(301)
    late = Reporter("db9", clock)
    service.ingest(late.host, late.report({"fs_used_ratio": 0.97}))
    assert any(c.host == "db9" and c.rule == "filesystem_full" for c in service.calls("open", None))


class UmbrellaDesk:
    """A help desk in memory that keeps what runwatch sent to each ticket."""

    name = "desk"

    def __init__(self) -> None:
        self.tickets: dict[str, dict[str, Any]] = {}

    def find(self, fingerprint: str) -> TicketRef | None:
        return None

    def open(self, ticket: NewTicket) -> TicketRef:
        key = f"T{len(self.tickets) + 1}"
        self.tickets[key] = {"summary": ticket.summary, "rule": ticket.rule, "sent": []}
        return TicketRef(key)

    def comment(self, ref: TicketRef, text: str) -> None:
        self.tickets[ref.remote_id]["sent"].append(("comment", text))

    def update(self, ref: TicketRef, *, priority: str, summary: str, text: str) -> None:
        self.tickets[ref.remote_id]["summary"] = summary
        self.tickets[ref.remote_id]["sent"].append(("update", text))

    def resolve(self, ref: TicketRef, text: str, *, close: bool) -> None:
        self.tickets[ref.remote_id]["sent"].append(("resolve", text))

    def reopen(self, ref: TicketRef, text: str) -> None:
        self.tickets[ref.remote_id]["sent"].append(("reopen", text))

    def status(self, ref: TicketRef) -> RemoteStatus:
        return RemoteStatus("new", "new")


@pytest.fixture
def stormy(
    make_service: MakeService, clock: FakeClock
) -> Iterator[tuple[CollectorService, UmbrellaDesk, OutboxWorker]]:
    """A collector that holds calls back past 2 in 5 min, its calls going to an umbrella desk."""
    service = make_service(
        [{**FS_RULE, "for": "0s"}], storm={"max_calls": 2, "window": "5m", "update_every": "5s"}
    )
    service.incidents._external = {"helpdesk": lambda severity: severity}
    desk = UmbrellaDesk()
    with outbox_worker(service, {"helpdesk": desk}, clock=clock) as worker:
        yield service, desk, worker


def umbrella_ticket(desk: UmbrellaDesk) -> dict[str, Any]:
    (ticket,) = (t for t in desk.tickets.values() if t["rule"] == "call_storm")
    return ticket


def test_the_umbrella_ticket_lists_every_held_back_problem_in_one_batched_update(
    stormy: Any, clock: FakeClock
) -> None:
    service, desk, worker = stormy
    hosts = [Reporter(f"db{i:02d}", clock) for i in range(42)]
    counted = {"storm_members": 0}
    real = service.store.storm_list

    def storm_list(*args: Any) -> tuple[int, int, list[str]]:
        counted["storm_members"] += 1
        return real(*args)

    service.store.storm_list = storm_list  # type: ignore[method-assign]
    for host in hosts:
        service.ingest(host.host, host.report({"fs_used_ratio": 0.97}))
    assert counted["storm_members"] == 0, "no list is rebuilt per held-back problem"
    worker.deliver_due()
    ticket = umbrella_ticket(desk)
    assert ticket["summary"].startswith("[storm] 1 problem(s)"), "opened with the first"
    assert ticket["sent"] == []

    clock.advance(4)
    service.tick()
    assert worker.deliver_due() == 0, "at most one update every storm.update_every"
    clock.advance(1)
    service.tick()
    assert worker.deliver_due() == 1
    assert counted["storm_members"] == 1, "the list is read once per update"
    assert ticket["summary"].startswith("[storm] 40 problem(s)")
    ((op, text),) = ticket["sent"]
    assert op == "update"
    assert all(f"[db{i:02d}]" in text for i in range(2, 42)), text
    clock.advance(60)
    service.tick()
    assert worker.deliver_due() == 0, "nothing new, nothing sent"

    for host in hosts[2:5]:  # three held-back problems recover
        service.ingest(host.host, host.report({"fs_used_ratio": 0.50}))
    clock.advance(5)
    service.tick()
    worker.deliver_due()
    assert (
        "40 problem(s) for Systems Administration held back, 3 of them recovered"
        in (ticket["summary"])
    )
    text = ticket["sent"][-1][1]
    assert text.count("[recovered]") == 3
    assert all(f"- [recovered] [db{i:02d}]" in text for i in (2, 3, 4))

    for host in hosts:
        service.ingest(host.host, host.report({"fs_used_ratio": 0.50}))
    worker.deliver_due()
    assert [op for op, _ in ticket["sent"]][-2:] == ["update", "resolve"]
    assert ticket["sent"][-2][1].count("[recovered]") == 40, "the final list, then the resolve"
    assert service.calls("open", None) == []


def test_the_count_of_new_calls_outlives_a_restart(
    make_service: MakeService, clock: FakeClock
) -> None:
    """The count is in the store: a collector restarted within the window does not start
    over, and the storm goes on where it stood."""
    storm = {"max_calls": 2, "window": "5m"}
    first = make_service([{**FS_RULE, "for": "0s"}], storm=storm)
    for i in range(2):
        host = Reporter(f"db{i}", clock)
        first.ingest(host.host, host.report({"fs_used_ratio": 0.97}))
    first.close()
    clock.advance(60)
    again = make_service([{**FS_RULE, "for": "0s"}], storm=storm)
    late = Reporter("db2", clock)
    again.ingest(late.host, late.report({"fs_used_ratio": 0.97}))
    rules = sorted(c.rule for c in again.calls("open", None))
    assert rules == ["call_storm", "filesystem_full", "filesystem_full"]


@pytest.fixture
def two_replicas(
    tmp_path: Any, clock: FakeClock, pg_dsn: str
) -> Iterator[tuple[CollectorService, CollectorService]]:
    """Two collector services sharing one PostgreSQL database, as two replicas do."""
    rules = [{**FS_RULE, "for": "0s"}]
    services = tuple(
        CollectorService(
            collector_config(
                tmp_path / f"replica{n}",
                rules,
                store={"backend": "postgresql", "dsn": pg_dsn},
                storm={"max_calls": 5, "window": "5m"},
            ),
            clock=clock,
        )
        for n in range(2)
    )
    yield services  # type: ignore[misc]
    for service in services:
        service.close()


def test_replicas_count_new_calls_together(
    two_replicas: tuple[CollectorService, CollectorService], clock: FakeClock
) -> None:
    """Twenty hosts breach, half through each replica: five calls and one umbrella, as one
    collector would give, not five through each."""
    a, b = two_replicas
    for i in range(20):
        host = Reporter(f"db{i:02d}", clock)
        (a if i % 2 else b).ingest(host.host, host.report({"fs_used_ratio": 0.97}))
    calls = a.calls("open", None)
    assert sorted(c.rule for c in calls).count("filesystem_full") == 5
    (umbrella,) = [c for c in calls if c.rule == "call_storm"]
    assert len(a.store.storm_members(umbrella.id)) == 15
    clock.advance(301)  # the window has passed, for both
    late = Reporter("db99", clock)
    b.ingest(late.host, late.report({"fs_used_ratio": 0.97}))
    assert any(c.host == "db99" and c.rule == "filesystem_full" for c in a.calls("open", None))


def test_replicas_breached_at_the_same_moment_still_open_max_calls(
    two_replicas: tuple[CollectorService, CollectorService], clock: FakeClock
) -> None:
    """Both replicas open calls at once, from two threads on their own connections: the
    store's lock makes them count one after the other, and there is one umbrella."""
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
        for service, prefix in zip(two_replicas, ("a", "b"), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    calls = two_replicas[0].calls("open", None)
    assert [c.rule for c in calls].count("filesystem_full") == 5
    (umbrella,) = [c for c in calls if c.rule == "call_storm"]
    assert len(two_replicas[1].store.storm_members(umbrella.id)) == 25


def storm_cost(make_service: MakeService, clock: FakeClock, problems: int) -> Counts:
    """What the store is sent while `problems` hosts breach one after another, 0.1 s apart
    (past the first two, every one held back), and then recover the same way."""
    service = make_service(
        [{**FS_RULE, "for": "0s"}], storm={"max_calls": 2, "window": "1h", "update_every": "5s"}
    )
    service.incidents._external = {"helpdesk": lambda severity: severity}  # ticket updates too
    # Agents that report hourly: none goes stale while the others breach.
    hosts = [Reporter(f"db{i:05d}", clock, interval=3600) for i in range(problems + 2)]
    with counting(service.store) as counts:
        for value in (0.97, 0.50):
            for host in hosts:
                service.ingest(host.host, host.report({"fs_used_ratio": value}))
                clock.advance(0.1)
            clock.advance(60)
            service.tick()
    assert service.calls("open", None) == []
    return counts


def test_a_storm_costs_the_store_the_same_per_held_back_problem_however_large_it_grows(
    make_service: MakeService, clock: FakeClock
) -> None:
    """Four times the problems, four times the rows and bytes written and read, not sixteen:
    each held-back problem costs its own row and history entry, and the umbrella's list is
    rewritten less often as it grows (a storm that rewrote its whole list at every update,
    and read the umbrella's texts at every recovery, grew as the square)."""
    small, large = (storm_cost(make_service, clock, n) for n in (200, 800))
    for name in ("statements", "writes", "written_bytes", "read_rows", "read_bytes"):
        ratio = getattr(large, name) / getattr(small, name)
        assert ratio < 4.4, f"{name}: {getattr(small, name)} -> {getattr(large, name)}"
