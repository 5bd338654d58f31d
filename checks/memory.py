"""Memory check: physical memory and swap, in bytes and as used shares."""

from __future__ import annotations

import psutil

from checks.base import CheckBase, CheckOptions, reading
from checks.schema import Measurement


class MemoryOptions(CheckOptions, tag="memory", frozen=True):
    """Options of the memory check, which has none of its own."""


class MemoryCheck(CheckBase[MemoryOptions]):
    """Report total, available and used memory and swap."""

    def collect(self) -> list[Measurement]:
        """Return memory and swap figures now."""
        with reading("read memory figures", "/proc/meminfo"):
            memory = psutil.virtual_memory()
            swap = psutil.swap_memory()
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
        return self._measurements(figures, self._clock())
