"""Processes check: how many processes exist on the host."""

from __future__ import annotations

import psutil

from checks.base import CheckBase, CheckOptions, reading
from checks.schema import Measurement


class ProcessesOptions(CheckOptions, tag="processes", frozen=True):
    """Options of the processes check, which has none of its own."""


class ProcessesCheck(CheckBase[ProcessesOptions]):
    """Report the number of processes."""

    def collect(self) -> list[Measurement]:
        """Return the process count now."""
        with reading("list processes", "/proc"):
            count = len(psutil.pids())
        return [self._measurement("processes", count, self._clock())]
