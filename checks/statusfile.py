"""Statusfile check: the outcome of a backup job, from the JSON status file it writes.

The file is an object such as `runwatch job run` writes (see agent/jobwrap.py):

    {"job": "restic_data", "tool": "restic", "start": 1795339033.2, "end": 1795339040.9,
     "exit_code": 3, "errors": 1, "last_success": "2026-11-21T09:06:12Z",
     "processed_bytes": 500038, "added_bytes": 108114}

Every key is optional. Times are Unix seconds or ISO 8601 strings; an ISO time without a zone
is local time (as borg 1.x writes it). Measurements are labelled `job` (the `job` option, else
the file's "job", else the file's stem) and `tool` when the file names one.

When the file has no "last_success" but says the run exited 0, the run's end is taken as the
last success: the run was one.
"""

from __future__ import annotations

import glob
import json
import logging
import math
from collections.abc import Callable, Hashable
from datetime import datetime
from pathlib import Path
from typing import Any

from checks.base import CheckBase, CheckFailed, CheckOptions, OnceWarnings
from checks.files import PathGlob, matching_paths
from checks.schema import Measurement
from checks.settings import field_error

_log = logging.getLogger(__name__)

STATUS_OK, STATUS_WARNING, STATUS_ERROR = 0, 1, 2


def _borg_warning(code: int) -> bool:
    # borg 1.x: 1 is a warning. borg 1.4 with BORG_EXIT_CODES=modern and borg 2: 100-127 too.
    return code == 1 or 100 <= code <= 127


# Exit codes that mean "done, with warnings", per tool (see notes/backup-archive.md §1-3):
# restic 3 = some source files unreadable, but the snapshot was made; rsnapshot 2 = warnings
# (rsync 23/24 downgraded).
_WARNING_CODES: dict[str, Callable[[int], bool]] = {
    "restic": lambda code: code == 3,
    "borg": _borg_warning,
    "rsnapshot": lambda code: code == 2,
}


# A job run through one of these has the shell's exit code judged as the shell's own: a
# restic warning (3) inside `sh -c 'restic ...'` counts as a failure unless --tool says restic.
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"})


def tools_named(words: list[str]) -> list[str]:
    """The tools with warning exit codes (restic, borg, ...) that a shell command names."""
    import shlex

    found: list[str] = []
    for word in words:
        try:
            parts = shlex.split(word)
        except ValueError:
            parts = word.split()
        for part in parts:
            name = Path(part).name.lower()
            if name in _WARNING_CODES and name not in found:
                found.append(name)
    return found


def shell_tool_note(shell: str, command: list[str]) -> str:
    """Say that `shell` ran the job, so its exit code is judged without the tool's warnings."""
    named = tools_named(command)
    example = named[0] if named else "restic"
    codes = {"restic": "exit 3", "borg": "exit 1", "rsnapshot": "exit 2"}
    return (
        f"the job ran in the shell `{shell}` without --tool, so its exit code is judged as a "
        f"plain command's: {example}'s warning {codes.get(example, 'code')} counts as a "
        f"failure; add `--tool {example}` to its `runwatch job run` line"
    )


def backup_status(exit_code: int, tool: str | None) -> int:
    """Map a job's exit code to 0 OK, 1 warning or 2 error, knowing the tool's warning codes."""
    if exit_code == 0:
        return STATUS_OK
    is_warning = _WARNING_CODES.get(Path(tool).name.lower() if tool else "")
    if is_warning is not None and is_warning(exit_code):
        return STATUS_WARNING
    return STATUS_ERROR


def parse_time(raw: object) -> float:
    """Return Unix seconds from a number or an ISO 8601 string (no zone: local time)."""
    if isinstance(raw, bool):
        raise ValueError(f"expected Unix seconds or an ISO 8601 time, got {raw!r}")
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            # 3.11 reads "Z" and offsets; restic's nanoseconds are cut to microseconds.
            value = datetime.fromisoformat(raw.strip()).timestamp()
    else:
        raise ValueError(f"expected Unix seconds or an ISO 8601 time, got {raw!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite time, got {raw!r}")
    return value


