"""The `runwatch` command under test, and external tools found on PATH or skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


def runwatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `runwatch args...` to its end (at most a minute), `env` on top of this one's."""
    return subprocess.run(
        [RUNWATCH, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def job_run_args(status_file: Path, tool_name: str, *command: str) -> list[str]:
    """The arguments of `runwatch job run nightly` wrapping `command` as `tool_name`."""
    return [
        "job",
        "run",
        "nightly",
        "--status-file",
        str(status_file),
        "--tool",
        tool_name,
        "--",
        *command,
    ]


def tool(name: str, package: str) -> str:
    """Path of an external tool, or skip the test naming the Debian package that provides it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package: {package})")
    return path
