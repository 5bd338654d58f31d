"""The agent as a service: outages, kill -9, spool bounds, signals, self-monitoring, sd_notify.

Real `runwatch agent` and `runwatch collector` processes on loopback where the issue asks for
them; the spool, shipper and notifier in-process where a fake clock or a socket is enough.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from agent.config import agent_config_from_dict
from agent.notify import SystemdNotifier
from agent.runner import CheckRunner
from agent.service import Agent, SelfMonitor
from agent.shipper import ReportShipper, RetryLater, SendResult
from agent.spool import SEQ_BLOCK, Spool, SpoolStats
from checks.base import CheckOptions
from checks.schema import Measurement, Report
from checks.settings import ConfigError, Duration
from collector.auth import add_token
from tests.helpers import RUNWATCH, FakeClock
from tests.procs import Processes, get_json, get_text, wait_for

HOST = "svc-host"
SELF_FIGURES = {
    "agent_rss_bytes",
    "agent_cpu_seconds",
    "agent_spool_reports",
    "agent_spool_bytes",
    "agent_spool_dropped",
    "agent_check_duration_seconds",
    "agent_check_timeouts",
    "agent_uptime_seconds",
}


# -- helpers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Site:
    """One host's agent and its collector, as files in tmp_path and processes started by PID."""

    def __init__(self, tmp_path: Path, processes: Processes) -> None:
        self.dir = tmp_path
        self.processes = processes
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.agent_yaml = tmp_path / "agent.yaml"
        self.spool = tmp_path / "agent-state" / "spool"
        data = tmp_path / "data"
        token = tmp_path / "agent.token"
        token.write_text(add_token(data / "agents.tokens", HOST))
        token.chmod(0o600)
        (tmp_path / "collector.yaml").write_text(
            yaml.safe_dump(
                {
                    "listen": f"127.0.0.1:{self.port}",
                    "data_dir": str(data),
                    "sinks": {"helpdesk": {"type": "builtin"}},
                    "groups": {"ops": {"sink": "helpdesk", "assign": "Ops"}},
                    "staleness": {"after_intervals": 30, "owner": "ops"},
                    "rules": [],
                }
            )
        )
        self.write_agent_config()

    def write_agent_config(self, checks: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        config = {
            "collector": {"url": self.url, "token_file": "agent.token"},
            "host": HOST,
            "interval": "1s",
            "state_dir": "agent-state",
            "checks": checks if checks is not None else [{"type": "memory"}],
            "spool": {"replay_jitter": "0.5s", "replay_rate": 50},
        }
        config.update(extra)
        tmp = self.agent_yaml.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config))
        tmp.replace(self.agent_yaml)

    def start_agent(self, log_name: str = "agent.log", **env: str) -> subprocess.Popen[str]:
        log = (self.dir / log_name).open("w")
        return self.processes.start(
            RUNWATCH,
            "agent",
            "--config",
            str(self.agent_yaml),
            stderr=log,
            env={**os.environ, **env},
        )

    def start_collector(self) -> subprocess.Popen[str]:
        log = (self.dir / "collector.log").open("w")
        collector = self.processes.start(
            RUNWATCH, "collector", "--config", str(self.dir / "collector.yaml"), stderr=log
        )
        wait_for("the collector to answer", lambda: self.answer("/healthz"))
        return collector

    def answer(self, path: str) -> Any:
        try:
            return get_json(self.url + path)
        except (OSError, urllib.error.URLError):
            return None

    def last_seq(self) -> int:
        hosts = self.answer("/api/v1/hosts") or []
        return int(hosts[0]["last_seq"]) if hosts else 0

    def counters(self) -> tuple[float, float]:
        """The collector's (ingested, duplicate) report counters."""
        text = get_text(self.url + "/metrics")

        def value(name: str) -> float:
            match = re.search(rf"^{name} (\S+)$", text, re.M)
            assert match, f"{name} not on /metrics"
            return float(match.group(1))

        return value("runwatch_reports_ingested_total"), value("runwatch_reports_duplicate_total")

    def spooled(self) -> list[int]:
        return sorted(int(p.stem) for p in self.spool.glob("*.report"))

    def reserved(self) -> int:
        """The highest seq the agent has reserved (its state file)."""
        return int(json.loads((self.spool / "state.json").read_text())["next_seq"]) - 1

    def log(self, name: str = "agent.log") -> str:
        return (self.dir / name).read_text()


