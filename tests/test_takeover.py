"""A replica dies and a survivor takes its hosts over in bulk: a few queries for hundreds of
hosts, in chunks between which reports are served, and only the hosts of replicas that are
gone. The bulk read gives what the read of one host gives, on both stores."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.schema import encode
from collector.app import CollectorService
from collector.auth import add_token
from tests.helpers import FS_RULE, FakeClock, Reporter, collector_config
from tests.helpers.counting import counting
from tests.procs import Processes, get_json, wait_for
from tests.test_replicas import Site, post

MakeService = Callable[..., CollectorService]
FAST_FS = {**FS_RULE, "for": "0s"}


def test_many_hosts_read_at_once_are_what_each_read_alone_is(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FAST_FS])
    reporters = [Reporter(f"web{i:02d}", clock) for i in range(6)]
    for number, reporter in enumerate(reporters):
        service.ingest(reporter.host, reporter.report({"fs_used_ratio": 0.5 + number * 0.09}))
    service.retire_host("web05", "alice", "decommissioned")
    names = [r.host for r in reporters] + ["never-reported"]
    store = service.store
    with store.transaction():
        together = store.load_host_snapshots(names)
        alone = {host: store.load_host_snapshot(host) for host in names}
    assert together == alone
    assert together["web05"].retirement is not None and together["web05"].record is None
    assert together["never-reported"].record is None
    assert {s.rule for s in together["web04"].states} >= {"filesystem_full"}
    assert [s.name for s in together["web00"].series] == ["fs_used_ratio"]


@pytest.fixture
def replicas(
    tmp_path: Path, clock: FakeClock, pg_dsn: str
) -> Iterator[Callable[[], CollectorService]]:
    services: list[CollectorService] = []

    def make() -> CollectorService:
        config = collector_config(
            tmp_path / f"replica{len(services)}",
            [FAST_FS],
            store={"backend": "postgresql", "dsn": pg_dsn},
        )
        services.append(CollectorService(config, clock=clock))
        return services[-1]

    yield make
    for service in services:
        service.close()


def die(service: CollectorService) -> None:
    """As kill -9 does to a replica, as far as the database can tell: its connection ends."""
    service.store._db.close()  # type: ignore[attr-defined]


def report_all(service: CollectorService, reporters: list[Reporter], value: float) -> None:
    for reporter in reporters:
        service.ingest(reporter.host, reporter.report({"fs_used_ratio": value}))


def test_a_survivor_takes_over_five_hundred_hosts_in_a_few_queries(
    replicas: Callable[[], CollectorService], clock: FakeClock
) -> None:
    a, b, c = replicas(), replicas(), replicas()
    left = [Reporter(f"b{i:03d}", clock) for i in range(500)]
    alive = [Reporter(f"c{i:03d}", clock) for i in range(20)]
    report_all(b, left, 0.5)
    report_all(b, left[:10], 0.97)  # ten of them with a call open
    report_all(c, alive, 0.5)
    die(b)
    clock.advance(30)
    # The first of b's agents reaches a through the load balancer: reloaded alone.
    a.ingest(left[0].host, left[0].report({"fs_used_ratio": 0.97}))
    assert a.replica.reloaded == 1

    with counting(a.store) as counts:
        chunks = list(a.takeover.slices(clock()))
    assert len(chunks) == 5, "100 hosts at a time, reports served between"
    # Before: each host reloaded by its own report, six statements each (3,000 in all).
    assert counts.statements <= 60, counts.by_kind
    names = [r.host for r in left]
    assert a.replica.current_of(names) == names, "every host of b's is current at a"
    assert not any(r.host in a.fleet.hosts for r in alive), "c is alive: its hosts stay c's"
    assert a.replica.current_of([r.host for r in alive]) == []
    calls = {call.host for call in a.calls("open", None)}
    assert calls == {r.host for r in left[:10]}

    # Their agents now report through a: no reload, the calls carry on.
    report_all(a, left, 0.5)
    assert a.replica.reloaded == 1
    assert a.calls("open", None) == []
    with counting(a.store) as quiet:
        assert list(a.takeover.slices(clock())) == []
    assert quiet.statements == 0, "no reload since: nothing asked"


def test_reports_are_taken_between_the_chunks_of_a_takeover(
    replicas: Callable[[], CollectorService], clock: FakeClock
) -> None:
    a, b = replicas(), replicas()
    left = [Reporter(f"b{i:03d}", clock) for i in range(300)]
    report_all(b, left, 0.5)
    die(b)
    a.ingest(left[0].host, left[0].report({"fs_used_ratio": 0.5}))
    slices = a.takeover.slices(clock())
    next(slices)  # the first chunk of 100 is in
    late = left[250]  # its agent reports before the chunk that holds it
    a.ingest(late.host, late.report({"fs_used_ratio": 0.97}))
    assert a.replica.reloaded == 2
    assert list(slices) == [None, None]
    names = [r.host for r in left]
    assert a.replica.current_of(names) == names
    (call,) = a.calls("open", None)
    assert call.host == late.host, "the report taken meanwhile kept its call"


def test_the_tick_takes_over_and_a_second_survivor_finds_nothing_left(
    replicas: Callable[[], CollectorService], clock: FakeClock
) -> None:
    a, b, c = replicas(), replicas(), replicas()
    left = [Reporter(f"b{i:03d}", clock) for i in range(150)]
    report_all(b, left, 0.5)
    die(b)
    a.ingest(left[0].host, left[0].report({"fs_used_ratio": 0.5}))
    c.ingest(left[1].host, left[1].report({"fs_used_ratio": 0.5}))
    a.tick()  # its tick takes over what b left (but b001, which c moved on since)
    names = [r.host for r in left if r is not left[1]]
    assert a.replica.current_of(names) == names
    assert a.replica.current_of([left[1].host]) == []
    with counting(c.store) as counts:
        c.tick()
    assert not any(r.host in c.fleet.hosts for r in left[2:]), "a holds them now"
    assert "SELECT" in counts.by_kind  # c asked, and found every host held by a live replica


def test_a_report_batch_reloads_its_hosts_together(
    replicas: Callable[[], CollectorService], clock: FakeClock
) -> None:
    a, b = replicas(), replicas()
    reporters = [Reporter(f"web{i:02d}", clock) for i in range(40)]
    report_all(b, reporters, 0.5)
    batch: list[Any] = [(r.host, r.report({"fs_used_ratio": 0.5})) for r in reporters]
    with counting(a.store) as counts:
        results = a.ingestor.ingest_many([report for _, report in batch], clock())
    assert {result.status for result in results} == {"accepted"}
    assert a.replica.reloaded == 40
    # One query per table for the 40 hosts, not one per table and host.
    assert counts.by_kind.get("SELECT", 0) <= 12, counts.by_kind


@pytest.mark.slow
def test_after_kill_9_of_a_replica_the_other_takes_its_hosts_over_at_once(
    tmp_path: Path, processes: Processes, pg_dsn: str
) -> None:
    """Real collector processes: PostgreSQL ends the killed one's connection, and with it its
    lock; the first of its agents to reach the survivor sets the takeover going."""
    site = Site(tmp_path, processes, pg_dsn)
    hosts = [f"web{i:03d}" for i in range(200)]
    tokens = {host: add_token(site.tokens, host) for host in hosts}
    reporters = {host: Reporter(host, time.time) for host in hosts}  # type: ignore[arg-type]
    _, url_a = site.start("a")
    b, url_b = site.start("b")
    for host in hosts:
        assert post(url_b, tokens[host], encode(reporters[host].report({"fs_used_ratio": 0.5})))
    processes.stop(b, signal.SIGKILL)
    first = hosts[0]
    body = encode(reporters[first].report({"fs_used_ratio": 0.5}))
    assert post(url_a, tokens[first], body) == 202
    wait_for(
        "a to take over b's other hosts",
        lambda: "took over 199 host(s)" in site.log("a"),
        timeout=30,
    )
    for host in hosts[1:]:
        body = encode(reporters[host].report({"fs_used_ratio": 0.5}))
        assert post(url_a, tokens[host], body) == 202
    states = {h["host"]: h["state"] for h in get_json(f"{url_a}/api/v1/hosts")}
    assert all(states.get(host) == "OK" for host in hosts), states
