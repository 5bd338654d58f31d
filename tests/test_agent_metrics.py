"""The agent's optional local /metrics: node_exporter's names where they fit, promtool-clean."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import RUNWATCH, tool
from tests.procs import get_text, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_local_metrics_use_node_exporter_names(tmp_path: Path, processes: Any) -> None:
    port = free_port()
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "collector": {"url": "http://127.0.0.1:9"},  # nobody there: reports stay spooled
                "interval": "1s",
                "state_dir": "state",
                "metrics": {"listen": f"127.0.0.1:{port}"},
                "checks": [
                    {"type": "load"},
                    {"type": "memory"},
                    {"type": "filesystem"},
                    {"type": "cpu"},
                ],
            }
        )
    )
    processes.start(RUNWATCH, "agent", "--config", str(config))

    def scrape() -> str | None:
        try:
            text = get_text(f"http://127.0.0.1:{port}/metrics")
        except OSError:
            return None
        return text if "runwatch_cpu_utilization_ratio" in text else None

    text = wait_for("the local /metrics", scrape, timeout=15)
    for name in (
        "node_load1 ",
        "node_memory_MemAvailable_bytes ",
        "node_filesystem_avail_bytes{device=",
        "runwatch_agent_rss_bytes{",
    ):
        assert name in text, name
    # node_exporter's own memory names are camelCase, which promtool's linter flags; they are
    # kept as node_exporter spells them, so dashboards match. Nothing else may be flagged.
    promtool = tool("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, text=True, capture_output=True, check=False
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not (line.startswith("node_memory_") and "camelCase" in line)
    ]
    assert problems == [], problems
