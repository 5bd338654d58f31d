"""CPU check: the share of CPU time spent busy and in each mode since the previous collect."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Final

import psutil

from checks.base import CheckBase, CheckOptions, Clock, reading
from checks.schema import Measurement

_MODES: Final = ("user", "system", "iowait", "idle", "nice", "irq", "softirq", "steal")
# Linux counts guest time inside user and nice already; adding it again would inflate the total.
_COUNTED_ELSEWHERE: Final = frozenset({"guest", "guest_nice"})


def _read_cpu_times() -> dict[str, float]:
    """Return the host's cumulative CPU seconds per mode, summed over all CPUs."""
    return psutil.cpu_times()._asdict()


class CpuOptions(CheckOptions, tag="cpu", frozen=True):
    """Options of the cpu check, which has none of its own."""


class CpuCheck(CheckBase[CpuOptions]):
    """Report the busy share of CPU time and the share spent in each mode."""

    def __init__(
        self,
        options: CpuOptions,
        *,
        cpu_times: Callable[[], Mapping[str, float]] = _read_cpu_times,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(options, clock=clock)
        self._cpu_times = cpu_times
        self._previous: Mapping[str, float] | None = None

    def collect(self) -> list[Measurement]:
        """Return mode shares since the previous collect; the first collect returns none."""
        with reading("read CPU times", "/proc/stat"):
            sample = self._cpu_times()
        previous, self._previous = self._previous, sample
        if previous is None:
            return []
        # Some mode counters step back (iowait may, says proc(5); steal did on some hypervisors,
        # psutil issue 1210): count that as no time rather than negative time.
        deltas = {
            mode: max(0.0, seconds - previous.get(mode, seconds))
            for mode, seconds in sample.items()
            if mode not in _COUNTED_ELSEWHERE
        }
        total = sum(deltas.values())
        if total <= 0:
            # No clock tick since the previous collect: any share would be made up.
            return []
        now = self._clock()
        idle = deltas.get("idle", 0.0) + deltas.get("iowait", 0.0)
        out = [self._measurement("cpu_utilization_ratio", 1.0 - idle / total, now, "ratio")]
        out.extend(
            self._measurement("cpu_mode_ratio", deltas[mode] / total, now, "ratio", {"mode": mode})
            for mode in _MODES
            if mode in deltas
        )
        return out
