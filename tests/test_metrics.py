"""/metrics: every family the collector declares is emitted, with the right values."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Generator

import pytest

from collector.app import CollectorService
from tests.helpers import FS_RULE, FakeClock, Reporter, tool
from tests.helpers.cases import cases
from tests.procs import promtool_check

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
    assert sample(busy, "runwatch_host_last_report_timestamp_seconds", host="web01") == clock.now
    labels = {"host": "db01", "rule": "filesystem_full", "series": "mountpoint=/"}
    assert sample(busy, "runwatch_rule_severity", **labels) == 2
    assert sample(busy, "runwatch_rule_severity", host="db01", rule="host_stale", series="") == 4
    assert sample(busy, "runwatch_check_failing", host="web01", check="filesystem") == 0


def test_ingest_counters_and_latency(busy: CollectorService) -> None:
    assert sample(busy, "runwatch_reports_ingested_total") == 5
    assert sample(busy, "runwatch_measurements_ingested_total") == 5
    assert sample(busy, "runwatch_ingest_duration_seconds_count") == 5
    assert sample(busy, "runwatch_reports_rejected_total", reason="invalid") == 0


def test_measurements_as_gauges_and_switched_off(
    busy: CollectorService, make_service: MakeService, clock: FakeClock
) -> None:
    assert (
        sample(busy, "runwatch_fs_used_ratio", host="web01", check="filesystem", mountpoint="/")
        == 0.5
    )
    quiet = make_service([{**FS_RULE, "for": "0s"}], metrics={"measurements": False})
    quiet.ingest("web01", Reporter("web01", clock).report({"fs_used_ratio": 0.5}))
    assert (
        sample(quiet, "runwatch_fs_used_ratio", host="web01", check="filesystem", mountpoint="/")
        is None
    )
    assert sample(quiet, "runwatch_host_state", host="web01", state="OK") == 1


def test_promtool_finds_the_exposition_clean(busy: CollectorService) -> None:
    promtool = tool("promtool", "prometheus")
    exposition = busy.metrics.render()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, check=False
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_rules_carry_their_owner_and_thresholds(busy: CollectorService) -> None:
    info = {
        "rule": "filesystem_full",
        "metric": "fs_used_ratio",
        "group": "systems-administration",
        "direction": "above",
    }
    assert sample(busy, "runwatch_rule_info", **info) == 1
    assert (
        sample(
            busy,
            "runwatch_rule_info",
            rule="host_stale",
            metric="",
            group="systems-administration",
            direction="above",
        )
        == 1
    )
    for level, value in (("warning", 0.85), ("critical", 0.95), ("clear", 0.80)):
        assert (
            sample(
                busy,
                "runwatch_rule_threshold",
                rule="filesystem_full",
                metric="fs_used_ratio",
                level=level,
            )
            == value
        )


def test_open_calls_are_listed_with_their_id_group_and_severity(busy: CollectorService) -> None:
    calls = {(c.host, c.rule): c.id for c in busy.calls("open", None)}

    def severity(rule: str, series: str) -> float | None:
        call = str(calls[("db01", rule)])
        labels = {"rule": rule, "series": series, "group": "systems-administration", "call": call}
        return sample(busy, "runwatch_open_call_severity", host="db01", **labels)

    assert severity("filesystem_full", "mountpoint=/") == 2
    assert severity("host_stale", "") == 4
    text = busy.metrics.render().decode()
    assert 'runwatch_open_call_severity{host="web01"' not in text, "web01's call is resolved"


def test_time_to_resolve_is_observed_per_group(make_service: MakeService, clock: FakeClock) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}])
    web = Reporter("web01", clock)
    service.ingest("web01", web.report({"fs_used_ratio": 0.97}))
    clock.advance(1200)
    service.ingest("web01", web.report({"fs_used_ratio": 0.50}))
    group = "systems-administration"
    assert sample(service, "runwatch_call_resolve_seconds_count", group=group) == 1
    assert sample(service, "runwatch_call_resolve_seconds_sum", group=group) == 1200
    assert sample(service, "runwatch_call_resolve_seconds_bucket", group=group, le="900.0") == 0
    assert sample(service, "runwatch_call_resolve_seconds_bucket", group=group, le="1800.0") == 1
    assert sample(service, "runwatch_call_acknowledge_seconds_count", group=group) == 0
    assert (
        sample(service, "runwatch_call_resolve_seconds_count", group="computer-operations") == 0
    ), "every group's series from the start"


def test_store_times_its_transactions(busy: CollectorService) -> None:
    count = sample(busy, "runwatch_store_transaction_seconds_count")
    assert count is not None and count >= 5, "one per report at least"
    assert sample(busy, "runwatch_store_commit_seconds_count") == count
    total = sample(busy, "runwatch_store_transaction_seconds_sum")
    commit = sample(busy, "runwatch_store_commit_seconds_sum")
    assert total is not None and commit is not None and 0 < commit <= total


def test_a_report_that_fails_inside_the_collector_is_counted(
    make_service: MakeService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service()
    web = Reporter("web01", clock)

    def broken(*_: object) -> None:
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(service.store, "save_series", broken)
    with pytest.raises(RuntimeError):
        service.ingest("web01", web.report({"fs_used_ratio": 0.5}))
    assert sample(service, "runwatch_reports_failed_total") == 1
    assert sample(service, "runwatch_reports_ingested_total") == 0


def test_label_values_are_escaped(make_service: MakeService, clock: FakeClock) -> None:
    service = make_service()
    odd = 'C:\\share "archive"\nline two'
    service.ingest(
        "web01", Reporter("web01", clock).report({"fs_used_ratio": 0.5}, labels={"mountpoint": odd})
    )
    assert (
        sample(service, "runwatch_fs_used_ratio", host="web01", check="filesystem", mountpoint=odd)
        == 0.5
    )
    assert (
        sample(
            service,
            "runwatch_rule_severity",
            host="web01",
            rule="filesystem_full",
            series=f"mountpoint={odd}",
        )
        == 0
    )
    promtool_check(service.metrics.render().decode())


def test_special_values_are_written_as_prometheus_reads_them(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([])
    values = {
        "a_ratio": float("inf"),
        "b_ratio": float("-inf"),
        "c_ratio": 1e21,
        "d_ratio": 0.1 + 0.2,
    }
    service.ingest("web01", Reporter("web01", clock).report(values))
    text = service.metrics.render().decode()
    assert 'runwatch_a_ratio{host="web01",check="filesystem",mountpoint="/"} +Inf\n' in text
    assert 'runwatch_b_ratio{host="web01",check="filesystem",mountpoint="/"} -Inf\n' in text
    assert (
        sample(service, "runwatch_c_ratio", host="web01", check="filesystem", mountpoint="/")
        == 1e21
    )
    assert (
        sample(service, "runwatch_d_ratio", host="web01", check="filesystem", mountpoint="/")
        == 0.1 + 0.2
    ), "full precision"


def test_a_quiet_outbox_reads_zero_for_every_sink_the_built_in_register_too(
    make_service: MakeService,
) -> None:
    """The outbox and sink panels have series from the start, with only the built-in register
    as with a help desk besides it; none is left out, none is made up."""
    from collector.metrics.exposition import OUTBOX_OPERATIONS, SINK_OPERATIONS

    groups = {
        "systems-administration": {"sink": "helpdesk", "assign": "Systems Administration"},
        "computer-operations": {"sink": "desk", "assign": "Computer Operations"},
    }
    sinks = {
        "helpdesk": {"type": "builtin"},
        "desk": {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
    }
    for configured in ({"helpdesk": sinks["helpdesk"]}, sinks):
        in_use = {k: v for k, v in groups.items() if v["sink"] in configured}
        service = make_service([], groups=in_use, sinks=configured)
        for sink in configured:
            for family in (
                "runwatch_outbox_pending",
                "runwatch_outbox_dead_letters",
                "runwatch_outbox_oldest_pending_age_seconds",
                "runwatch_outbox_delivery_seconds_count",
            ):
                assert sample(service, family, sink=sink) == 0, (family, sink)
            for operation in SINK_OPERATIONS:
                assert (
                    sample(service, "runwatch_sink_errors_total", sink=sink, operation=operation)
                    == 0
                )
            for operation in OUTBOX_OPERATIONS:
                for result in ("ok", "retry", "dead"):
                    labels = {"sink": sink, "op": operation, "result": result}
                    assert sample(service, "runwatch_outbox_deliveries_total", **labels) == 0
        pending = [
            s.labels["sink"]
            for metric in service.registry.collect()
            if metric.name == "runwatch_outbox_pending"
            for s in metric.samples
        ]
        assert sorted(pending) == sorted(configured)


@pytest.fixture
def desk_service(make_service: MakeService) -> CollectorService:
    """A collector whose group has an external help desk (never reached in these tests)."""
    groups = {"systems-administration": {"sink": "desk", "assign": "Systems Administration"}}
    return make_service(
        [{**FS_RULE, "for": "0s"}],
        groups=groups,
        sinks={"desk": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}},
        staleness={"after_intervals": 3},
    )


def test_outbox_age_sink_errors_and_time_to_acknowledge(
    desk_service: CollectorService, clock: FakeClock
) -> None:
    from collector.incidents.outbox import OutboxWorker, RetryPolicy
    from collector.incidents.sync import TicketSync
    from collector.sinks.contract import SinkError
    from tests.test_outbox import RecordingSink

    service = desk_service
    assert sample(service, "runwatch_outbox_oldest_pending_age_seconds", sink="desk") == 0
    assert sample(service, "runwatch_sink_errors_total", sink="desk", operation="open") == 0
    sink = RecordingSink()
    worker = OutboxWorker(
        service.store,
        {"desk": sink},
        clock=clock,
        policy=RetryPolicy(base_seconds=10, max_seconds=100),
        metrics=service.metrics.delivery,
    )
    web = Reporter("web01", clock)
    service.ingest("web01", web.report({"fs_used_ratio": 0.97}))
    clock.advance(90)
    assert sample(service, "runwatch_outbox_pending", sink="desk") == 1
    assert sample(service, "runwatch_outbox_oldest_pending_age_seconds", sink="desk") == 90
    sink.failures = [SinkError("503", retryable=True, status=503)]
    assert worker.deliver_due() == 0
    assert sample(service, "runwatch_sink_errors_total", sink="desk", operation="open") == 1
    assert (
        sample(service, "runwatch_outbox_deliveries_total", sink="desk", op="open", result="retry")
        == 1
    )
    clock.advance(200)
    assert worker.deliver_due() == 1
    assert sample(service, "runwatch_outbox_oldest_pending_age_seconds", sink="desk") == 0

    failing: list[str] = []
    sync = TicketSync(
        service.store,
        {"desk": sink},
        service.config.groups,
        {"desk": lambda severity: severity},
        timings=service.metrics.calls,
        on_error=failing.append,
    )
    clock.advance(300)
    sync.run_once(clock())
    group = "systems-administration"
    assert sample(service, "runwatch_call_acknowledge_seconds_count", group=group) == 0, (
        "still new in the help desk"
    )
    (ticket,) = sink.tickets.values()
    ticket["state"] = "open"
    clock.advance(100)
    sync.run_once(clock())
    assert sample(service, "runwatch_call_acknowledge_seconds_count", group=group) == 1
    assert sample(service, "runwatch_call_acknowledge_seconds_sum", group=group) == 690
    sync.run_once(clock())
    assert sample(service, "runwatch_call_acknowledge_seconds_count", group=group) == 1, "once"


def test_metrics_endpoint_serves_gzip_to_clients_that_accept_it(busy: CollectorService) -> None:

    from litestar.testing import TestClient

    from collector.api.application import create_app

    with TestClient(create_app(busy)) as client:
        plain = client.get("/metrics", headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in plain.headers
        assert plain.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        zipped = client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert zipped.headers["Vary"] == "Accept-Encoding"
    # httpx inflates the body by itself; check that what was sent was much smaller.
    assert zipped.num_bytes_downloaded < plain.num_bytes_downloaded / 3

    def steady(body: bytes) -> list[str]:  # the process's own CPU and memory move between GETs
        return [
            line
            for line in body.decode().splitlines()
            if "runwatch_process_" not in line and "runwatch_event_loop_lag" not in line
        ]

    assert steady(zipped.content) == steady(plain.content)
    promtool_check(plain.text)


@pytest.mark.parametrize(
    ("header", "expected"),
    cases(
        {
            "gzip": ("gzip", True),
            "among others, with a weight": ("br, gzip;q=0.5", True),
            "any case": ("GZIP", True),
            "refused with q=0": ("gzip;q=0", False),
            "identity only": ("identity", False),
            "no header": ("", False),
            "other codings only": ("deflate, br", False),
        }
    ),
)
def test_accept_encoding_is_read_as_http_says(header: str, expected: bool) -> None:
    from collector.api.ops import accepts_gzip

    assert accepts_gzip(header) is expected


def test_measurement_text_kept_between_scrapes_follows_every_change(
    make_service: MakeService, clock: FakeClock
) -> None:
    """Each host's measurement text is kept between scrapes: it must follow new reports,
    series dropped outside ingest, and a host that comes back, and equal a fresh render."""
    from collector.metrics.exposition import FleetCollector

    service = make_service([])
    web, db = Reporter("web01", clock), Reporter("db01", clock)
    labels = {"host": "web01", "check": "filesystem", "mountpoint": "/"}
    service.ingest("web01", web.report({"a_ratio": 0.5, "b_ratio": 0.25}))
    service.ingest("db01", db.report({"a_ratio": 0.125}))
    assert sample(service, "runwatch_a_ratio", **labels) == 0.5
    service.ingest("web01", web.report({"a_ratio": 0.75, "b_ratio": 0.25}))
    assert sample(service, "runwatch_a_ratio", **labels) == 0.75
    # A series dropped without a report (expiry, another replica's view): gone at once.
    service.fleet.drop_series(("web01", "b_ratio", '{"mountpoint":"/"}'))
    assert sample(service, "runwatch_b_ratio", **labels) is None
    assert sample(service, "runwatch_a_ratio", **labels) == 0.75
    fresh = FleetCollector(service.fleet, service.config, service.counters, service.store, clock)
    assert service.metrics.fleet is not None
    kept = service.metrics.fleet
    assert kept.measurement_chunks() == fresh.measurement_chunks()
    # A whole reload of the view (as after a failed ingest) renders every host again.
    service.fleet.reload(service.store, clock.now)
    service.ingest("db01", db.report({"a_ratio": 0.0625}))
    assert (
        sample(service, "runwatch_a_ratio", host="db01", check="filesystem", mountpoint="/")
        == 0.0625
    )
    assert kept.measurement_chunks() == fresh.measurement_chunks()


def test_event_loop_lag_shows_work_that_holds_the_loop(
    busy: CollectorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scrape that blocks the event loop for 0.4 s shows as a lag of that size."""
    import time

    from litestar.testing import TestClient

    from collector.api.application import create_app

    render_steps = busy.metrics.render_steps

    def slow_render() -> Generator[None, None, bytes]:
        time.sleep(0.4)  # blocks the loop, as a slow render or store would
        return (yield from render_steps())

    def lagged(above: str) -> float:
        total = sample(busy, "runwatch_event_loop_lag_seconds_count") or 0.0
        within = sample(busy, "runwatch_event_loop_lag_seconds_bucket", le=above) or 0.0
        return total - within

    with TestClient(create_app(busy)) as client:
        time.sleep(0.6)
        assert (sample(busy, "runwatch_event_loop_lag_seconds_count") or 0) >= 1
        before = lagged("0.25")
        monkeypatch.setattr(busy.metrics, "render_steps", slow_render)
        client.get("/metrics")
        time.sleep(0.6)
    assert lagged("0.25") >= before + 1


