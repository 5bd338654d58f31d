"""History of every ruled series for the console's graphs: one step per series per resolution
on both stores, with each step's mean, lowest and highest value; read back by host and series;
pruned by retention a few hosts per tick."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from collector.app import CollectorService
from collector.evaluation import evaluator
from collector.incidents.calls import labels_key
from collector.store.records import HistoryStep
from collector.view.history import StepKeeper, series_id
from tests.helpers import FS_RULE, FakeClock, Reporter

MakeService = Callable[..., CollectorService]
ROOT = labels_key({"mountpoint": "/"})
FS = series_id("fs_used_ratio", ROOT)


def report_values(
    service: CollectorService, reporter: Reporter, clock: FakeClock, values: list[float]
) -> None:
    """One report a minute, each with the next value (and a series no rule watches)."""
    for value in values:
        service.ingest(reporter.host, reporter.report({"fs_used_ratio": value, "unruled": 1.0}))
        clock.advance(60)


def test_each_step_keeps_its_mean_lowest_and_highest_value(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service(history={"resolution": "5m", "retention": "1d"})
    reporter = Reporter("web01", clock)
    start = clock.now  # a multiple of 5 min
    # Two whole steps of five reports, then one report that opens a third step.
    report_values(service, reporter, clock, [0.5, 0.6, 0.7, 0.5, 0.7, 0.4, 0.4, 0.4, 0.4, 0.4])
    report_values(service, reporter, clock, [0.9])

    steps = service.store.read_steps("web01", start, clock.now)

    assert [(s.at, s.series) for s in steps] == [(start, FS), (start + 300, FS)], (
        "only the ruled series, one row per closed step"
    )
    first, second = steps
    assert first.value == pytest.approx(0.6)
    # Lowest and highest are kept as 4-byte floats: they draw a band.
    assert (first.low, first.high) == (pytest.approx(0.5), pytest.approx(0.7))
    assert second == HistoryStep("web01", FS, int(start + 300), 0.4, None, None), (
        "a step of equal values keeps no lowest and highest"
    )
    assert service.fleet.steps.current(("web01", "fs_used_ratio", ROOT)) == HistoryStep(
        "web01", FS, int(start + 600), 0.9
    ), "the step in progress stays in memory"


def test_steps_are_read_by_host_time_and_series(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service(
        [FS_RULE, {**FS_RULE, "name": "memory_full", "metric": "memory_used_ratio"}],
        history={"resolution": "1m", "retention": "1d"},
    )
    web, db = Reporter("web01", clock), Reporter("db01", clock)
    start = clock.now
    for minute in range(4):
        for reporter in (web, db):
            values = {"fs_used_ratio": 0.1 * minute, "memory_used_ratio": 0.5}
            service.ingest(reporter.host, reporter.report(values))
        clock.advance(60)

    everything = service.store.read_steps("web01", start, clock.now)
    assert len(everything) == 6, "3 closed steps of 2 series"
    assert {s.host for s in everything} == {"web01"}
    only_fs = service.store.read_steps("web01", start + 60, clock.now, series=FS)
    assert [(s.at, s.value) for s in only_fs] == [(start + 60, 0.1), (start + 120, 0.2)]


def test_no_graph_history_when_switched_off(make_service: MakeService, clock: FakeClock) -> None:
    service = make_service(history={"resolution": "1m", "retention": "1d", "graphs": False})
    reporter = Reporter("web01", clock)
    report_values(service, reporter, clock, [0.5, 0.6, 0.7])
    assert service.store.read_steps("web01", 0, clock.now) == []
    assert len(service.fleet.steps) == 0


def test_values_that_are_not_finite_are_left_out() -> None:
    keeper = StepKeeper()
    key = ("web01", "fs_used_ratio", ROOT)
    closed = [keeper.add(key, 60 * n, v, 60) for n, v in enumerate([0.5, math.nan, 0.6, math.inf])]
    assert closed == [None, None, HistoryStep("web01", FS, 0, 0.5), None]
    assert keeper.current(key) == HistoryStep("web01", FS, 120, 0.6)


def test_history_is_pruned_by_retention_a_few_hosts_per_tick(
    make_service: MakeService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluator, "PRUNE_HOSTS", 2)
    service = make_service(history={"resolution": "1m", "retention": "10m"})
    reporters = [Reporter(f"host{n}", clock) for n in range(5)]
    for _ in range(20):  # 20 minutes of reports
        for reporter in reporters:
            service.ingest(reporter.host, reporter.report({"fs_used_ratio": 0.5}))
        clock.advance(60)
    cutoff = clock.now - 600

    service.tick()  # the walk's first slice: host0 and host1
    kept = {r.host: service.store.read_steps(r.host, 0, clock.now) for r in reporters}
    assert min(s.at for s in kept["host0"]) >= cutoff
    assert min(s.at for s in kept["host1"]) >= cutoff
    assert min(s.at for s in kept["host4"]) < cutoff, "not yet its turn"

    service.tick()
    service.tick()
    for reporter in reporters:
        steps = service.store.read_steps(reporter.host, 0, clock.now)
        assert steps, "the last 10 minutes stay"
        assert min(s.at for s in steps) >= cutoff


def test_a_series_that_is_gone_keeps_its_last_step(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service(history={"resolution": "5m", "retention": "1d"})
    reporter = Reporter("web01", clock)
    start = clock.now
    report_values(service, reporter, clock, [0.5, 0.7])
    # Only other series from now on: after its staleness limit the series is dropped.
    for _ in range(10):
        service.ingest(reporter.host, reporter.report({"unruled": 1.0}))
        clock.advance(60)
        service.tick()
    assert ("web01", "fs_used_ratio", ROOT) not in service.fleet.series
    [step] = service.store.read_steps("web01", start, clock.now, series=FS)
    assert (step.at, step.value) == (start, 0.6)
    assert (step.low, step.high) == (pytest.approx(0.5), pytest.approx(0.7))


def test_the_keeper_ignores_a_value_from_an_earlier_step() -> None:
    keeper = StepKeeper()
    key = ("web01", "fs_used_ratio", ROOT)
    assert keeper.add(key, 600, 0.5, 300) is None
    assert keeper.add(key, 299, 0.9, 300) is None, "a clock stepped back"
    closed = keeper.add(key, 900, 0.6, 300)
    assert closed == HistoryStep("web01", FS, 600, 0.5)
    keeper.add(("db01", "fs_used_ratio", ROOT), 900, 0.1, 300)
    keeper.keep_only({key})
    assert keeper.close_all() == [HistoryStep("web01", FS, 900, 0.6)]
    assert len(keeper) == 0


def test_series_ids_are_stable_and_distinct() -> None:
    # Stored rows name series by this id: a change would orphan every stored step.
    assert series_id("fs_used_ratio", '{"mountpoint":"/"}') == -7064169593755718110
    assert series_id("fs_used_ratio", labels_key({"mountpoint": "/var"})) != FS
    assert series_id("fs_used_ratio", ROOT) != series_id("fs_used_ratiox", ROOT)


def test_the_steps_in_progress_are_stored_when_the_collector_stops(
    make_service: MakeService, clock: FakeClock
) -> None:
    history = {"resolution": "5m", "retention": "1d"}
    service = make_service(history=history)
    start = clock.now
    report_values(service, Reporter("web01", clock), clock, [0.5, 0.7])
    assert service.store.read_steps("web01", start, clock.now) == []
    service.close()

    again = make_service(history=history)
    [step] = again.store.read_steps("web01", start, clock.now)
    assert (step.at, step.value) == (start, 0.6)
    assert (step.low, step.high) == (pytest.approx(0.5), pytest.approx(0.7))


def test_points_written_apart_for_one_step_are_all_kept_and_the_last_wins(
    make_service: MakeService,
) -> None:
    """A check that reports apart from the others, or a second replica, writes the same host
    and step again: the row gains the new points, and a series written twice reads as the
    later write."""
    store = make_service().store
    other = series_id("memory_used_ratio", "{}")
    with store.transaction():
        store.add_steps([HistoryStep("web01", FS, 600, 0.5), HistoryStep("db01", FS, 600, 0.1)])
    with store.transaction():
        store.add_steps([HistoryStep("web01", other, 600, 0.25, 0.125, 0.5)])
    with store.transaction():
        store.add_steps([HistoryStep("web01", FS, 600, 0.75), HistoryStep("web01", FS, 900, 1.0)])

    assert store.read_steps("web01", 0, 2000) == [
        HistoryStep("web01", FS, 600, 0.75),
        HistoryStep("web01", other, 600, 0.25, 0.125, 0.5),
        HistoryStep("web01", FS, 900, 1.0),
    ]
    assert store.read_steps("web01", 600, 600, series=other) == [
        HistoryStep("web01", other, 600, 0.25, 0.125, 0.5)
    ]
    assert store.read_steps("db01", 0, 2000) == [HistoryStep("db01", FS, 600, 0.1)]
