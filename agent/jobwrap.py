"""Run a backup job and record its outcome in a JSON status file for the statusfile check.

Rule 2 of the backup notes: the job does not report on itself, the agent reads what the
wrapper left behind. The file is replaced atomically (temporary file, fsync, rename), so the
agent never reads half of it, and `last_success` survives failed runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from checks.statusfile import SHELLS, parse_time, shell_tool_note

log = logging.getLogger(__name__)

# Shell conventions for a command that could not run, so they read the same as under sh.
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


def run_job(
    name: str,
    argv: list[str],
    status_file: Path,
    *,
    tool: str | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run `argv` (no shell, stdio inherited), write `status_file`, and return the exit code.

    The status file holds job, tool (default: argv[0]'s base name), start, end (Unix seconds),
    exit_code and last_success: the end of this run when it exited 0, else the previous file's.
    A job killed by signal N exits 128+N, as in a shell. Raises OSError when the status file
    cannot be written.

    When argv[0] is a shell and no `tool` is given, the job still runs (a backup is never
    skipped for a missing option), but a warning says to give --tool, and the status file
    carries that as `note`, which the statusfile check puts into the call when the job fails.
    """
    if not argv:
        raise ValueError("no command to run")
    # Fail before the job, not after an hour of backup, when the status cannot be kept.
    status_file.parent.mkdir(parents=True, exist_ok=True)
    previous = _previous_success(status_file)
    shell = Path(argv[0]).name
    note = shell_tool_note(shell, argv[1:]) if tool is None and shell in SHELLS else None
    if note is not None:
        log.warning("job %s: %s", name, note)
    start = clock()
    exit_code = _run(argv)
    end = clock()
    status: dict[str, Any] = {
        "job": name,
        "tool": tool or Path(argv[0]).name,
        "start": start,
        "end": end,
        "exit_code": exit_code,
    }
    if note is not None:
        status["note"] = note
    last_success = end if exit_code == 0 else previous
    if last_success is not None:
        status["last_success"] = last_success
    _write_atomically(status_file, status)
    return exit_code


def _run(argv: list[str]) -> int:
    try:
        process = subprocess.Popen(argv)
    except FileNotFoundError:
        log.error("job command %s not found; check the command after --", argv[0])
        return EXIT_NOT_FOUND
    except PermissionError:
        log.error("job command %s is not executable; check its mode", argv[0])
        return EXIT_NOT_EXECUTABLE
    try:
        returncode = process.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached the job too (same process group): record how it ends.
        returncode = process.wait()
    # Popen reports death by signal N as -N; a shell says 128+N, and so do borg and restic.
    return 128 - returncode if returncode < 0 else returncode


def _previous_success(status_file: Path) -> float | None:
    """Return last_success from the previous status file, or None when there is none."""
    try:
        data = json.loads(status_file.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning(
            "cannot read the previous status file %s (%s); its last_success is lost",
            status_file,
            exc,
        )
        return None
    raw = data.get("last_success") if isinstance(data, dict) else None
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except ValueError as exc:
        log.warning("ignoring last_success in %s: %s", status_file, exc)
        return None


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes it 0600; the agent may run as another user
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
