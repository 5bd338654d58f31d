"""Real processes on loopback: a collector on 127.0.0.1:0 and a real agent shipping to it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from collector.auth import add_token
from tests.helpers import RUNWATCH, write_collector_yaml
from tests.procs import Processes, get_json, get_text, promtool_check, read_url, wait_for


def test_agent_and_collector_processes_open_resolve_reopen_and_go_stale(
    tmp_path: Path, processes: Processes
) -> None:
    baseline = len(psutil.pids())
    too_many_processes = {
        "name": "too_many_processes",
        "metric": "processes",
        "warning": baseline + 100,
        "clear": baseline + 50,
        "owner": "systems-administration",
    }
    collector_yaml = write_collector_yaml(
        tmp_path / "collector.yaml",
        tmp_path / "data",
        {"systems-administration": {"sink": "helpdesk", "assign": "Systems Administration"}},
        staleness={"after_intervals": 3, "owner": "systems-administration"},
        evaluation_interval="0.5s",
        rules=[too_many_processes],
    )
    token = add_token(tmp_path / "data" / "agents.tokens", "e2e-host")
    (tmp_path / "agent.token").write_text(token)
    collector = processes.runwatch("collector", collector_yaml, stderr=subprocess.PIPE)
    url = read_url(collector)
    agent_yaml = tmp_path / "agent.yaml"
    agent_yaml.write_text(
        yaml.safe_dump(
            {
                "collector": {"url": url, "token_file": "agent.token"},
                "host": "e2e-host",
                "interval": "1s",
                "state_dir": "agent-state",
                "checks": [{"type": "processes"}, {"type": "memory"}],
            }
        )
    )
    agent = processes.start(RUNWATCH, "agent", "--config", str(agent_yaml))

    hosts = wait_for("the host to report", lambda: get_json(f"{url}/api/v1/hosts"))
    assert hosts[0]["host"] == "e2e-host"

    def calls() -> list[dict[str, Any]]:
        return [c for c in get_json(f"{url}/api/v1/calls")]

    def load(count: int) -> list[subprocess.Popen[str]]:
        return [processes.start("sleep", "120") for _ in range(count)]

    def unload(sleepers: list[subprocess.Popen[str]]) -> None:
        for sleeper in sleepers:
            processes.stop(sleeper, signal.SIGKILL)

    sleepers = load(150)
    (opened,) = wait_for("a call to open", lambda: [c for c in calls() if c["status"] == "open"])
    assert opened["rule"] == "too_many_processes"
    assert opened["host"] == "e2e-host"
    time.sleep(2)
    assert len(calls()) == 1, "the breach went on for several reports: still one call"

    unload(sleepers)
    wait_for("the call to resolve", lambda: calls()[0]["status"] == "resolved")

    sleepers = load(150)
    wait_for("the call to reopen", lambda: calls()[0]["status"] == "open")
    (call,) = calls()
    assert call["id"] == opened["id"]
    assert call["reopened"] == 1
    unload(sleepers)
    wait_for("the reopened call to resolve", lambda: calls()[0]["status"] == "resolved")

    promtool_check(get_text(f"{url}/metrics"))

    processes.stop(agent)
    assert agent.returncode == 0, "SIGTERM is a clean stop"
    # An open one: on a loaded machine the agent may have been late for three intervals
    # before, which opened a host_stale call that its next report resolved.
    stale = wait_for(
        "the host to go STALE and open a call",
        lambda: [c for c in calls() if c["rule"] == "host_stale" and c["status"] == "open"],
        timeout=15,
    )
    assert len(stale) == 1
    assert get_json(f"{url}/api/v1/hosts")[0]["state"] == "STALE"
    metrics = get_text(f"{url}/metrics")
    assert 'runwatch_host_state{host="e2e-host",state="STALE"} 1.0' in metrics

    processes.stop(collector)
    assert collector.returncode == 0, "SIGTERM: graceful stop, store closed, exit 0"
    assert collector.stderr is not None
    assert "stopped by SIGTERM" in collector.stderr.read()


def test_runwatch_up_shows_this_host_within_two_intervals_and_survives_restart(
    tmp_path: Path, processes: Processes
) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = (RUNWATCH, "up", "--listen", "127.0.0.1:0", "--data-dir", str(data), "--interval", "2s")
    up = processes.start(*args, stdout=subprocess.PIPE, env=env)
    started = time.monotonic()
    url = read_url(up, "stdout")
    hosts = wait_for(
        "this host at /api/v1/hosts",
        lambda: [h for h in get_json(f"{url}/api/v1/hosts") if h["measurements"]],
        timeout=10,
    )
    assert time.monotonic() - started < 2 * 2 + 3, "within two agent intervals (plus start-up)"
    names = {m["name"] for m in hosts[0]["measurements"]}
    assert {"fs_used_ratio", "memory_used_ratio", "load1_per_core", "uptime_seconds"} <= names
    wait_for(
        "rate checks (second sample)",
        lambda: any(
            m["name"] == "cpu_utilization_ratio"
            for m in get_json(f"{url}/api/v1/hosts")[0]["measurements"]
        ),
    )
    metrics = get_text(f"{url}/metrics")
    assert "runwatch_fs_used_ratio{" in metrics
    promtool_check(metrics)
    processes.stop(up, signal.SIGINT)
    assert up.returncode == 0
    token = (data / "agent.token").read_text()

    again = processes.start(*args, stdout=subprocess.PIPE, env=env)
    url = read_url(again, "stdout")
    hosts = get_json(f"{url}/api/v1/hosts")
    assert hosts and hosts[0]["measurements"], "data survived the restart"
    assert (data / "agent.token").read_text() == token, "the agent keeps its token"
    seq_before = hosts[0]["last_seq"]
    wait_for(
        "reports after the restart",
        lambda: get_json(f"{url}/api/v1/hosts")[0]["last_seq"] > seq_before,
    )
    processes.stop(again, signal.SIGINT)
