"""Uptime check: when the host booted and how long ago that was."""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

from checks.base import CheckBase, CheckOptions, Clock, reading
from checks.schema import Measurement


class UptimeOptions(CheckOptions, tag="uptime", frozen=True):
    """Options of the uptime check, which has none of its own."""


class UptimeCheck(CheckBase[UptimeOptions]):
    """Report the boot time and the seconds since then."""

    def __init__(
        self,
        options: UptimeOptions,
        *,
        boot_time: Callable[[], float] = psutil.boot_time,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(options, clock=clock)
        self._boot_time = boot_time

    def collect(self) -> list[Measurement]:
        """Return the boot time (Unix seconds) and the uptime in seconds."""
        with reading("read the boot time", "/proc/stat"):
            booted = self._boot_time()
        now = self._clock()
        figures = [
            ("uptime_seconds", now - booted, "seconds"),
            ("boot_time_seconds", booted, "seconds"),
        ]
        return self._measurements(figures, now)
