"""History of every ruled series for the console's graphs: one step per series per resolution.

A ruled series (one that some rule evaluates) counts each value it reports into the step in
progress (mean, lowest, highest), in memory: one small record per series, never the points of
a day. The first value of a later step closes the step; the closed step goes to the store in
the same batch as the report that closed it (`series_history`: one row per host and step,
holding that step's points of the host's series). Graphs read the store when a page is drawn,
and add the step in progress from memory.

A series is named in the store by a 64-bit hash of its metric name and labels (`series_id`):
the points stay small, and a reader always knows which series it wants.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Container
from dataclasses import dataclass

from collector.store.records import HistoryStep

SeriesKey = tuple[str, str, str]  # host, metric name, labels key


def series_id(name: str, labels_key: str) -> int:
    """The stored id of a series of one host: a signed 64-bit hash of its name and labels."""
    digest = hashlib.blake2b(f"{name}\x00{labels_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(slots=True)
class _Step:
    at: int  # the step's start
    count: int
    mean: float
    low: float
    high: float

    def record(self, host: str, series: int) -> HistoryStep:
        same = self.low == self.high
        return HistoryStep(
            host,
            series,
            self.at,
            self.mean,
            None if same else self.low,
            None if same else self.high,
        )


class StepKeeper:
    """The step in progress of each ruled series."""

    def __init__(self) -> None:
        self._steps: dict[SeriesKey, _Step] = {}

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, key: SeriesKey, at: float, value: float, resolution: float) -> HistoryStep | None:
        """Count a value reported at `at` into its series' step. Return the step it closes
        (the value opens a later step), or None. Values that are not finite are left out."""
        if not math.isfinite(value):
            return None
        start = math.floor(at // resolution * resolution)
        step = self._steps.get(key)
        if step is None or start > step.at:
            self._steps[key] = _Step(start, 1, value, value, value)
            return step.record(key[0], series_id(key[1], key[2])) if step else None
        if start < step.at:
            return None  # an older value (a clock stepped back): the step moved on
        step.count += 1
        step.mean += (value - step.mean) / step.count
        step.low = min(step.low, value)
        step.high = max(step.high, value)
        return None

    def current(self, key: SeriesKey) -> HistoryStep | None:
        """The step in progress of a series, if it has one."""
        step = self._steps.get(key)
        return step.record(key[0], series_id(key[1], key[2])) if step else None

    def close(self, key: SeriesKey) -> HistoryStep | None:
        """Forget a series (it is gone); return its step in progress, to be stored."""
        step = self._steps.pop(key, None)
        return step.record(key[0], series_id(key[1], key[2])) if step else None

    def keep_only(self, keys: Container[SeriesKey]) -> None:
        """Forget the steps of series not among `keys` (the view was rebuilt without them)."""
        for key in [k for k in self._steps if k not in keys]:
            del self._steps[key]

    def close_all(self) -> list[HistoryStep]:
        """Every step in progress, to be stored (the collector stops); forget them."""
        steps = [s.record(k[0], series_id(k[1], k[2])) for k, s in self._steps.items()]
        self._steps.clear()
        return steps
