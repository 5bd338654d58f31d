"""Helpers for tests that run real processes: start and always stop them, wait, fetch."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import RUNWATCH, tool


class Processes:
    """Start processes for a test and always stop them, by their PID."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        process = subprocess.Popen(args, text=True, **kw)
        self.started.append(process)
        return process

    def runwatch(self, command: str, config: Path, **kw: Any) -> subprocess.Popen[str]:
        """Start `runwatch <command> --config <config>` (collector, agent)."""
        return self.start(RUNWATCH, command, "--config", str(config), **kw)

    def runwatch_up(
        self,
        out: Path,
        data_dir: Path,
        config: Path,
        interval: str,
        *,
        stderr: Any = None,
        timeout: float = 20,
        agent_config: Path | None = None,
    ) -> str:
        """Start `runwatch up` on a free loopback port, its output to `out` (and its stderr, unless
        given), with the shipped agent config or `agent_config`; return the collector URL it
        announces."""
        extra = ("--agent-config", str(agent_config)) if agent_config else ()
        with out.open("w") as stdout:
            self.start(
                RUNWATCH,
                "up",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(data_dir),
                "--collector-config",
                str(config),
                "--interval",
                interval,
                *extra,
                stdout=stdout,
                stderr=stdout if stderr is None else stderr,
            )
        found = wait_for(
            "the URL",
            lambda: re.search(r"runwatch up: collector (\S+)", out.read_text()),
            timeout=timeout,
        )
        return str(found[1])

    def stop(self, process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            self.stop(process)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def post_report(url: str, token: str, body: bytes, timeout: float = 10) -> int:
    """POST a report body to the collector at `url` as host `token`; return the HTTP status."""
    request = urllib.request.Request(
        f"{url}/api/v1/reports",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def read_url(process: subprocess.Popen[str], stream: str = "stderr") -> str:
    """Read lines until the process says where it listens."""
    pipe = getattr(process, stream)
    deadline = time.monotonic() + 20
    seen = []
    while time.monotonic() < deadline:
        line = pipe.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"no URL announced; output was: {''.join(seen)}")


def promtool_check(metrics: str) -> None:
    promtool = tool("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=metrics, text=True, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
