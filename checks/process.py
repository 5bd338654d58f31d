"""Process check: how many processes match a name or a command line, and what they use."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import psutil

from checks.base import CheckBase, CheckOptions, Clock, reading
from checks.schema import Measurement
from checks.settings import field_error

# What each process is asked for; psutil puts None where it was refused (AccessDenied).
ATTRS = ["name", "cmdline", "username", "memory_info", "cpu_times"]
# Linux keeps this many characters of a process name (TASK_COMM_LEN 16, with the NUL).
COMM_LENGTH = 15


class ProcessOptions(CheckOptions, tag="process", frozen=True):
    """Which processes to count: by exact name, or by a regex over the command line."""

    # The process name, exactly: the full name (psutil's, `ps -o args`), or the 15-character
    # name Linux keeps (`ps -o comm`, `pgrep -x`).
    match: str | None = None
    cmdline: str | None = None  # a regex searched in the arguments joined by spaces
    user: str | None = None  # only processes of this user
    process: str | None = None  # label; defaults to the instance name

    def __post_init__(self) -> None:
        if (self.match is None) == (self.cmdline is None):
            raise field_error("match", "set exactly one of `match` and `cmdline`")
        if self.match is not None and not self.match:
            raise field_error("match", "must not be empty")
        if self.cmdline is not None:
            try:
                re.compile(self.cmdline)
            except re.error as exc:
                raise field_error("cmdline", f"not a valid regular expression: {exc}") from None


def same_name(name: str | None, match: str) -> bool:
    """Whether a process name is `match`: in full, or as the 15 characters Linux keeps.

    psutil gives the full name when it can read the command line, else the 15-character
    comm; a 15-character `match` is a comm, and finds longer names that start with it.
    """
    if name is None:
        return False
    if name == match:
        return True
    return COMM_LENGTH in (len(name), len(match)) and (name[:COMM_LENGTH] == match[:COMM_LENGTH])


def _process_infos() -> Iterable[dict[str, Any]]:
    # process_iter skips processes that exit while it walks (NoSuchProcess) by itself.
    return (process.info for process in psutil.process_iter(ATTRS))


class ProcessCheck(CheckBase[ProcessOptions]):
    """Report the count of matching processes, their summed resident memory and CPU time.

    A process with no command line (a kernel thread, a zombie) never matches `cmdline`. The
    agent itself is not left out: a `cmdline` regex that matches its own arguments counts it.
    """

    def __init__(
        self,
        options: ProcessOptions,
        *,
        processes: Callable[[], Iterable[dict[str, Any]]] = _process_infos,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(options, clock=clock)
        self._processes = processes
        self._pattern = re.compile(options.cmdline) if options.cmdline is not None else None
        self._labels = {"process": options.process or options.instance}

    def matches(self, info: dict[str, Any]) -> bool:
        """Return whether a process (psutil's info dict) is one this check counts."""
        if self._options.user is not None and info.get("username") != self._options.user:
            return False
        if self._pattern is None:
            return same_name(info.get("name"), self._options.match or "")
        cmdline: list[str] | None = info.get("cmdline")
        return bool(cmdline) and self._pattern.search(" ".join(cmdline or ())) is not None

    def collect(self) -> list[Measurement]:
        """Return the count, running flag, and summed RSS and CPU seconds of the matches."""
        count, rss, cpu = 0, 0, 0.0
        with reading("list processes", "/proc"):
            for info in self._processes():
                if not self.matches(info):
                    continue
                count += 1
                # A figure psutil was refused is left out of the sum (the count still holds).
                if info.get("memory_info") is not None:
                    rss += info["memory_info"].rss
                if info.get("cpu_times") is not None:
                    cpu += info["cpu_times"].user + info["cpu_times"].system
        now = self._clock()
        figures: list[tuple[str, float, str]] = [
            ("process_count", count, ""),
            ("process_running", count > 0, ""),
            ("process_rss_bytes", rss, "bytes"),
            ("process_cpu_seconds", cpu, "seconds"),
        ]
        return self._measurements(figures, now)
