"""Run an external program for a check: argv only, C locale, a timeout, and clear errors."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from checks.base import CheckFailed


@dataclass(frozen=True, slots=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_seconds: float


def time_left(deadline: float, now: float, before: str) -> float:
    """Seconds from `now` to `deadline` (monotonic), for the next command of a run.

    Raises CheckFailed naming the command (`before`) when the check's timeout is used up.
    """
    remaining = deadline - now
    if remaining <= 0:
        raise CheckFailed(f"the check's timeout ran out before {before}; raise the check's timeout")
    return remaining


def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    input_text: str | None = None,
) -> CommandResult:
    """Run `argv` (no shell) and return its result, whatever its exit code.

    Raises CheckFailed when the program is missing, cannot start, or runs past `timeout`. On a
    timeout the whole process group is killed, so a hung child (ssh, a NFS read) goes too.
    """
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
    }
    full_env.update(env or {})
    # Plugins and tools print numbers; the C locale keeps their decimal point a point.
    full_env.update({"LC_ALL": "C", "LANG": "C"})
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError:
        raise CheckFailed(
            f"{argv[0]} not found; install it or set the check's path to it"
        ) from None
    except OSError as exc:
        raise CheckFailed(f"cannot run {argv[0]}: {exc.strerror}") from None
    try:
        stdout, stderr = process.communicate(input_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=5)  # a child that left the group may hold the pipes
        raise CheckFailed(
            f"{argv[0]} did not finish within {timeout:g}s and was killed; "
            "raise the check's timeout or find what hangs"
        ) from None
    return CommandResult(
        tuple(argv), process.returncode, stdout, stderr, time.monotonic() - started
    )
