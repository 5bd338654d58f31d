"""Series limits: one agent token cannot make the collector hold, store or expose more series
than its limits allow, and cannot stop its own series from being pruned."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from agent.shipper import ReportSender, ReportShipper, SendResult
from agent.spool import Spool
from checks.schema import SCHEMA_VERSION, CheckRun, Report, encode
from checks.settings import ConfigError
from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import add_token
from tests.fakes import JSONHandler
from tests.helpers import FakeClock, collector_config
from tests.helpers.reports import check_run, measurement, wire_report

MakeService = Callable[..., CollectorService]
DAY = 86400.0


def report(
    host: str, seq: int, now: float, values: dict[str, float], *, interval: float = 60.0
) -> Report:
    """A report of `disk_free_bytes` series, one per label value in `values`."""
    measurements = [
        measurement("disk", "disk_free_bytes", value, now, unit="bytes", labels={"device": device})
        for device, value in values.items()
    ]
    return wire_report(
        host, seq, now, measurements, [check_run("disk", now, interval)], interval=interval
    )


def devices(first: int, count: int, value: float = 1.0) -> dict[str, float]:
    return {f"d{i:04d}": value for i in range(first, first + count)}


def refused(service: CollectorService, host: str, limit: str) -> float:
    return (
        service.registry.get_sample_value(
            "runwatch_series_refused_total", {"host": host, "limit": limit}
        )
        or 0.0
    )


def stored(service: CollectorService, host: str) -> dict[str, float]:
    """The host's series in the store, by device label."""
    return {s.labels["device"]: s.value for s in service.store.load_series() if s.host == host}


def exposed(service: CollectorService, host: str) -> int:
    text = service.metrics.render().decode()
    return sum(
        1
        for line in text.splitlines()
        if line.startswith(f'runwatch_disk_free_bytes{{host="{host}"')
    )


