"""Logrotate check: when logrotate last rotated each log, from its state file.

The state file holds a header line (`logrotate state -- version 2`) and one line per log:
`"/var/log/syslog" 2026-11-22-9:16:42`, in local time. Old versions wrote the date alone.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path

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


def parse_status(text: str) -> tuple[dict[str, float], list[int]]:
    """Return {log path: Unix time of its last rotation} and the numbers of unreadable lines."""
    rotations: dict[str, float] = {}
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
        rotations[_ESCAPE.sub(r"\1", match.group("path"))] = when
    return rotations, bad


class LogrotateOptions(CheckOptions, tag="logrotate", frozen=True):
    """Where logrotate keeps its state, and which logs to report (fnmatch globs; default all)."""

    status_file: Glob = "/var/lib/logrotate/status"
    include: list[Glob] = msgspec.field(default_factory=list)


class LogrotateCheck(CheckBase[LogrotateOptions]):
    """Report the time and age of each log's last rotation."""

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
        for file, rotated in sorted(rotations.items()):
            if include and not any(fnmatchcase(file, pattern) for pattern in include):
                continue
            figures = [
                ("logrotate_last_rotation_timestamp_seconds", rotated, "seconds"),
                ("logrotate_last_rotation_age_seconds", now - rotated, "seconds"),
            ]
            out += self._measurements(figures, now, {"file": file})
        if not out:
            why = "matches `include`" if rotations else "is recorded yet (has logrotate run?)"
            raise CheckFailed(f"no log in logrotate status file {path} {why}")
        return out
