"""Keep the agent running where systemd doesn't: restart it when it fails, with a pid file.

`runwatch supervise --pid-file F --log-file L -- COMMAND...` detaches (so an SSH session can
end), writes its own PID to F, runs COMMAND with its output in L, and restarts it after a
failure the way systemd's `Restart=on-failure` would. SIGTERM stops the command and then the
supervisor; SIGHUP is passed on (the agent reloads its config).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupervisorOptions:
    argv: list[str]
    pid_file: Path
    log_file: Path
    restart_delay_seconds: float = 5.0
    stop_timeout_seconds: float = 10.0


def running_pid(pid_file: Path) -> int | None:
    """The PID in the file if that process is alive and is a supervisor of this very file."""
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if str(pid_file).encode() in cmdline else None


class AgentSupervisor:
    """Run one command until told to stop, restarting it after a failure."""

    def __init__(self, options: SupervisorOptions) -> None:
        self.options = options
        self._stopping = False
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def stopping(self) -> bool:
        """Set by SIGTERM (a signal handler), so it may change between any two lines."""
        return self._stopping

    def _on_term(self, signum: int, _frame: object) -> None:
        self._stopping = True
        self._forward(signal.SIGTERM)

    def _on_hup(self, _signum: int, _frame: object) -> None:
        self._forward(signal.SIGHUP)

    def _forward(self, sig: int) -> None:
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(sig)

    def run(self, output: IO[bytes]) -> int:
        """Supervise until SIGTERM, or until the command exits 0 by itself."""
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)
        code = 0
        while not self._stopping:
            self._child = subprocess.Popen(
                self.options.argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output
            )
            code = self._child.wait()
            if self.stopping:
                break
            if code == 0:
                log.info("supervisor: %s exited 0 by itself; not restarting", self.options.argv[0])
                break
            log.warning(
                "supervisor: the command exited with %d; restarting in %gs",
                code,
                self.options.restart_delay_seconds,
            )
            deadline = time.monotonic() + self.options.restart_delay_seconds
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.1)
        return code

    def stop_child(self) -> None:
        """Wait for the command to end after SIGTERM; kill it if it overstays."""
        child = self._child
        if child is None or child.poll() is not None:
            return
        try:
            child.wait(self.options.stop_timeout_seconds)
        except subprocess.TimeoutExpired:
            log.error(
                "supervisor: the command ignored SIGTERM for %gs; killing it",
                self.options.stop_timeout_seconds,
            )
            child.kill()
            child.wait()


def _write_pid(pid_file: Path) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_name(pid_file.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
    os.replace(tmp, pid_file)


def supervise(options: SupervisorOptions) -> int:
    """Detach, then supervise. The caller returns once the pid file is written (0) or not (1)."""
    if (pid := running_pid(options.pid_file)) is not None:
        print(f"already running as pid {pid} ({options.pid_file})", file=sys.stderr)
        return 1
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        # The caller: wait until the supervisor says it is in place, then report.
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            word = pipe.read().decode(errors="replace")
        if word.startswith("ok"):
            return 0
        print(f"the supervisor did not start: {word or 'no reason given'}", file=sys.stderr)
        return 1
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    # The supervisor: its own session, no terminal, output to the log file.
    try:
        options.log_file.parent.mkdir(parents=True, exist_ok=True)
        output = options.log_file.open("ab", buffering=0)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
        os.chdir("/")
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            force=True,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        _write_pid(options.pid_file)
    except OSError as exc:
        os.write(write_end, f"{exc}".encode())
        os._exit(1)
    os.write(write_end, b"ok")
    os.close(write_end)
    supervisor = AgentSupervisor(options)
    code = 1
    try:
        code = supervisor.run(output)
        supervisor.stop_child()
    finally:
        with contextlib.suppress(OSError):
            if running_pid(options.pid_file) == os.getpid():
                options.pid_file.unlink()
    os._exit(code)
