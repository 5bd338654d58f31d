"""bench/fleet.py --realistic: the reports issue 22's generator sent (55 labelled measurements,
8 check runs, every value changing on every report), and a short run against a real collector
at a tiny rate, bounded in time, that must answer every report. No figure is judged here: a
loaded test machine says nothing about performance."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from checks.schema import decode_report
from tests.helpers import PG_DSN

BENCH = Path(__file__).resolve().parent.parent / "bench"


def bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"runwatch_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_realistic_reports_carry_55_labelled_values_that_all_change() -> None:
    import random

    fleet = bench_module("fleet")
    ingest = fleet.load_ingest_module()
    ingest.CHECK_ERROR_PROBABILITY = 0.0
    ingest.SPIKE_PROBABILITY = 0.0  # a spike drawn twice is the one value that may repeat
    for troubled in (True, False):
        specs = fleet.realistic_series(ingest, troubled)
        factory = ingest.ReportFactory("web01", specs, random.Random(1))
        first, second = (decode_report(factory.next_body()) for _ in range(2))
        assert len(first.measurements) == fleet.REALISTIC_MEASUREMENTS == 55
        assert len(first.checks) == 8
        interfaces = {m.labels.get("interface") for m in first.measurements} - {None}
        assert interfaces == {"eth0", "eth1", "lo"}
        modes = {m.labels["mode"] for m in first.measurements if m.name == "cpu_mode_ratio"}
        assert len(modes) == 8
        (fs,) = {tuple(sorted(m.labels)) for m in first.measurements if m.check == "filesystem"}
        assert fs == ("device", "fstype", "mountpoint")
        assert any(m.check == "diskio" for m in first.measurements)
        changed = [
            a.value != b.value for a, b in zip(first.measurements, second.measurements, strict=True)
        ]
        assert all(changed), "every value changes on every report"


@pytest.mark.slow
def test_a_short_realistic_fleet_run_is_answered_in_full(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "fleet.py"),
            "--realistic",
            "--agents",
            "20",
            "--interval",
            "2",
            "--seconds",
            "6",
            "--senders",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["realistic"] is True
    assert figures["connections"] == 64
    assert figures["measurements_per_report"] == 55
    assert figures["errors"] == 0
    assert figures["reports_per_second"] > 0
    assert figures["series"]["held"] == 20 * 55
    due, sent = figures["latency_from_schedule_ms"], figures["latency_ms"]
    assert due["max"] >= sent["max"] > 0, "counted from the schedule, a report waits no less"
    assert figures["collector_exits"] == [0]


@pytest.mark.slow
def test_a_short_fleet_run_on_postgresql_counts_what_a_report_costs_it(
    pg_unavailable: str | None,
) -> None:
    if pg_unavailable:
        pytest.skip(pg_unavailable)
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "fleet.py"),
            "--realistic",
            "--store",
            "postgresql",
            "--dsn",
            PG_DSN,
            "--agents",
            "20",
            "--interval",
            "2",
            "--seconds",
            "8",
            "--senders",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["errors"] == 0
    cost = figures["postgresql_per_report"]
    # Each report rewrites its series' latest values: about one row per measurement.
    assert cost["rows_updated"] >= 40, cost
    assert cost["commits"] > 0, cost
    assert cost["wal_bytes_server_wide"] > 0, cost


def test_the_services_mode_config_loads_with_every_kind_of_service() -> None:
    """bench/fleet.py --services: pools, clusters, all-of services, label components, service
    components and dependencies, over the fleet's host names; it loads as a collector config."""
    from collector.config import collector_config_from_dict

    fleet = bench_module("fleet")
    load = fleet.service_load
    services = load.services_config(10_000, 200, "ops")
    config = collector_config_from_dict(
        {
            "sinks": {"desk": {"type": "builtin"}},
            "groups": {"ops": {"sink": "desk", "assign": "Operations"}},
            "rules": [fleet.BREACH_RULE | {"owner": "ops"}],
            "services": services,
        }
    )
    assert len(config.services) == 200
    needs = {str(s.components[0].need) for s in config.services.values()}
    assert needs == {"any", "48", "all"}
    assert config.services["s049"].components[-1].service == "s047"
    assert config.services["s009"].depends_on == ["s008"]
    assert config.services["s001"].components[0].hosts[0] == "host0005?"
    assert load.host_labels(51, 50, 200) == {"svc": "s001", "tier": "front"}
    assert load.host_labels(55, 50, 200) == {"svc": "s001", "tier": "back"}
    targets = load.breach_targets(10_000, 200, 5)
    assert len(targets) == 5
    assert all(config.services[name].components[0].need == "all" for name, _ in targets)


@pytest.mark.slow
def test_a_short_services_run_times_a_breach_and_loads_the_status_page() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "fleet.py"),
            *("--agents", "40", "--interval", "2", "--seconds", "16", "--senders", "1"),
            *("--services", "4", "--service-breaches", "1", "--status-rps", "40", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["errors"] == 0
    assert figures["service_breach"]["changed"] == 1
    assert figures["service_breach"]["to_state_change_s"]["max"] > 0
    page = figures["status_page"]
    assert set(page["load"]["statuses"]) == {"200"}
    assert page["load"]["requests"] > 0
    assert page["ingest"]["with"]["reports"] > 0 and page["ingest"]["without"]["reports"] > 0


def test_ingest_cpu_measures_a_few_intervals_in_process() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "ingest_cpu.py"),
            "--hosts",
            "10",
            "--rounds",
            "4",
            "--warmup",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["reports"] == 10 * 3
    assert figures["cpu_ms_per_report"] > 0
    assert figures["rule_states"] > 0
