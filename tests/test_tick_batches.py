"""The evaluation tick stores its hosts in a few transactions, not one each, and still judges
every one of them: a silent host is called stale, the healthy ones are walked. On both stores."""

from __future__ import annotations

from collections.abc import Callable

from collector.app import CollectorService
from collector.evaluation.tick import TICK_HOSTS
from tests.helpers import FS_RULE, FakeClock, Reporter

HOSTS = 150


def commits(service: CollectorService) -> float:
    return service.registry.get_sample_value("runwatch_store_commit_seconds_count") or 0.0


def test_a_tick_over_many_hosts_commits_a_few_times_and_judges_each(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service([FS_RULE])
    reporters = [Reporter(f"web{n:03d}", clock) for n in range(HOSTS)]
    for reporter in reporters:
        service.ingest(reporter.host, reporter.report({"fs_used_ratio": 0.5}))
    service.tick()
    # One interval on, every host is due for its walk; one of them has fallen silent.
    clock.advance(60.0)
    for reporter in reporters[1:]:
        service.ingest(reporter.host, reporter.report({"fs_used_ratio": 0.5}))
    clock.advance(180.0)
    for reporter in reporters[1:]:
        service.ingest(reporter.host, reporter.report({"fs_used_ratio": 0.5}))
    before = commits(service)
    for _ in service.tick_slices(float("inf")):  # slices of any length: whole chunks
        pass
    spent = commits(service) - before
    # The hosts in transactions of TICK_HOSTS, and a few more for the tick's own
    # bookkeeping: far from one per host.
    assert spent <= -(-HOSTS // TICK_HOSTS) + 3, spent
    stale = {call.host for call in service.calls("open", None)}
    assert stale == {"web000"}, stale
