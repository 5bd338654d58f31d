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
from array import array
from collections.abc import Container

from collector.store.records import HistoryStep

SeriesKey = tuple[str, str, str]  # host, metric name, labels key


def series_id(name: str, labels_key: str) -> int:
    """The stored id of a series of one host: a signed 64-bit hash of its name and labels."""
    digest = hashlib.blake2b(f"{name}\x00{labels_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class StepKeeper:
    """The step in progress of each ruled series: five numbers a series, kept in arrays (no
    object per series: at 10,000 hosts there are some 220,000 of them)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._slots: dict[SeriesKey, int] = {}
        self._free: list[int] = []
        self._at = array("q")  # the step's start
        self._count = array("q")
        self._mean = array("d")
        self._low = array("d")
        self._high = array("d")

    def __len__(self) -> int:
        return len(self._slots)

    def add(self, key: SeriesKey, at: float, value: float, resolution: float) -> HistoryStep | None:
        """Count a value reported at `at` into its series' step. Return the step it closes
        (the value opens a later step), or None. Values that are not finite are left out."""
        if not math.isfinite(value):
            return None
        start = math.floor(at // resolution * resolution)
        slot = self._slots.get(key)
        if slot is None:
            self._start(self._new(key), start, value)
            return None
        began = self._at[slot]
        if start > began:
            closed = self._record(key, slot)
            self._start(slot, start, value)
            return closed
        if start < began:
            return None  # an older value (a clock stepped back): the step moved on
        count = self._count[slot] + 1
        self._count[slot] = count
        self._mean[slot] += (value - self._mean[slot]) / count
        self._low[slot] = min(self._low[slot], value)
        self._high[slot] = max(self._high[slot], value)
        return None

    def current(self, key: SeriesKey) -> HistoryStep | None:
        """The step in progress of a series, if it has one."""
        slot = self._slots.get(key)
        return None if slot is None else self._record(key, slot)

    def close(self, key: SeriesKey) -> HistoryStep | None:
        """Forget a series (it is gone); return its step in progress, to be stored."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return None
        self._free.append(slot)
        return self._record(key, slot)

    def keep_only(self, keys: Container[SeriesKey]) -> None:
        """Forget the steps of series not among `keys` (the view was rebuilt without them)."""
        for key in [k for k in self._slots if k not in keys]:
            self._free.append(self._slots.pop(key))

    def close_all(self) -> list[HistoryStep]:
        """Every step in progress, to be stored (the collector stops); forget them."""
        steps = [self._record(key, slot) for key, slot in self._slots.items()]
        self._reset()
        return steps

    def _new(self, key: SeriesKey) -> int:
        if self._free:
            slot = self._slots[key] = self._free.pop()
            return slot
        slot = self._slots[key] = len(self._at)
        for column in (self._at, self._count):
            column.append(0)
        for floats in (self._mean, self._low, self._high):
            floats.append(0.0)
        return slot

    def _start(self, slot: int, start: int, value: float) -> None:
        self._at[slot] = start
        self._count[slot] = 1
        self._mean[slot] = self._low[slot] = self._high[slot] = value

    def _record(self, key: SeriesKey, slot: int) -> HistoryStep:
        low, high = self._low[slot], self._high[slot]
        same = low == high
        return HistoryStep(
            key[0],
            series_id(key[1], key[2]),
            self._at[slot],
            self._mean[slot],
            None if same else low,
            None if same else high,
        )
