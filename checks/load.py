"""Load check: the 1, 5 and 15 minute load averages, raw and per logical CPU."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import ClassVar

import psutil

from checks.base import CheckFailed, CheckOptions, Clock
from checks.schema import Measurement

_log = logging.getLogger(__name__)


class LoadOptions(CheckOptions, tag="load", frozen=True):
    """Options of the load check, which has none of its own."""


class LoadCheck:
    """Report the load averages, and the same divided by the number of logical CPUs."""

    name: ClassVar[str] = "load"

    def __init__(
        self,
        options: LoadOptions,
        *,
        clock: Clock = time.time,
        loadavg: Callable[[], tuple[float, float, float]] = psutil.getloadavg,
        cpu_count: Callable[[], int | None] = psutil.cpu_count,
    ) -> None:
        self._options = options
        self._clock = clock
        self._loadavg = loadavg
        self._cpu_count = cpu_count

    def collect(self) -> list[Measurement]:
        """Return the load averages now."""
        try:
            loads = self._loadavg()
        except OSError as exc:
            raise CheckFailed(
                f"cannot read the load average ({exc}); the agent needs read "
                "access to /proc/loadavg"
            ) from exc
        now = self._clock()
        check = self._options.instance
        names = ("load1", "load5", "load15")
        out = [
            Measurement(check=check, name=name, value=load, timestamp=now)
            for name, load in zip(names, loads, strict=True)
        ]
        cores = self._cpu_count()
        if not cores:
            _log.warning(
                "load check: cannot count the logical CPUs, so the *_per_core loads are "
                "left out; give the agent read access to /sys/devices/system/cpu"
            )
            return out
        out.extend(
            Measurement(check=check, name=f"{name}_per_core", value=load / cores, timestamp=now)
            for name, load in zip(names, loads, strict=True)
        )
        return out
