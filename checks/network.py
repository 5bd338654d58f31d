"""Network check: per-interface traffic, error and drop rates since the previous collect."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import ClassVar, Final, Protocol

import msgspec
import psutil

from checks.base import CheckFailed, CheckOptions, Clock, Glob, RateTracker
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


class NicCounters(Protocol):
    """Cumulative counters of one interface, as psutil.net_io_counters returns them."""

    @property
    def bytes_recv(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def errin(self) -> int: ...
    @property
    def errout(self) -> int: ...
    @property
    def dropin(self) -> int: ...
    @property
    def dropout(self) -> int: ...


def _all_nic_counters() -> Mapping[str, NicCounters]:
    return psutil.net_io_counters(pernic=True)


class NetworkCheck:
    """Report bytes, errors and drops per second, each way, for each network interface."""

    name: ClassVar[str] = "network"

    def __init__(
        self,
        options: NetworkOptions,
        *,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        counters: Callable[[], Mapping[str, NicCounters]] = _all_nic_counters,
    ) -> None:
        self._options = options
        self._clock = clock
        self._monotonic = monotonic
        self._counters = counters
        self._rates = RateTracker(monotonic)

    def collect(self) -> list[Measurement]:
        """Return rates since the previous collect; an interface seen first returns none."""
        try:
            interfaces = self._counters()
        except OSError as exc:
            raise CheckFailed(
                f"cannot read network counters ({exc}); the agent needs read "
                "access to /proc/net/dev"
            ) from exc
        return self._rates.per_item(
            interfaces,
            exclude=self._options.exclude_interfaces,
            label="interface",
            fields=_RATES,
            check=self._options.instance,
            at=self._monotonic(),
            now=self._clock(),
        )
