"""CPU check: the share of CPU time spent busy and in each mode since the previous collect."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import ClassVar, Final

import psutil

from checks.base import CheckFailed, CheckOptions, Clock
from checks.schema import Measurement

_MODES: Final = ("user", "system", "iowait", "idle", "nice", "irq", "softirq", "steal")
# Linux counts guest time inside user and nice already; adding it again would inflate the total.
_COUNTED_ELSEWHERE: Final = frozenset({"guest", "guest_nice"})


def _read_cpu_times() -> dict[str, float]:
    """Return the host's cumulative CPU seconds per mode, summed over all CPUs."""
    return psutil.cpu_times()._asdict()


class CpuOptions(CheckOptions, tag="cpu", frozen=True):
    """Options of the cpu check, which has none of its own."""


class CpuCheck:
    """Report the busy share of CPU time and the share spent in each mode."""

    name: ClassVar[str] = "cpu"

    def __init__(
        self,
        options: CpuOptions,
        *,
        clock: Clock = time.time,
        cpu_times: Callable[[], Mapping[str, float]] = _read_cpu_times,
    ) -> None:
        self._options = options
        self._clock = clock
        self._cpu_times = cpu_times
        self._previous: Mapping[str, float] | None = None

    def collect(self) -> list[Measurement]:
        """Return mode shares since the previous collect; the first collect returns none."""
        try:
            sample = self._cpu_times()
        except OSError as exc:
            raise CheckFailed(
                f"cannot read CPU times ({exc}); the agent needs read access to /proc/stat"
            ) from exc
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
        check = self._options.instance
        idle = deltas.get("idle", 0.0) + deltas.get("iowait", 0.0)
        out = [
            Measurement(
                check=check,
                name="cpu_utilization_ratio",
                value=1.0 - idle / total,
                unit="ratio",
                timestamp=now,
            )
        ]
        out.extend(
            Measurement(
                check=check,
                name="cpu_mode_ratio",
                value=deltas[mode] / total,
                unit="ratio",
                labels={"mode": mode},
                timestamp=now,
            )
            for mode in _MODES
            if mode in deltas
        )
        return out