def test_measurements_are_rendered_at_the_scrape_once_per_host_however_often_it_reports(
    make_service: MakeService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report only notes its host; the scrape renders the hosts that reported since the last
    one, once each, and serves what a fresh render of the same view serves."""
    import asyncio

    from collector.metrics.exposition import FleetCollector

    service = make_service([])
    reporters = {name: Reporter(name, clock) for name in ("web01", "web02", "db01")}
    for name, reporter in reporters.items():
        service.ingest(name, reporter.report({"a_ratio": 0.5, "b_ratio": 0.25}))
    kept = service.metrics.fleet
    assert kept is not None
    rendered: list[str] = []
    render_host = kept._render_host
    monkeypatch.setattr(
        kept, "_render_host", lambda host, keys: rendered.append(host) or render_host(host, keys)
    )
    for value in (0.125, 0.25, 0.375, 0.4375):
        clock.advance(60)
        for name, reporter in reporters.items():
            service.ingest(name, reporter.report({"a_ratio": value, "b_ratio": 0.25}))
    assert rendered == []  # values only changed: nothing rendered at ingest
    labels = {"host": "web02", "check": "filesystem", "mountpoint": "/"}
    assert sample(service, "runwatch_a_ratio", **labels) == 0.4375
    assert sorted(rendered) == ["db01", "web01", "web02"]
    fresh = FleetCollector(
        service.fleet,
        service.config,
        service.counters,
        service.store,
        clock,
        calendar=kept._calendar,
    )
    fresh.services, fresh.reserved = kept.services, kept.reserved
    assert kept.render() == fresh.render()
    # A new series is rendered with its report (its family may be held back: the agent is
    # told at once); the /metrics handler's sliced warm-up renders the rest.
    rendered.clear()
    service.ingest("web01", reporters["web01"].report({"a_ratio": 0.5, "c_ratio": 1.0}))
    service.ingest("db01", reporters["db01"].report({"a_ratio": 0.5, "b_ratio": 0.5}))
    assert rendered == ["web01"]
    asyncio.run(kept.warm_in_slices(hosts_per_slice=1))
    assert rendered == ["web01", "db01"]
    assert kept.render() == fresh.render()
    assert (
        sample(service, "runwatch_c_ratio", host="web01", check="filesystem", mountpoint="/") == 1.0
    )


def test_a_scrape_renders_in_steps_and_serves_what_one_render_serves(
    make_service: MakeService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large fleet's rule states and hosts are written a step at a time (the event loop
    serves reports between steps); the body is the one a render in one go gives."""
    from collector.metrics import exposition

    service = make_service([{**FS_RULE, "for": "0s"}])
    for i in range(30):
        host = f"web{i:02d}"
        service.ingest(host, Reporter(host, clock).report({"fs_used_ratio": 0.5 + i / 100}))
    fleet = service.metrics.fleet
    assert fleet is not None
    whole: list[str] = []
    fleet.render_into(whole)
    monkeypatch.setattr(exposition, "STEP_ITEMS", 4)
    stepped: list[str] = []
    count = sum(1 for _ in fleet.render_steps(stepped))
    assert count == len(service.fleet.states) // 4 + len(service.fleet.hosts) // 4 > 10
    assert stepped == whole and any('host="web29"' in line for line in stepped)
    body = service.metrics.render()  # the whole body, own metrics and all, in steps too
    assert "".join(whole).encode() in body
