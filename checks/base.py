"""What every check shares: its options base, the check protocol and base classes, and rates."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from fnmatch import fnmatchcase
from typing import Annotated, Any, ClassVar, Generic, Protocol, TypeVar, get_args

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

OptionsT = TypeVar("OptionsT", bound=CheckOptions)


class CheckBase(Generic[OptionsT]):
    """What every check keeps: its validated options and the wall clock it stamps figures with.

    Not a check by itself (no collect). A check's `name` is its options' type tag, so
    `class CpuCheck(CheckBase[CpuOptions])` is the "cpu" check. A check that reads the host
    through functions of its own (tests hand in fakes) takes them as keywords in its __init__.
    """

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            options = next(iter(get_args(base)), None)
            if isinstance(options, type) and issubclass(options, CheckOptions):
                cls.name = str(options.__struct_config__.tag)

    def __init__(self, options: OptionsT, *, clock: Clock = time.time) -> None:
        self._options = options
        self._clock = clock
        self._labels: dict[str, str] = {}  # what every figure carries unless told otherwise
        self._prepare()

    def _prepare(self) -> None:
        """Derive what the check needs from its options, once, at the end of __init__."""

    def _measurements(
        self,
        figures: Iterable[tuple[str, float, str]],
        now: float,
        labels: dict[str, str] | None = None,
    ) -> list[Measurement]:
        """This check's measurements of (name, value, unit) figures that share their labels."""
        return measurements_of(
            self._options.instance, figures, self._labels if labels is None else labels, now
        )

    def _measurement(
        self,
        name: str,
        value: float,
        now: float,
        unit: str = "",
        labels: dict[str, str] | None = None,
    ) -> Measurement:
        return self._measurements([(name, value, unit)], now, labels)[0]


class ProbeBase(CheckBase[OptionsT]):
    """A check that waits on the world (a command, a connection) and must end by a deadline.

    `timeout` is the runner's budget for one run (CheckOptions.timeout_seconds for a check
    built outside a runner); `monotonic` measures the run against it.
    """

    def __init__(
        self,
        options: OptionsT,
        *,
        timeout: float | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        # Set before CheckBase's __init__, which ends with _prepare (and that may use them).
        self._monotonic = monotonic
        self._timeout = timeout if timeout is not None else options.timeout_seconds()
        super().__init__(options, clock=clock)


@contextmanager
def reading(
    what: str, source: str, errors: tuple[type[Exception], ...] = (OSError,)
) -> Iterator[None]:
    """Turn a failed read of the host into CheckFailed: "cannot <what> (...); ... <source>"."""
    try:
        yield
    except errors as exc:
        raise CheckFailed(
            f"cannot {what} ({exc}); the agent needs read access to {source}"
        ) from exc


class OnceWarnings:
    """Say a lasting problem (a broken file) at WARNING once, then at DEBUG until it clears.

    Each collect gathers the keys of the problems it met in `seen`, and ends with
    `forget_except(seen)`: a problem that cleared is said at WARNING again when it comes back.
    """

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._warned: set[Hashable] = set()

    def warn(self, seen: set[Hashable], key: Hashable, message: str, *args: object) -> None:
        """Log `message` for the problem `key`, and record it in `seen`."""
        seen.add(key)
        level = logging.DEBUG if key in self._warned else logging.WARNING
        self._warned.add(key)
        self._log.log(level, message, *args)

    def forget_except(self, seen: set[Hashable]) -> None:
        """Forget the problems not met in this collect."""
        self._warned &= seen


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


class RatesBase(CheckBase[OptionsT]):
    """A check that turns per-item counters (disks, interfaces) into per-second rates."""

    def __init__(
        self, options: OptionsT, *, clock: Clock = time.time, monotonic: Clock = time.monotonic
    ) -> None:
        self._monotonic = monotonic  # what the rates are per second of
        self._rates = RateTracker(monotonic)
        super().__init__(options, clock=clock)
