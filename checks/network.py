"""Network check: per-interface traffic, error and drop rates since the previous collect."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Final

import msgspec
import psutil

from checks.base import CheckOptions, Clock, Glob, RatesBase, reading
from checks.schema import Measurement

# (measurement, counter field, unit)
_RATES: Final = (
    ("net_received_bytes_per_second", "bytes_recv", "bytes/s"),
    ("net_sent_bytes_per_second", "bytes_sent", "bytes/s"),
    ("net_receive_errors_per_second", "errin", "1/s"),
    ("net_transmit_errors_per_second", "errout", "1/s"),
    ("net_receive_drops_per_second", "dropin", "1/s"),
    ("net_transmit_drops_per_second", "dropout", "1/s"),
)


class NetworkOptions(CheckOptions, tag="network", frozen=True):
    """Which network interfaces to report."""

    exclude_interfaces: list[Glob] = msgspec.field(  # fnmatch globs
        default_factory=lambda: ["lo"]
    )


# Each interface's cumulative counters: an object with the fields of _RATES, as
# psutil.net_io_counters(pernic=True) returns them.
NicCounters = Mapping[str, object]


def _all_nic_counters() -> NicCounters:
    return psutil.net_io_counters(pernic=True)


class NetworkCheck(RatesBase[NetworkOptions]):
    """Report bytes, errors and drops per second, each way, for each network interface."""

    def __init__(
        self,
        options: NetworkOptions,
        *,
        counters: Callable[[], NicCounters] = _all_nic_counters,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        super().__init__(options, clock=clock, monotonic=monotonic)
        self._counters = counters

    def collect(self) -> list[Measurement]:
        """Return rates since the previous collect; an interface seen first returns none."""
        with reading("read network counters", "/proc/net/dev"):
            interfaces = self._counters()
        return self._rates.per_item(
            interfaces,
            exclude=self._options.exclude_interfaces,
            label="interface",
            fields=_RATES,
            check=self._options.instance,
            at=self._monotonic(),
            now=self._clock(),
        )
