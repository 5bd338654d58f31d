"""Uptime check: when the host booted and how long ago that was."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

import psutil

from checks.base import CheckFailed, CheckOptions, Clock
from checks.schema import Measurement


class UptimeOptions(CheckOptions, tag="uptime", frozen=True):
    """Options of the uptime check, which has none of its own."""


class UptimeCheck:
    """Report the boot time and the seconds since then."""

    name: ClassVar[str] = "uptime"

    def __init__(
        self,
        options: UptimeOptions,
        *,
        clock: Clock = time.time,
        boot_time: Callable[[], float] = psutil.boot_time,
    ) -> None:
        self._options = options
        self._clock = clock
        self._boot_time = boot_time

    def collect(self) -> list[Measurement]:
        """Return the boot time (Unix seconds) and the uptime in seconds."""
        try:
            booted = self._boot_time()
        except OSError as exc:
            raise CheckFailed(
                f"cannot read the boot time ({exc}); the agent needs read access to /proc/stat"
            ) from exc
        now = self._clock()
        check = self._options.instance
        return [
            Measurement(
                check=check,
                name="uptime_seconds",
                value=now - booted,
                unit="seconds",
                timestamp=now,
            ),
            Measurement(
                check=check, name="boot_time_seconds", value=booted, unit="seconds", timestamp=now
            ),
        ]
