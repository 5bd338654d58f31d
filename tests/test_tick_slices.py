"""A tick over a large fleet gives the event loop back often, even while it finds the hosts
that are due, and reports that arrive between its steps cannot upset it."""

from __future__ import annotations

from collections.abc import Callable

from collector.app import CollectorService
from tests.helpers import FS_RULE, FakeClock, Reporter


def fleet(
    make_service: Callable[..., CollectorService], clock: FakeClock, hosts: list[str]
) -> CollectorService:
    """A collector whose filesystem rule needs no `for`, after each host reported once."""
    service = make_service([{**FS_RULE, "for": "0s"}])
    for reporter in [Reporter(host, clock) for host in hosts]:
        service.ingest(reporter.host, reporter.report({"fs_used_ratio": 0.5}))
    return service


def test_finding_the_hosts_due_yields_and_survives_reports_in_between(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = fleet(make_service, clock, [f"web{n:04d}" for n in range(3000)])
    clock.advance(61)  # every host is due for its walk
    expected = service.evaluator.due_in_order(clock.now)
    steps = service.evaluator.due_in_order_steps(clock.now, slice_seconds=0.0)
    yields = 0
    newcomers = iter(Reporter(f"db{n:04d}", clock) for n in range(100))
    while True:
        try:
            next(steps)
        except StopIteration as done:
            due = done.value
            break
        yields += 1
        # A report between two steps adds hosts and rule states: the walk goes on.
        newcomer = next(newcomers, None)
        if newcomer is not None:
            service.ingest(newcomer.host, newcomer.report({"fs_used_ratio": 0.5}))
    assert yields >= 3, "with no time to spare, the walk gives the loop back often"
    assert due == expected


def test_a_tick_in_slices_evaluates_what_a_whole_tick_does(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = fleet(make_service, clock, [f"web{n:03d}" for n in range(300)])
    clock.advance(1000)  # all silent: every host goes STALE
    slices = sum(1 for _ in service.tick_slices(slice_seconds=0.0))
    assert slices > 300
    stale = [h for h in service.hosts() if h["state"] == "STALE"]
    assert len(stale) == 300
