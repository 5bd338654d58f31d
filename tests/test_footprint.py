"""The agent's footprint: no prometheus_client, and no ssl unless the collector uses TLS."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
print(sorted(m for m in ("ssl", "prometheus_client", "litestar", "httpx", "jinja2")
             if m in sys.modules))
"""


@pytest.mark.parametrize(("url", "loaded"), [
    pytest.param("http://127.0.0.1:9", [], id="plain http: nothing heavy"),
    pytest.param("https://127.0.0.1:9", ["ssl"], id="https: ssl, and only that"),
])
def test_agent_loads_only_what_it_uses(tmp_path: object, url: str, loaded: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(url=url), str(tmp_path)],
                            capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == repr(loaded), result.stderr