@pytest.fixture
def site(tmp_path: Path, processes: Processes) -> Site:
    return Site(tmp_path, processes)


def stop_within(process: subprocess.Popen[str], seconds: float) -> float:
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(seconds + 5)
    return time.monotonic() - began


# -- real processes ----------------------------------------------------------------------------


def test_collector_down_for_several_cycles_then_back_every_report_once_in_order(
    site: Site, processes: Processes
) -> None:
    agent = site.start_agent()
    wait_for(
        "the agent to spool while the collector is down",
        lambda: len(site.spooled()) >= 2,
        timeout=15,
    )
    backlog = site.spooled()
    assert len(backlog) >= 2, "the agent spooled while the collector was down"
    site.start_collector()
    wait_for(
        "the backlog and live reports to arrive",
        lambda: site.last_seq() >= backlog[-1] + 2,
        timeout=30,
    )
    assert stop_within(agent, 5) < 5
    assert agent.returncode == 0
    wait_for("the final report", lambda: site.last_seq() == site.reserved())
    ingested, duplicates = site.counters()
    assert site.spooled() == [], "everything acknowledged left the spool"
    # Seqs start at 1, and an out-of-order report would be dropped as a duplicate: so
    # ingested == last_seq means every report arrived once, in order, without a gap.
    assert ingested == site.last_seq() == site.reserved()
    assert duplicates == 0
    assert "collector reachable again; replaying" in site.log()


def test_kill_9_while_spooling_loses_nothing_and_nothing_counts_twice(
    site: Site, processes: Processes
) -> None:
    first = site.start_agent()
    wait_for("three spooled reports", lambda: len(site.spooled()) >= 3, timeout=15)
    processes.stop(first, signal.SIGKILL)
    spooled = site.spooled()
    reserved = site.reserved()
    assert spooled == list(range(1, spooled[-1] + 1)), "whole reports only, no torn file"
    # Seqs are reserved a block at a time: kill -9 leaves the rest of the block unused.
    assert spooled[-1] <= reserved < spooled[-1] + SEQ_BLOCK

    second = site.start_agent("agent2.log")
    time.sleep(1.5)
    site.start_collector()
    wait_for(
        "the reports spooled before the kill, then new ones",
        lambda: site.last_seq() >= reserved + 2,
        timeout=30,
    )
    assert stop_within(second, 5) < 5
    wait_for("the final report", lambda: site.last_seq() == site.reserved())
    ingested, duplicates = site.counters()
    assert site.spooled() == []
    assert ingested == site.last_seq() - (reserved - spooled[-1]), "each seq took effect once"
    # The collector was down at the kill, so no report was in flight to come twice (one that is
    # would be counted as a duplicate and take effect once).
    assert duplicates == 0


def test_sighup_with_a_bad_config_keeps_the_old_one_and_a_good_one_adds_a_check(
    site: Site, processes: Processes
) -> None:
    site.start_collector()
    agent = site.start_agent()
    wait_for("reports", lambda: site.last_seq() >= 2)
    hosts = get_json(site.url + "/api/v1/hosts")
    names = {m["name"] for m in hosts[0]["measurements"] if m["check"] == "agent"}
    assert names == SELF_FIGURES, "every self-monitoring figure reaches the collector"
    labels = {
        m["labels"].get("check_name")
        for m in hosts[0]["measurements"]
        if m["name"] == "agent_check_duration_seconds"
    }
    assert labels == {"memory"}

    site.write_agent_config([{"type": "memory"}, {"type": "nope"}])
    agent.send_signal(signal.SIGHUP)
    wait_for("the reload error in the log", lambda: "checks -> 2 -> type" in site.log())
    assert "still running the previous config" in site.log()
    seq = site.last_seq()
    wait_for("reports after the bad reload", lambda: site.last_seq() >= seq + 2)
    assert agent.poll() is None

    site.write_agent_config([{"type": "memory"}, {"type": "uptime"}])
    agent.send_signal(signal.SIGHUP)

    def uptime_measured() -> bool:
        hosts = site.answer("/api/v1/hosts") or [{"measurements": []}]
        return any(m["check"] == "uptime" for m in hosts[0]["measurements"])

    wait_for("the new check's measurements", uptime_measured, timeout=10)
    assert "config reloaded" in site.log()
    assert agent.poll() is None
    assert stop_within(agent, 5) < 5
    assert agent.returncode == 0


