"""The agent's footprint: no prometheus_client, no ssl unless the collector uses TLS, and none
of what only other checks or commands need."""

from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from agent.config import agent_config_from_dict
from checks.registry import build_check

SCRIPT = """
import sys
import runwatch.cli  # the entry point of `runwatch agent`
from agent.config import agent_config_from_dict
from agent.service import Agent
config = agent_config_from_dict({{
    "collector": {{"url": "{url}"}}, "state_dir": sys.argv[1],
    "checks": [{{"type": t}} for t in ("cpu", "load", "memory", "filesystem", "diskio",
                                       "network", "processes", "uptime")]}})
agent = Agent(config)
agent.runner.run_once()
agent.make_report()
from agent.shipper import ReportSender
ReportSender("{url}", None, 2.0).send(b"{{}}")
print(sorted(m for m in ("ssl", "prometheus_client", "litestar", "httpx", "jinja2", "paramiko",
                        "rich", "shutil", "tempfile", "zoneinfo", "gzip")
             if m in sys.modules))
"""


@pytest.mark.parametrize(
    ("url", "loaded"),
    [
        pytest.param("http://127.0.0.1:9", [], id="plain http: nothing heavy"),
        # urllib.request, the https client, brings shutil and tempfile along.
        pytest.param(
            "https://127.0.0.1:9",
            ["shutil", "ssl", "tempfile"],
            id="https: ssl and the https client, and only that",
        ),
    ],
)
def test_agent_loads_only_what_it_uses(tmp_path: object, url: str, loaded: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(url=url), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == repr(loaded), result.stderr


def test_system_checks_keep_nothing_from_one_cycle_to_the_next(tmp_path: Path) -> None:
    """Run the shipped system checks many times: what they keep between cycles stays flat."""
    config = agent_config_from_dict(
        {
            "collector": {"url": "http://127.0.0.1:9"},
            "state_dir": str(tmp_path),
            "checks": [
                {"type": t}
                for t in (
                    "cpu",
                    "load",
                    "memory",
                    "filesystem",
                    "diskio",
                    "network",
                    "processes",
                    "uptime",
                )
            ],
        }
    )
    checks = [
        build_check(options, state_dir=tmp_path / options.instance) for options in config.checks
    ]
    for _ in range(20):  # warm up: first rates, caches, lazily imported modules
        for check in checks:
            check.collect()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(300):
            for check in checks:
                check.collect()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    kept = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert kept < 32 * 1024, f"{kept} bytes kept after 300 cycles"
