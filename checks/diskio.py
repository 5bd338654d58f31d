"""Disk I/O check: per-device read and write rates and busy share since the previous collect."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from typing import Final

import msgspec
import psutil

from checks.base import CheckOptions, Clock, Glob, RatesBase, reading
from checks.schema import Measurement

# (measurement, counter field, unit)
_RATES: Final = (
    ("disk_read_bytes_per_second", "read_bytes", "bytes/s"),
    ("disk_written_bytes_per_second", "write_bytes", "bytes/s"),
    ("disk_reads_per_second", "read_count", "1/s"),
    ("disk_writes_per_second", "write_count", "1/s"),
)


class DiskioOptions(CheckOptions, tag="diskio", frozen=True):
    """Which block devices to report."""

    # Loop, RAM and optical devices mirror or bypass real disks; their rates mislead.
    exclude_devices: list[Glob] = msgspec.field(  # fnmatch globs
        default_factory=lambda: ["loop*", "ram*", "zram*", "sr*", "fd*"]
    )


# Each device's cumulative counters: an object with the fields of _RATES (and, on Linux and
# FreeBSD, busy_time), as psutil.disk_io_counters(perdisk=True) returns them.
DiskCounters = Mapping[str, object]


def _all_disk_counters() -> DiskCounters | None:
    return psutil.disk_io_counters(perdisk=True)


class DiskioCheck(RatesBase[DiskioOptions]):
    """Report bytes and operations per second, and the busy share, for each block device."""

    def __init__(
        self,
        options: DiskioOptions,
        *,
        counters: Callable[[], DiskCounters | None] = _all_disk_counters,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        super().__init__(options, clock=clock, monotonic=monotonic)
        self._counters = counters

    def collect(self) -> list[Measurement]:
        """Return rates since the previous collect; a device seen first returns none."""
        where = "/proc/diskstats, or remove the diskio check"
        with reading("read disk I/O counters", where, (OSError, NotImplementedError)):
            # psutil answers None or {} where no block device is visible, as in many containers:
            # nothing to report is not a failure.
            devices = self._counters() or {}
        at = self._monotonic()
        now = self._clock()
        check = self._options.instance

        def busy(
            device: str, counters: object, labels: dict[str, str], seen: set[Hashable]
        ) -> list[Measurement]:
            busy_ms = getattr(counters, "busy_time", None)  # Linux and FreeBSD only
            if busy_ms is None:
                return []
            key = (device, "busy_time")
            seen.add(key)
            rate = self._rates.rate(key, busy_ms, at)
            if rate is None:
                return []
            # Busy ms per second. The kernel books busy time as I/O starts and ends, so one
            # interval can be charged some of the previous one's: cap at fully busy.
            return [
                self._measurement("disk_busy_ratio", min(1.0, rate / 1000), now, "ratio", labels)
            ]

        return self._rates.per_item(
            devices,
            exclude=self._options.exclude_devices,
            label="device",
            fields=_RATES,
            check=check,
            at=at,
            now=now,
            more=busy,
        )
