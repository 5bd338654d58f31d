"""Forecasts: a filesystem that fills at a steady rate gets a call that says when it will be
full, to within 10 %; history is downsampled, bounded, and survives a restart."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from checks.schema import Report
from collector.app import CollectorService
from collector.evaluation.forecast import linear_forecast
from tests.helpers import FakeClock
from tests.helpers.reports import check_run, measurement, wire_report

MakeService = Callable[..., CollectorService]
GIB = 1024**3

FILLS_UP = {
    "name": "filesystem_fills_up",
    "metric": "fs_free_bytes",
    "owner": "systems-administration",
    "forecast": {"reaches": 0, "over": "6h", "warning": "3d", "critical": "1d"},
}
INODES_RUN_OUT = {
    "name": "filesystem_inodes_run_out",
    "metric": "fs_inodes_free",
    "owner": "systems-administration",
    "forecast": {"reaches": 0, "over": "6h", "warning": "3d", "critical": "1d"},
}


class FillingDisk:
    """An agent whose filesystem loses `rate` bytes (and inodes) per second, with some jitter."""

    def __init__(self, clock: FakeClock, free: float, rate: float, interval: float = 300) -> None:
        self.clock = clock
        self.start = clock()
        self.free = free
        self.rate = rate
        self.interval = interval
        self.seq = 0

    def free_at(self, now: float) -> float:
        # A wobble of ±0.1 % of the size, as real filesystems have: the fit sees through it.
        return self.free - self.rate * (now - self.start) + 0.001 * self.free * math.sin(now / 977)

    @property
    def full_at(self) -> float:
        return self.start + self.free / self.rate

    def report(self) -> Report:
        self.seq += 1
        now = self.clock()
        labels = {"mountpoint": "/srv"}
        free = self.free_at(now)
        measurements = [
            measurement("filesystem", "fs_free_bytes", free, now, unit="bytes", labels=labels),
            measurement("filesystem", "fs_inodes_free", free / 65536, now, labels=labels),
        ]
        runs = [check_run("filesystem", now, self.interval)]
        return wire_report(
            "db01", self.seq, now, measurements, runs, interval=self.interval, boot_id="b"
        )


def run_for(service: CollectorService, disk: FillingDisk, seconds: float) -> None:
    end = disk.clock() + seconds
    while disk.clock() < end:
        service.ingest("db01", disk.report())
        disk.clock.advance(disk.interval)
    service.tick()


def test_a_steadily_filling_filesystem_gets_a_call_with_the_right_time(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FILLS_UP, INODES_RUN_OUT])
    # 60 GiB free, 1 GiB/h gone: full in 60 h, inside the 3-day warning.
    disk = FillingDisk(clock, free=60 * GIB, rate=GIB / 3600)
    run_for(service, disk, 3600)
    assert service.calls(None, None) == [], "an hour of history is too little to judge"
    run_for(service, disk, 6 * 3600)
    calls = {c.rule: c for c in service.calls("open", None)}
    assert set(calls) == {"filesystem_fills_up", "filesystem_inodes_run_out"}
    call = calls["filesystem_fills_up"]
    assert call.severity == "WARNING"
    assert call.labels == {"mountpoint": "/srv"}
    assert "(warning <= 3 d)" in call.summary

    # The predicted time, as the call states it, within 10 % of the true time left.
    stated = re.search(r"reaches 0 B at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", call.description)
    assert stated is not None, call.description
    predicted = (
        datetime.strptime(stated.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    )
    opened = call.opened_at
    assert abs(predicted - disk.full_at) <= 0.10 * (disk.full_at - opened)
    # And the growth rate: 1 GiB per hour.
    rate = re.search(r"falls by ([\d.]+) GiB/h \(([\d.]+) GiB/day\)", call.description)
    assert rate is not None, call.description
    assert float(rate.group(1)) == pytest.approx(1.0, rel=0.1)
    assert float(rate.group(2)) == pytest.approx(24.0, rel=0.1)
    assert "Recent measurements:" in call.description
    assert call.description.rstrip().endswith(" GiB"), "recent values in the series' unit"
    key = ("filesystem_fills_up", "db01", '{"mountpoint":"/srv"}')
    left = service.fleet.states[key].value
    assert left is not None
    assert abs(left - (disk.full_at - clock())) <= 0.10 * (disk.full_at - clock())


def test_the_call_turns_critical_as_the_day_comes_and_resolves_when_space_is_freed(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FILLS_UP], history={"resolution": "5m", "retention": "1d"})
    disk = FillingDisk(clock, free=30 * GIB, rate=GIB / 3600)  # full in 30 h
    run_for(service, disk, 8 * 3600)  # 22 h left: critical
    (call,) = service.calls("open", None)
    assert call.severity == "CRITICAL"
    # Someone deletes old logs: plenty of space, and it no longer shrinks.
    disk.free, disk.rate, disk.start = 500 * GIB, 1e-9, clock()
    run_for(service, disk, 7 * 3600)
    assert service.store.get_call(call.id).status == "resolved"


def test_a_growing_or_flat_filesystem_makes_no_forecast_call(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FILLS_UP])
    disk = FillingDisk(clock, free=60 * GIB, rate=-GIB / 3600)
    run_for(service, disk, 8 * 3600)
    assert service.calls(None, None) == []


def test_history_is_downsampled_bounded_and_reloaded(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FILLS_UP], history={"resolution": "30m", "retention": "6h"})
    disk = FillingDisk(clock, free=60 * GIB, rate=GIB / 3600, interval=60)
    run_for(service, disk, 2 * 3600)
    points = list(service.store.load_history(0))
    series = {(p.name, p.labels_key) for p in points}
    assert series == {("fs_free_bytes", '{"mountpoint":"/srv"}')}, "only what forecasts watch"
    assert 4 <= len(points) <= 5, "one point per series per 30 minutes, not one per report"
    run_for(service, disk, 10 * 3600)
    oldest = min(p.timestamp for p in service.store.load_history(0))
    assert oldest >= clock() - 6 * 3600 - 1800, "older points are pruned"

    service.close()
    again = make_service([FILLS_UP], history={"resolution": "30m", "retention": "6h"})
    assert sum(len(p) for p in again.fleet.history.values()) >= 10
    again.ingest("db01", disk.report())
    assert [c.rule for c in again.calls("open", None)] == ["filesystem_fills_up"]


@pytest.mark.parametrize(
    ("points", "target", "left"),
    [
        pytest.param([(0, 100), (60, 90), (120, 80)], 0, 480, id="falling to zero"),
        pytest.param([(0, 0.5), (60, 0.6), (120, 0.7)], 1.0, 180, id="rising to one"),
        pytest.param([(0, 0.97), (60, 0.99), (120, 1.01)], 1.0, 0, id="already past: now"),
        pytest.param([(0, 100), (60, 110), (120, 120)], 0, None, id="moving away"),
    ],
)
def test_linear_forecast(
    points: list[tuple[float, float]], target: float, left: float | None
) -> None:
    found = linear_forecast(points, target, min_points=3, min_span=60)
    assert found is not None
    assert found.seconds_left == (pytest.approx(left) if left is not None else None)


def test_linear_forecast_needs_enough_history() -> None:
    assert linear_forecast([(0, 1), (60, 2)], 0, min_points=3, min_span=0) is None
    assert linear_forecast([(0, 3), (1, 2), (2, 1)], 0, min_points=3, min_span=60) is None
