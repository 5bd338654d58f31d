"""/metrics: every family the collector declares is emitted, with the right values."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from prometheus_client import generate_latest

from collector.service import CollectorService
from tests.conftest import FS_RULE, FakeClock, Reporter, tool

MakeService = Callable[..., CollectorService]


def sample(service: CollectorService, name: str, **labels: str) -> float | None:
    return service.registry.get_sample_value(name, labels)


@pytest.fixture
def busy(make_service: MakeService, clock: FakeClock) -> CollectorService:
    """A collector that has seen a call open, change severity, resolve, and a host go stale."""
    service = make_service([{**FS_RULE, "for": "0s"}])
    web, db = Reporter("web01", clock), Reporter("db01", clock)
    service.ingest("web01", web.report({"fs_used_ratio": 0.90}))
    service.ingest("web01", web.report({"fs_used_ratio": 0.97}))
    service.ingest("web01", web.report({"fs_used_ratio": 0.50}))
    service.ingest("db01", db.report({"fs_used_ratio": 0.96}))
    clock.advance(200)
    service.ingest("web01", web.report({"fs_used_ratio": 0.50}))
    service.tick()  # db01 has been silent for 200 s > 3 x 60 s: STALE
    return service


def test_call_counters_and_open_calls_by_group(busy: CollectorService) -> None:
    group = "systems-administration"
    assert sample(busy, "runwatch_calls_opened_total", group=group) == 3  # web01, db01, stale
    assert sample(busy, "runwatch_calls_updated_total", group=group) == 1
    assert sample(busy, "runwatch_calls_resolved_total", group=group) == 1
    assert sample(busy, "runwatch_calls_reopened_total", group=group) == 0
    assert sample(busy, "runwatch_calls_open", group=group) == 2
    assert sample(busy, "runwatch_calls_open", group="computer-operations") == 0


def test_host_and_rule_states(busy: CollectorService, clock: FakeClock) -> None:
    assert sample(busy, "runwatch_host_state", host="web01", state="OK") == 1
    assert sample(busy, "runwatch_host_state", host="web01", state="CRITICAL") == 0
    assert sample(busy, "runwatch_host_state", host="db01", state="STALE") == 1
    assert sample(busy, "runwatch_host_last_report_timestamp_seconds",
                  host="web01") == clock.now
    labels = {"host": "db01", "rule": "filesystem_full", "series": "mountpoint=/"}
    assert sample(busy, "runwatch_rule_severity", **labels) == 2
    assert sample(busy, "runwatch_rule_severity", host="db01", rule="host_stale",
                  series="") == 4
    assert sample(busy, "runwatch_check_failing", host="web01", check="filesystem") == 0


def test_ingest_counters_and_latency(busy: CollectorService) -> None:
    assert sample(busy, "runwatch_reports_ingested_total") == 5
    assert sample(busy, "runwatch_measurements_ingested_total") == 5
    assert sample(busy, "runwatch_ingest_duration_seconds_count") == 5
    assert sample(busy, "runwatch_reports_rejected_total", reason="invalid") == 0


def test_measurements_as_gauges_and_switched_off(
        busy: CollectorService, make_service: MakeService, clock: FakeClock) -> None:
    assert sample(busy, "runwatch_fs_used_ratio", host="web01", check="filesystem",
                  mountpoint="/") == 0.5
    quiet = make_service([{**FS_RULE, "for": "0s"}], metrics={"measurements": False})
    quiet.ingest("web01", Reporter("web01", clock).report({"fs_used_ratio": 0.5}))
    assert sample(quiet, "runwatch_fs_used_ratio", host="web01", check="filesystem",
                  mountpoint="/") is None
    assert sample(quiet, "runwatch_host_state", host="web01", state="OK") == 1


def test_promtool_finds_the_exposition_clean(busy: CollectorService) -> None:
    promtool = tool("promtool", "prometheus")
    exposition = generate_latest(busy.registry)
    result = subprocess.run([promtool, "check", "metrics"], input=exposition,
                            capture_output=True, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
