"""Memory check: physical memory and swap, in bytes and as used shares."""

from __future__ import annotations

import time
from typing import ClassVar

import psutil

from checks.base import CheckFailed, CheckOptions, Clock
from checks.schema import Measurement


class MemoryOptions(CheckOptions, tag="memory", frozen=True):
    """Options of the memory check, which has none of its own."""


class MemoryCheck:
    """Report total, available and used memory and swap."""

    name: ClassVar[str] = "memory"

    def __init__(self, options: MemoryOptions, *, clock: Clock = time.time) -> None:
        self._options = options
        self._clock = clock

    def collect(self) -> list[Measurement]:
        """Return memory and swap figures now."""
        try:
            memory = psutil.virtual_memory()
            swap = psutil.swap_memory()
        except OSError as exc:
            raise CheckFailed(
                f"cannot read memory figures ({exc}); the agent needs read access to /proc/meminfo"
            ) from exc
        now = self._clock()
        check = self._options.instance
        # "Used" is what the kernel cannot hand out without swapping: page cache it can drop
        # counts as available, as in free(1)'s "available" column.
        used = memory.total - memory.available
        figures: list[tuple[str, float, str]] = [
            ("memory_total_bytes", memory.total, "bytes"),
            ("memory_available_bytes", memory.available, "bytes"),
            ("memory_used_bytes", used, "bytes"),
            ("swap_total_bytes", swap.total, "bytes"),
            ("swap_used_bytes", swap.used, "bytes"),
        ]
        if memory.total > 0:
            figures.append(("memory_used_ratio", used / memory.total, "ratio"))
        if swap.total > 0:
            figures.append(("swap_used_ratio", swap.used / swap.total, "ratio"))
        return [
            Measurement(check=check, name=name, value=float(value), unit=unit, timestamp=now)
            for name, value, unit in figures
        ]
