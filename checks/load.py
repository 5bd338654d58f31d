"""Load check: the 1, 5 and 15 minute load averages, raw and per logical CPU."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psutil

from checks.base import CheckBase, CheckOptions, Clock, reading
from checks.schema import Measurement

_log = logging.getLogger(__name__)


class LoadOptions(CheckOptions, tag="load", frozen=True):
    """Options of the load check, which has none of its own."""


class LoadCheck(CheckBase[LoadOptions]):
    """Report the load averages, and the same divided by the number of logical CPUs."""

    def __init__(
        self,
        options: LoadOptions,
        *,
        loadavg: Callable[[], tuple[float, float, float]] = psutil.getloadavg,
        cpu_count: Callable[[], int | None] = psutil.cpu_count,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(options, clock=clock)
        self._loadavg = loadavg
        self._cpu_count = cpu_count

    def collect(self) -> list[Measurement]:
        """Return the load averages now."""
        with reading("read the load average", "/proc/loadavg"):
            loads = self._loadavg()
        now = self._clock()
        names = ("load1", "load5", "load15")
        out = [self._measurement(name, load, now) for name, load in zip(names, loads, strict=True)]
        cores = self._cpu_count()
        if not cores:
            _log.warning(
                "load check: cannot count the logical CPUs, so the *_per_core loads are "
                "left out; give the agent read access to /sys/devices/system/cpu"
            )
            return out
        out.extend(
            self._measurement(f"{name}_per_core", load / cores, now)
            for name, load in zip(names, loads, strict=True)
        )
        return out