def test_new_series_past_the_host_limit_are_dropped_counted_and_never_stored(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([], limits={"max_series_per_host": 10})
    first = service.ingest("web01", report("web01", 1, clock(), devices(0, 8)))
    assert (first.status, first.measurements, first.warnings) == ("accepted", 8, ())
    # 8 known series with new values, and 5 new ones: room for 2 of them.
    second = service.ingest("web01", report("web01", 2, clock(), devices(0, 13, 2.0)))
    assert second.status == "accepted"
    assert second.measurements == 10
    (warning,) = second.warnings
    assert warning.code == "max_series_per_host"
    assert warning.dropped == 3
    assert "limits.max_series_per_host" in warning.message and "10" in warning.message
    assert refused(service, "web01", "max_series_per_host") == 3
    assert stored(service, "web01") == devices(0, 10, 2.0), "the first 10 devices, updated"
    assert len(service.fleet.by_host["web01"]) == 10
    assert exposed(service, "web01") == 10


def test_a_host_at_its_limit_keeps_every_series_it_has(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([], limits={"max_series_per_host": 5})
    service.ingest("web01", report("web01", 1, clock(), devices(0, 5)))
    # A hostile burst of new label values first, then the honest report again.
    service.ingest("web01", report("web01", 2, clock(), devices(100, 50)))
    clock.advance(60)
    honest = service.ingest("web01", report("web01", 3, clock(), devices(0, 5, 7.0)))
    assert (honest.measurements, honest.warnings) == (5, ())
    assert stored(service, "web01") == devices(0, 5, 7.0)
    assert refused(service, "web01", "max_series_per_host") == 50


def test_the_fleet_limit_holds_across_hosts_and_one_batch(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([], limits={"max_series": 12, "max_series_per_host": 100})
    service.ingest("web01", report("web01", 1, clock(), devices(0, 8)))
    outcomes = service.ingest_many(
        [
            ("db01", report("db01", 1, clock(), devices(0, 3)), None),
            ("app01", report("app01", 1, clock(), devices(0, 3)), None),
        ]
    )
    assert [o.measurements for o in outcomes] == [3, 1]  # type: ignore[union-attr]
    assert len(service.fleet.series) == 12
    assert len(list(service.store.load_series())) == 12
    assert refused(service, "app01", "max_series") == 2
    (warning,) = outcomes[1].warnings  # type: ignore[union-attr]
    assert warning.code == "max_series" and "limits.max_series" in warning.message
    # Known series are still updated when the fleet is full.
    again = service.ingest("web01", report("web01", 2, clock(), devices(0, 8, 5.0)))
    assert (again.measurements, again.warnings) == (8, ())


def test_the_limit_counts_what_a_restart_loads(tmp_path: Path, clock: FakeClock) -> None:
    config = collector_config(tmp_path, [], limits={"max_series_per_host": 6})
    service = CollectorService(config, clock=clock)
    service.ingest("web01", report("web01", 1, clock(), devices(0, 6)))
    service.close()
    service = CollectorService(config, clock=clock)
    try:
        result = service.ingest("web01", report("web01", 2, clock(), devices(0, 9)))
        assert result.measurements == 6
        assert refused(service, "web01", "max_series_per_host") == 3
    finally:
        service.close()


def test_new_check_names_past_the_host_limit_are_dropped_and_counted(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([], limits={"max_checks_per_host": 3})

    def checks(seq: int, names: list[str]) -> Report:
        now = clock()
        return Report(
            schema_version=SCHEMA_VERSION,
            host="web01",
            agent_version="test",
            boot_id="boot-1",
            seq=seq,
            sent_at=now,
            interval_seconds=60,
            checks=[
                CheckRun(
                    check=name, type="x", interval_seconds=60, started_at=now, duration_seconds=0.0
                )
                for name in names
            ],
        )

    service.ingest("web01", checks(1, ["disk", "cpu"]))
    result = service.ingest("web01", checks(2, ["disk", "cpu", "a", "b", "c"]))
    (warning,) = result.warnings
    assert (warning.code, warning.dropped) == ("max_checks_per_host", 2)
    assert sorted(service.fleet.hosts["web01"].checks) == ["a", "cpu", "disk"]
    assert sorted(s.check for s in service.store.load_check_statuses()) == ["a", "cpu", "disk"]
    assert refused(service, "web01", "max_checks_per_host") == 2


def test_interval_seconds_is_believed_up_to_a_day_for_pruning_and_staleness(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([])
    forever = 1e8
    first = service.ingest("web01", report("web01", 1, clock(), devices(0, 3), interval=forever))
    (warning,) = first.warnings
    assert warning.code == "max_interval" and "86400" in warning.message
    assert service.fleet.hosts["web01"].record.interval_seconds == DAY
    assert service.fleet.hosts["web01"].checks["disk"].interval_seconds == DAY
    # Only d0000 goes on being reported: the others vanish after 3 believed intervals.
    for seq in range(2, 6):
        clock.advance(DAY)
        service.ingest("web01", report("web01", seq, clock(), devices(0, 1), interval=forever))
        service.tick()
    assert stored(service, "web01") == devices(0, 1)
    assert list(service.fleet.by_host["web01"]) == [
        ("web01", "disk_free_bytes", '{"device":"d0000"}')
    ]
    clock.advance(3 * DAY + 1)
    service.tick()
    assert service.hosts("web01")[0]["state"] == "STALE"


def test_limits_are_validated_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_series_per_host"):
        collector_config(tmp_path, [], limits={"max_series_per_host": 0})
    with pytest.raises(ConfigError, match="max_interval"):
        collector_config(tmp_path, [], limits={"max_interval": "0s"})
    with pytest.raises(ConfigError, match="max_checks_per_host"):
        collector_config(tmp_path, [], limits={"max_checks_per_host": 0})


# -- the answer, and the agent that reads it ----------------------------------------------------


@pytest.fixture
def api(make_service: MakeService) -> Iterator[tuple[TestClient[Any], CollectorService, str]]:
    service = make_service([], limits={"max_series_per_host": 4})
    token = add_token(service.config.tokens_file, "web01")
    with TestClient(create_app(service)) as client:
        yield client, service, token


def test_the_202_answer_names_the_limit_and_the_collector_logs_it_once(
    api: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    client, service, token = api
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    caplog.set_level(logging.WARNING, logger="collector.ingest.admission")
    answers = []
    for seq in range(1, 4):
        response = client.post(
            "/api/v1/reports",
            headers=headers,
            content=encode(report("web01", seq, clock(), devices(seq, 5))),
        )
        assert response.status_code == 202
        answers.append(response.json())
    assert answers[0] == {
        "status": "accepted",
        "seq": 1,
        "warnings": [
            {
                "code": "max_series_per_host",
                "dropped": 1,
                "message": answers[0]["warnings"][0]["message"],
            }
        ],
    }
    assert [a["warnings"][0]["dropped"] for a in answers] == [1, 2, 3]
    assert refused(service, "web01", "max_series_per_host") == 6
    logged = [r for r in caplog.records if "max_series_per_host" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert "web01" in logged[0].getMessage()


def test_the_shipper_logs_each_warning_once_per_condition(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_reports=100)
    over = ({"code": "max_series_per_host", "message": "3 new series dropped", "dropped": 3},)
    answers = iter([over, over, over, (), over])
    for _ in range(5):
        seq = spool.next_seq()
        spool.put(seq, b"{}")
    shipper = ReportShipper(spool, lambda body: SendResult(202, "ok", warnings=next(answers)))
    caplog.set_level(logging.INFO, logger="agent.shipper")
    assert shipper.drain_once() == 5
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.shipper"]
    warned = [line for line in lines if "3 new series dropped" in line]
    assert len(warned) == 2, lines  # once, and once more after it had cleared
    assert any("max_series_per_host" in line and "no longer" in line for line in lines), lines


def test_the_agent_reads_warnings_from_the_answer(tmp_path: Path) -> None:
    body = json.dumps(
        {
            "status": "accepted",
            "seq": 1,
            "warnings": [{"code": "max_series", "message": "full", "dropped": 2}],
        }
    ).encode()

    class Handler(JSONHandler):
        def answer(self, _: bytes) -> tuple[int, bytes]:
            return 202, body

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sender = ReportSender(f"http://127.0.0.1:{server.server_address[1]}", None, 5.0)
        result = sender.send(b"{}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.delivered
    assert result.warnings == ({"code": "max_series", "message": "full", "dropped": 2},)
