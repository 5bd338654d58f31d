"""One rule for check timeouts, applied by the runner to every check (issue 18).

A check's timeout is its `timeout`, else the smaller of its interval and its type's default.
The runner abandons a run at that timeout, and the check's own processes and requests live on
that same budget: nothing a check started is still running after the runner gave up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import agent_config_from_dict
from agent.runner import CheckRunner
from agent.service import build_runner
from checks.base import CheckOptions
from checks.http import HttpCheck, HttpOptions
from checks.registry import CHECK_TYPES, AnyCheckOptions
from checks.settings import convert

# Well past the 1 s interval: a process or request that lived on its type's default would
# still be there when the test looks.
SLEEP_SECONDS = 30
# How long after the runner gave up the test waits for the process or connection to be gone.
MARGIN_SECONDS = 3.0


def _runner(tmp_path: Path, check: dict[str, Any]) -> CheckRunner:
    """The runner the agent builds for one check that runs every second."""
    config = agent_config_from_dict(
        {
            "collector": {"url": "http://127.0.0.1:9"},
            "host": "timeouts",
            "state_dir": str(tmp_path / "state"),
            "checks": [{"interval": "1s", **check}],
        }
    )
    return build_runner(config)


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # a zombie (killed, not reaped) counts as alive: it must be reaped too
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def _killed_at_exit() -> Iterator[list[int]]:
    """PIDs to kill at the end, should a failing test leave them running."""
    pids: list[int] = []
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _gone_soon(pid: int) -> bool:
    until = time.monotonic() + MARGIN_SECONDS
    while _alive(pid) and time.monotonic() < until:
        time.sleep(0.05)
    return not _alive(pid)


def _run_and_expect_the_process_gone(runner: CheckRunner, pid_file: Path) -> None:
    assert list(runner.timeouts().values()) == [1.0]
    with _killed_at_exit() as pids:
        harvest = runner.run_once()
        # The runner's timeout or the check's own kill of its process: both end the run at 1 s.
        (run,) = harvest.runs
        assert run.error is not None, run
        pids.append(int(pid_file.read_text()))
        assert _gone_soon(pids[0]), f"process {pids[0]} still runs after the runner gave up"


def test_a_plugin_running_every_second_is_killed_when_the_runner_gives_up(tmp_path: Path) -> None:
    pid_file = tmp_path / "plugin.pid"
    plugin = _script(tmp_path, "check_sleeps", f"echo $$ > {pid_file}; exec sleep {SLEEP_SECONDS}")
    _run_and_expect_the_process_gone(
        _runner(tmp_path, {"type": "plugin", "command": [str(plugin)]}), pid_file
    )


def test_pg_archiver_psql_is_killed_when_the_runner_gives_up(tmp_path: Path) -> None:
    pid_file = tmp_path / "psql.pid"
    psql = _script(tmp_path, "psql", f"echo $$ > {pid_file}; exec sleep {SLEEP_SECONDS}")
    _run_and_expect_the_process_gone(
        _runner(tmp_path, {"type": "pg_archiver", "psql": str(psql)}), pid_file
    )


class _SilentServer:
    """A loopback HTTP server that reads the request and never answers; notes when it hangs up."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.hung_up = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        connection.settimeout(SLEEP_SECONDS)
        with connection, contextlib.suppress(OSError):
            while connection.recv(4096):
                pass  # the request, then nothing: we never answer
            self.hung_up.set()  # recv returned b"": the client closed the connection

    def close(self) -> None:
        self._listener.close()


def test_an_http_request_is_given_up_when_the_runner_gives_up(tmp_path: Path) -> None:
    server = _SilentServer()
    try:
        runner = _runner(tmp_path, {"type": "http", "url": f"http://127.0.0.1:{server.port}/"})
        runner.run_once()
        assert server.hung_up.wait(MARGIN_SECONDS), "the check still waits for an answer"
    finally:
        server.close()


class _TricklingServer(_SilentServer):
    """Answers at once, then sends its body a byte every 0.2 s (bounded: SLEEP_SECONDS)."""

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection, contextlib.suppress(OSError):
            connection.recv(4096)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            for _ in range(SLEEP_SECONDS * 5):
                connection.sendall(b"x")
                time.sleep(0.2)
        self.hung_up.set()  # a send failed: the client closed the connection (or 30 s passed)


def test_an_http_body_that_trickles_in_is_given_up_at_the_timeout() -> None:
    """Every read gets a byte in time; the run as a whole still ends within its timeout."""
    server = _TricklingServer()
    try:
        check = HttpCheck(
            convert(
                {"type": "http", "url": f"http://127.0.0.1:{server.port}/", "timeout": "1s"},
                HttpOptions,
            )
        )
        assert [(m.name, m.value) for m in check.collect()] == [("http_up", 0.0)]
        assert server.hung_up.wait(MARGIN_SECONDS), "the check still reads the body"
    finally:
        server.close()


def _options(kind: str, **extra: Any) -> CheckOptions:
    required = {
        "restic": {"repository": "/srv/restic", "password_file": "/etc/pw"},
        "borg": {"repository": "/srv/borg", "passphrase_file": "/etc/pw"},
        "textfile": {"directory": "/var/lib/textfiles"},
        "statusfile": {"path": "/var/lib/status.json"},
        "marker": {"path": "/var/lib/marker"},
        "files": {"path": "/var/backups"},
        "archive": {"path": "/var/backups", "retention": "7d"},
        "plugin": {"command": "check_dummy"},
        "process": {"match": "sshd"},
        "tcp": {"address": "127.0.0.1:22"},
        "http": {"url": "http://127.0.0.1/"},
    }.get(kind, {})
    options: CheckOptions = convert({"type": kind, **required, **extra}, AnyCheckOptions)  # type: ignore[arg-type]
    return options


@pytest.mark.parametrize("kind", sorted(CHECK_TYPES))
def test_every_check_type_gets_the_runners_timeout(kind: str) -> None:
    """The runner hands each check the timeout it abandons the run at."""
    given: list[float] = []
    seen: list[float] = []

    def build(options: CheckOptions, timeout: float) -> Any:
        given.append(timeout)
        return object()

    for extra in ({"interval": "1s"}, {"interval": "1h", "timeout": "7s"}, {}):
        options = _options(kind, **extra)
        runner = CheckRunner.from_options([options], 60.0, build)
        seen.append(runner.timeouts()[options.instance])
    interval = _options(kind).default_interval or 60.0
    assert given == seen == [1.0, 7.0, min(interval, _options(kind).default_timeout)]
