"""Logrotate check: when logrotate last rotated each log, from its state file.

The state file holds a header line (`logrotate state -- version 2`) and one line per log:
`"/var/log/syslog" 2026-11-22-9:16:42`, in local time. Old versions wrote the date alone.

A log logrotate has only seen, never rotated, gets a placeholder: the hour it was first seen,
on the hour (logrotate.c newState keeps tm_hour, tm_mday, tm_mon and tm_year, and zeroes the
minutes and seconds; versions before 3.9 zeroed the hour too, so it was midnight). A real
rotation stamps the time to the second. An entry on the hour to the second is therefore read
as "never rotated" unless a rotated copy (`<log>.N...` or `<log>-...`) lies next to the log:
a rotation that happened in the first second of an hour and left its copy elsewhere (`olddir`)
reads as never rotated. Date-only entries come from versions that wrote every entry that way,
and are read as rotations at that midnight.
"""

from __future__ import annotations

import glob
import logging
import re
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import NamedTuple

import msgspec

from checks.base import CheckBase, CheckFailed, CheckOptions, Glob
from checks.schema import Measurement

_log = logging.getLogger(__name__)

_ENTRY = re.compile(
    r'^"(?P<path>(?:[^"\\]|\\.)*)"\s+'
    r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})"
    r"(?:-(?P<hour>\d{1,2}):(?P<minute>\d{1,2}):(?P<second>\d{1,2}))?\s*$"
)
_ESCAPE = re.compile(r"\\(.)")


class StateEntry(NamedTuple):
    """One log's line in the state file."""

    at: float  # Unix time of the stamp (local time in the file)
    on_the_hour: bool  # a time part of hh:0:0: logrotate's placeholder, or a rotation then


def parse_status(text: str) -> tuple[dict[str, StateEntry], list[int]]:
    """Return {log path: its entry} and the numbers of unreadable lines."""
    rotations: dict[str, StateEntry] = {}
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("logrotate state"):
            continue
        match = _ENTRY.match(line)
        if match is None:
            bad.append(number)
            continue
        year, month, day, hour, minute, second = (
            int(match.group(k) or 0) for k in ("year", "month", "day", "hour", "minute", "second")
        )
        try:
            # A naive datetime is local time, which is what logrotate writes.
            when = datetime(year, month, day, hour, minute, second).timestamp()
        except ValueError:
            bad.append(number)
            continue
        on_the_hour = match.group("hour") is not None and minute == 0 and second == 0
        rotations[_ESCAPE.sub(r"\1", match.group("path"))] = StateEntry(when, on_the_hour)
    return rotations, bad


class LogrotateOptions(CheckOptions, tag="logrotate", frozen=True):
    """Where logrotate keeps its state, and which logs to report (fnmatch globs; default all)."""

    status_file: Glob = "/var/lib/logrotate/status"
    include: list[Glob] = msgspec.field(default_factory=list)


def _has_rotated_copy(log: str) -> bool:
    """Whether a rotated copy of `log` lies next to it (log.1, log.1.gz, log-20261202...)."""
    escaped = glob.escape(log)
    return any(glob.iglob(escaped + ".[0-9]*")) or any(glob.iglob(escaped + "-*"))


class LogrotateCheck(CheckBase[LogrotateOptions]):
    """Report the time and age of each log's last rotation, or that it was never rotated.

    `last_output` names the logs never rotated, with the hour logrotate first saw them.
    """

    last_output: str | None = None

    def collect(self) -> list[Measurement]:
        """Return the last rotation time and age of every included log in the state file."""
        path = Path(self._options.status_file)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            raise CheckFailed(
                f"logrotate status file {path} does not exist; set `status_file` to the file "
                "logrotate writes (its --state option; Debian: /var/lib/logrotate/status)"
            ) from None
        except OSError as exc:
            raise CheckFailed(
                f"cannot read logrotate status file {path} (`status_file`): "
                f"{exc.strerror or exc}; give the agent read access to it"
            ) from exc
        rotations, bad = parse_status(text)
        if bad:
            _log.warning(
                "logrotate check: left out %d unreadable lines of %s (first: line %d); is "
                "`status_file` a logrotate state file?",
                len(bad),
                path,
                bad[0],
            )
        include = self._options.include
        now = self._clock()
        out: list[Measurement] = []
        never: list[str] = []
        for file, entry in sorted(rotations.items()):
            if include and not any(fnmatchcase(file, pattern) for pattern in include):
                continue
            if entry.on_the_hour and not _has_rotated_copy(file):
                seen = datetime.fromtimestamp(entry.at).strftime("%Y-%m-%d %H:%M")
                never.append(f"{file} (seen since {seen})")
                out.append(self._measurement("logrotate_never_rotated", 1, now, "", {"file": file}))
                continue
            figures = [
                ("logrotate_never_rotated", 0, ""),
                ("logrotate_last_rotation_timestamp_seconds", entry.at, "seconds"),
                ("logrotate_last_rotation_age_seconds", now - entry.at, "seconds"),
            ]
            out += self._measurements(figures, now, {"file": file})
        self.last_output = f"never rotated: {', '.join(never)}" if never else None
        if not out:
            why = "matches `include`" if rotations else "is recorded yet (has logrotate run?)"
            raise CheckFailed(f"no log in logrotate status file {path} {why}")
        return out