def _number(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ValueError(f"expected a number, got {raw!r}")
    return float(raw)


def _exit_code(raw: object) -> int:
    value = _number(raw)
    if not value.is_integer():
        raise ValueError(f"expected an integer, got {raw!r}")
    return int(value)


class StatusfileOptions(CheckOptions, tag="statusfile", frozen=True):
    """A JSON status file or a glob of them, and the `job` label (default: from each file)."""

    path: PathGlob
    job: str | None = None

    def __post_init__(self) -> None:
        if self.job is not None and glob.has_magic(self.path):
            raise field_error(
                "job",
                "cannot be set when `path` is a glob: every file would get the same job label; "
                'leave it unset so each file\'s "job" (or name) is used',
            )


class StatusfileCheck(CheckBase[StatusfileOptions]):
    """Report the last run, last success, sizes and file age from each job status file."""

    def _prepare(self) -> None:
        self._warnings = OnceWarnings(_log)  # keyed (file, problem)
        # What the calls should say beside the figures: a status file's `note` (from
        # `runwatch job run`) when its job failed.
        self.last_output: str | None = None
        self._notes: list[str] = []

    def collect(self) -> list[Measurement]:
        """Return the figures of every status file; raise when no file could be read."""
        paths = matching_paths(self._options.path)
        if not paths:
            what = "matches" if glob.has_magic(self._options.path) else "exists at"
            raise CheckFailed(
                f"no status file {what} {self._options.path}; check `path`, or run the job "
                "that writes it"
            )
        now = self._clock()
        self._notes = []
        out: list[Measurement] = []
        problems: list[str] = []
        seen: set[Hashable] = set()
        readable = 0
        for path in paths:
            figures, problem = self._read(Path(path), now, seen)
            out += figures
            if problem is None:
                readable += 1
            else:
                problems.append(problem)
                if len(paths) > 1:
                    self._warnings.warn(seen, (path, "file"), "statusfile check: %s", problem)
        self._warnings.forget_except(seen)
        self.last_output = "; ".join(self._notes) or None
        if not readable:
            raise CheckFailed("; ".join(problems[:3]), measurements=out)
        return out

    def _read(
        self, path: Path, now: float, seen: set[Hashable]
    ) -> tuple[list[Measurement], str | None]:
        """Return a file's figures, and what is wrong with it if it could not be read."""
        try:
            st = path.stat()
            text = path.read_bytes()
        except OSError as exc:
            return [], f"cannot read {path}: {exc.strerror or exc}; give the agent access to it"
        figures = [("backup_statusfile_age_seconds", now - st.st_mtime, "seconds")]
        labels = {"job": self._options.job or path.stem}
        problem = None
        try:
            data = json.loads(text)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            problem = f"{path} is not valid JSON ({exc}); fix the job that writes it"
        else:
            if isinstance(data, dict):
                labels, more = self._figures(path, data, now, seen)
                figures += more
            else:
                kind = type(data).__name__
                problem = f"{path} holds a JSON {kind}, not an object; fix the job that writes it"
        return self._measurements(figures, now, labels), problem

    def _figures(
        self, path: Path, data: dict[str, Any], now: float, seen: set[Hashable]
    ) -> tuple[dict[str, str], list[tuple[str, float, str]]]:
        """Return the labels and (name, value, unit) figures of one status object."""
        job = self._options.job or (data["job"] if isinstance(data.get("job"), str) else None)
        labels = {"job": job or path.stem}
        tool = data.get("tool")
        if isinstance(tool, str) and tool:
            labels["tool"] = tool
        else:
            tool = None
        fields = self._fields(path, data, seen)
        figures: list[tuple[str, float, str]] = []
        start, end = fields.get("start"), fields.get("end")
        last_run = end if end is not None else start
        if last_run is not None:
            figures.append(("backup_last_run_timestamp_seconds", last_run, "seconds"))
        exit_code = fields.get("exit_code")
        if exit_code is not None:
            code = int(exit_code)
            figures.append(("backup_last_exit_code", code, ""))
            figures.append(("backup_last_status", backup_status(code, tool), ""))
            note = data.get("note")
            if code != 0 and isinstance(note, str) and note:
                self._notes.append(f"job {labels['job']}: {note}")
        last_success = fields.get("last_success")
        if last_success is None and exit_code == 0:
            last_success = last_run
        if last_success is not None:
            figures.append(("backup_last_success_timestamp_seconds", last_success, "seconds"))
            figures.append(("backup_last_success_age_seconds", now - last_success, "seconds"))
        if start is not None and end is not None:
            figures.append(("backup_last_duration_seconds", end - start, "seconds"))
        for key, name, unit in (
            ("errors", "backup_last_errors", ""),
            ("processed_bytes", "backup_last_processed_bytes", "bytes"),
            ("added_bytes", "backup_last_added_bytes", "bytes"),
        ):
            if (value := fields.get(key)) is not None:
                figures.append((name, value, unit))
        return labels, figures

    def _fields(self, path: Path, data: dict[str, Any], seen: set[Hashable]) -> dict[str, float]:
        """Return the known keys that hold a usable value; warn about each one that does not."""
        parsers = {
            "start": parse_time,
            "end": parse_time,
            "last_success": parse_time,
            "exit_code": _exit_code,
            "errors": _number,
            "processed_bytes": _number,
            "added_bytes": _number,
        }
        out: dict[str, float] = {}
        for key, parse in parsers.items():
            raw = data.get(key)
            if raw is None:
                continue
            try:
                out[key] = parse(raw)
            except ValueError as exc:
                self._warnings.warn(
                    seen,
                    (str(path), key),
                    "statusfile check: ignoring %r in %s: %s; fix the job that writes it",
                    key,
                    path,
                    exc,
                )
        return out