def test_sigterm_with_the_collector_down_exits_0_within_5s_and_notifies_systemd(site: Site) -> None:
    name = f"@runwatch-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name[1:])
        listener.settimeout(15)
        agent = site.start_agent(NOTIFY_SOCKET=name, WATCHDOG_USEC="400000")
        messages = [listener.recv(4096).decode()]
        assert messages == ["READY=1"]
        wait_for("a failed delivery", lambda: "cannot deliver report" in site.log())
        before = max(site.spooled())
        pings = 0
        while pings < 2:
            message = listener.recv(4096).decode()
            pings += message == "WATCHDOG=1"
        assert stop_within(agent, 5) < 5
        assert agent.returncode == 0
        listener.settimeout(1)
        rest = []
        try:
            while True:
                rest.append(listener.recv(4096).decode())
        except TimeoutError:
            pass
    assert "STOPPING=1" in rest
    assert max(site.spooled()) > before, "a final report was made, and stays spooled"
    assert site.reserved() == max(site.spooled()), "the unused seqs were given back"


# -- in-process --------------------------------------------------------------------------------


def test_spool_drops_too_old_reports_first_counts_them_and_keeps_ages_across_restart(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    spool = Spool(tmp_path, max_bytes=1 << 20, max_reports=100, max_age_seconds=3600, clock=clock)
    for _ in range(3):
        spool.put(spool.next_seq(), b"old")
        clock.advance(60)
    clock.advance(3600 - 150)  # the first is now past an hour, the others are not
    spool.put(spool.next_seq(), b"new")
    assert spool.stats() == SpoolStats(reports=3, bytes=9, dropped=1)
    assert spool.oldest() == (2, b"old")

    clock.advance(600)
    reopened = Spool(
        tmp_path, max_bytes=1 << 20, max_reports=100, max_age_seconds=3600, clock=clock
    )
    assert reopened.stats() == SpoolStats(reports=1, bytes=3, dropped=3), (
        "ages come from the files, and the count persists"
    )
    assert reopened.oldest() == (4, b"new")


def test_spool_count_and_age_bounds_together_and_never_the_report_just_written(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    spool = Spool(tmp_path, max_bytes=65536, max_reports=10, max_age_seconds=60, clock=clock)
    for _ in range(12):
        spool.put(spool.next_seq(), b"x" * 1000)
    assert (spool.stats().reports, spool.stats().dropped) == (10, 2)
    clock.advance(61)
    spool.put(spool.next_seq(), b"y" * 70000)  # too old all, and alone above max_bytes
    assert spool.stats() == SpoolStats(reports=1, bytes=70000, dropped=12)
    spool.set_bounds(max_bytes=65536, max_reports=10, max_age_seconds=30)
    clock.advance(31)
    spool.put(spool.next_seq(), b"z")
    assert spool.stats() == SpoolStats(reports=1, bytes=1, dropped=13)


def _agent(tmp_path: Path, **spool: Any) -> Agent:
    config = agent_config_from_dict(
        {
            "collector": {"url": f"http://127.0.0.1:{free_port()}"},
            "host": HOST,
            "state_dir": str(tmp_path / "state"),
            "checks": [{"type": "memory"}],
            "spool": {"max_reports": 10, **spool},
        }
    )
    return Agent(config, clock=FakeClock())


def _figures(report: Report) -> dict[str, Measurement]:
    return {
        m.name + "/" + m.labels.get("check_name", ""): m
        for m in report.measurements
        if m.check == "agent"
    }


def test_every_report_carries_the_agents_own_figures_and_counted_drops(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.runner.start_all()
    wait_for("the memory check", lambda: not agent.runner.busy(), timeout=5)
    report = agent.make_report()
    figures = _figures(report)
    assert {key.split("/")[0] for key in figures} == SELF_FIGURES
    assert figures["agent_rss_bytes/"].value > 10 * 1024 * 1024
    assert figures["agent_cpu_seconds/"].value > 0
    assert figures["agent_check_duration_seconds/memory"].labels == {"check_name": "memory"}
    assert figures["agent_check_timeouts/memory"].value == 0
    assert figures["agent_spool_dropped/"].value == 0
    assert {m.check for m in report.measurements} == {"agent", "memory"}

    for _ in range(11):
        agent.make_report()  # the spool holds 10: the 11th and 12th reports push 2 out
    before = agent.spool.stats()
    figures = _figures(agent.make_report())
    assert before.dropped == 2
    assert figures["agent_spool_dropped/"].value == 2, "the drops are reported"
    assert figures["agent_spool_reports/"].value == before.reports == 10
    assert figures["agent_spool_bytes/"].value == before.bytes


class _Options(CheckOptions, frozen=True, tag="svc-test"):
    pass


class SlowCheck:
    name: ClassVar[str] = "slow"

    def collect(self) -> list[Measurement]:
        time.sleep(0.4)
        return []


def test_check_timeouts_are_counted_since_start_and_durations_are_the_last_run() -> None:
    runner = CheckRunner(
        [(_Options(name="slow", interval=Duration(60), timeout=Duration(0.2)), SlowCheck())],
        default_interval=60,
    )
    monitor = SelfMonitor()
    for _ in range(2):
        runner.start_all()
        time.sleep(0.3)
        runner.reap()
        runner.start_all()  # still running past its timeout: "skipped", not a second timeout
        monitor.observe(runner.drain().runs)
        time.sleep(0.2)
    out = monitor.measurements(["slow", "never-ran"], SpoolStats(0, 0, 0), 1.0)
    by_key = {(m.name, m.labels.get("check_name")): m.value for m in out}
    assert by_key[("agent_check_timeouts", "slow")] == 2
    assert by_key[("agent_check_duration_seconds", "slow")] == 0.2
    assert by_key[("agent_check_timeouts", "never-ran")] == 0
    assert ("agent_check_duration_seconds", "never-ran") not in by_key


def test_replay_after_an_outage_waits_a_random_delay_then_keeps_to_the_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_reports=100)
    for _ in range(6):
        spool.put(spool.next_seq(), b"r")
    up = False
    sent: list[float] = []

    def send(_body: bytes) -> SendResult:
        if not up:
            return SendResult(None, "connection refused")
        sent.append(time.monotonic())
        return SendResult(202, "ok")

    delays: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        delays.append((low, high))
        return high

    monkeypatch.setattr("agent.shipper.random.uniform", uniform)
    shipper = ReportShipper(spool, send, replay_gap_seconds=0.05, replay_jitter_seconds=0.3)
    with pytest.raises(RetryLater):
        shipper.drain_once()
    up = True
    assert shipper.drain_once() == 6
    assert delays == [(0.0, 0.3)], "one random delay of 0 to replay_jitter, after the outage"
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert gaps[0] >= 0.3
    assert all(gap >= 0.05 for gap in gaps[1:]), gaps
    assert gaps[-1] < 0.3

    spool.put(spool.next_seq(), b"live")
    began = time.monotonic()
    assert shipper.drain_once() == 1
    assert time.monotonic() - began < 0.05, "one report at a time goes out unpaced"


def test_stop_during_an_outage_tries_once_more_and_returns_at_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_reports=100)
    spool.put(spool.next_seq(), b"r")
    attempts: list[float] = []

    def send(_body: bytes) -> SendResult:
        attempts.append(time.monotonic())
        return SendResult(None, "connection refused")

    shipper = ReportShipper(spool, send, min_backoff=30, max_backoff=60)
    shipper.start()
    wait_for("the first attempt", lambda: attempts, timeout=5)
    began = time.monotonic()
    shipper.stop(timeout=3)
    assert time.monotonic() - began < 1, "no waiting out the backoff"
    assert len(attempts) == 2
    assert spool.stats().reports == 1, "the report stays spooled"


@pytest.mark.parametrize(
    ("spool", "path"),
    [
        pytest.param({"max_age": "30s"}, "spool -> max_age", id="max_age below a minute"),
        pytest.param({"replay_rate": 0}, "spool -> replay_rate", id="replay_rate zero"),
        pytest.param(
            {"replay_jitter": "soon"}, "spool -> replay_jitter", id="jitter not a duration"
        ),
    ],
)
def test_spool_options_are_validated_with_their_key_path(
    tmp_path: Path, spool: dict[str, Any], path: str
) -> None:
    with pytest.raises(ConfigError) as error:
        _agent(tmp_path, **spool)
    assert error.value.path == path


def test_the_check_name_agent_is_reserved_for_the_agents_own_figures() -> None:
    with pytest.raises(ConfigError) as error:
        agent_config_from_dict(
            {
                "collector": {"url": "http://127.0.0.1:9"},
                "checks": [{"type": "memory"}, {"type": "load", "name": "agent"}],
            }
        )
    assert error.value.path == "checks -> 2 -> name"


def test_reload_keeps_the_spool_and_refuses_a_new_state_dir(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    spool, shipper = agent.spool, agent.shipper
    seq = agent.make_report().seq
    new = agent_config_from_dict(
        {
            "collector": {"url": "http://127.0.0.1:9"},
            "host": HOST,
            "state_dir": str(tmp_path / "state"),
            "checks": [{"type": "uptime"}],
            "spool": {"replay_rate": 4, "replay_jitter": "2s"},
        }
    )
    agent.apply(new)
    assert (agent.spool, agent.shipper) == (spool, shipper)
    assert (shipper.replay_gap_seconds, shipper.replay_jitter_seconds) == (0.25, 2.0)
    assert agent.make_report().seq == seq + 1
    moved = agent_config_from_dict(
        {"collector": {"url": "http://127.0.0.1:9"}, "state_dir": str(tmp_path / "elsewhere")}
    )
    with pytest.raises(ConfigError) as error:
        agent.apply(moved)
    assert error.value.path == "state_dir"
    assert agent.config is new


@pytest.mark.parametrize(
    "abstract", [pytest.param(False, id="path"), pytest.param(True, id="@abstract")]
)
def test_sd_notify_sends_ready_and_paced_watchdog_pings(abstract: bool) -> None:
    with (
        tempfile.TemporaryDirectory() as short,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener,
    ):
        name = f"@runwatch-{uuid.uuid4().hex}" if abstract else f"{short}/notify"
        listener.bind("\0" + name[1:] if abstract else name)
        listener.settimeout(2)
        clock = FakeClock(100.0)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "2000000"}, clock)
        notifier.ready()
        assert listener.recv(100) == b"READY=1"
        assert notifier.watchdog_interval == 1.0
        notifier.watchdog()
        notifier.watchdog()  # too soon: not sent
        clock.advance(1.0)
        notifier.watchdog()
        notifier.stopping()
        received = [listener.recv(100) for _ in range(3)]
        notifier.close()
    assert received == [b"WATCHDOG=1", b"WATCHDOG=1", b"STOPPING=1"]


@pytest.mark.parametrize(
    ("environ", "enabled", "interval"),
    [
        pytest.param({}, False, None, id="no NOTIFY_SOCKET: no-op"),
        pytest.param({"NOTIFY_SOCKET": "vsock:2:1"}, False, None, id="unsupported address"),
        pytest.param(
            {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"},
            True,
            None,
            id="watchdog meant for another pid",
        ),
        pytest.param(
            {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "60000000"},
            True,
            30.0,
            id="WatchdogSec=60: ping every 30s",
        ),
    ],
)
def test_sd_notify_environment(
    environ: dict[str, str], enabled: bool, interval: float | None
) -> None:
    notifier = SystemdNotifier(environ)
    assert notifier.enabled is enabled
    assert notifier.watchdog_interval == interval
    if not enabled:
        assert notifier.notify("READY=1") is False
