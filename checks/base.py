"""What every check shares: its options base, the check protocol, and counter-to-rate helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from fnmatch import fnmatchcase
from typing import Annotated, ClassVar, Protocol

import msgspec

from checks.schema import Measurement
from checks.settings import Duration

# An fnmatch glob in check options (mountpoints, devices, interfaces).
Glob = Annotated[str, msgspec.Meta(min_length=1)]


class CheckOptions(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    """Options common to every check. Each check type subclasses this with `tag="<type>"`."""

    name: str | None = None  # instance name; defaults to the type
    interval: Duration | None = None  # defaults to the type's default_interval, else the agent's
    timeout: Duration | None = None  # defaults to min(interval, the type's default_timeout)

    # Slow probes (restic, borg, apt) override these: they run every 15 minutes or more and may
    # take minutes, and must never be scheduled as often as the fast system checks.
    default_interval: ClassVar[float | None] = None
    default_timeout: ClassVar[float] = 30.0

    @property
    def type(self) -> str:
        return str(self.__struct_config__.tag)

    def interval_seconds(self, agent_interval: float | None = None) -> float | None:
        """How often the check runs: `interval`, else the type's default, else the agent's."""
        interval = self.interval or self.default_interval or agent_interval
        return float(interval) if interval is not None else None

    def timeout_seconds(self, agent_interval: float | None = None) -> float:
        """The one rule for a check's timeout: `timeout`, else min(interval, default_timeout).

        The runner abandons a run at this timeout and hands the same figure to the check, whose
        processes and requests live on it (issue 18). Without the agent's interval (a check
        built outside an agent) the type's own default interval stands in.
        """
        if self.timeout is not None:
            return float(self.timeout)
        interval = self.interval_seconds(agent_interval)
        return min(interval, self.default_timeout) if interval else self.default_timeout

    @property
    def instance(self) -> str:
        return self.name or self.type


def measurements_of(
    check: str, figures: Iterable[tuple[str, float, str]], labels: dict[str, str], timestamp: float
) -> list[Measurement]:
    """Build one run's measurements from (name, value, unit) figures that share their labels."""
    return [
        Measurement(
            check=check,
            name=name,
            value=float(value),
            unit=unit,
            labels=labels,
            timestamp=timestamp,
        )
        for name, value, unit in figures
    ]


class CheckFailed(Exception):
    """A check could not measure. The message says what the user can change.

    `measurements` are what it could still say, e.g. `backup_probe_success 0`: they are
    reported with the error, so a probe that never worked still has a series to be UNKNOWN on.
    """

    def __init__(self, message: str, measurements: list[Measurement] | None = None) -> None:
        super().__init__(message)
        self.measurements = measurements or []


class Check(Protocol):
    """A check reads the host and returns measurements, or raises. It never sleeps or sends.

    A check may also set `last_output` (text such as a plugin's status line) during collect();
    the runner sends it along, and the collector quotes it in calls.
    """

    name: ClassVar[str]

    def collect(self) -> list[Measurement]: ...


Clock = Callable[[], float]


# What a check adds to RateTracker.per_item for one item: (item, counters, labels, seen keys).
ItemMore = Callable[[str, object, dict[str, str], set[Hashable]], Iterable[Measurement]]


class RateTracker:
    """Turn monotonically increasing counters into per-second rates.

    The first sample of a key yields no rate, and neither does a counter that went backwards
    (a reset or wrap): both would be bogus values that trip thresholds.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[Hashable, tuple[float, float]] = {}

    def rate(self, key: Hashable, counter: float, now: float | None = None) -> float | None:
        """Return the per-second rate since the previous sample of `key`, or None."""
        at = self._clock() if now is None else now
        previous = self._last.get(key)
        self._last[key] = (at, counter)
        if previous is None:
            return None
        elapsed = at - previous[0]
        delta = counter - previous[1]
        if elapsed <= 0 or delta < 0:
            return None
        return delta / elapsed

    def rates(
        self,
        item: str,
        counters: object,
        fields: Iterable[tuple[str, str, str]],
        at: float,
        seen: set[Hashable],
    ) -> Iterator[tuple[str, float, str]]:
        """Yield (measurement, rate, unit) for each (measurement, counter field, unit) of an item
        (a disk, an interface) that has a rate yet; record the keys used in `seen`."""
        for name, field, unit in fields:
            key = (item, field)
            seen.add(key)
            rate = self.rate(key, getattr(counters, field), at)
            if rate is not None:
                yield name, rate, unit

    def per_item(
        self,
        items: Mapping[str, object],
        *,
        exclude: Iterable[str],
        label: str,
        fields: Iterable[tuple[str, str, str]],
        check: str,
        at: float,
        now: float,
        more: ItemMore | None = None,
    ) -> list[Measurement]:
        """One collect of per-item counters (disks, interfaces): the rates of `fields` for each
        item no `exclude` glob matches, labelled `{label: item}`, plus what `more` adds for it;
        the state of items no longer there is dropped. An item seen first has no rates yet."""
        seen: set[Hashable] = set()
        out: list[Measurement] = []
        for item, counters in items.items():
            if any(fnmatchcase(item, p) for p in exclude):
                continue
            labels = {label: item}
            out.extend(
                measurements_of(check, self.rates(item, counters, fields, at, seen), labels, now)
            )
            if more is not None:
                out.extend(more(item, counters, labels, seen))
        self.forget_except(seen)
        return out

    def forget_except(self, keys: set[Hashable]) -> None:
        """Drop state for keys no longer seen (a removed disk or interface)."""
        for key in [k for k in self._last if k not in keys]:
            del self._last[key]
