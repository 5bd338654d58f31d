"""Processes check: how many processes exist on the host."""

from __future__ import annotations

import time
from typing import ClassVar

import psutil

from checks.base import CheckFailed, CheckOptions, Clock
from checks.schema import Measurement


class ProcessesOptions(CheckOptions, tag="processes", frozen=True):
    """Options of the processes check, which has none of its own."""


class ProcessesCheck:
    """Report the number of processes."""

    name: ClassVar[str] = "processes"

    def __init__(self, options: ProcessesOptions, *, clock: Clock = time.time) -> None:
        self._options = options
        self._clock = clock

    def collect(self) -> list[Measurement]:
        """Return the process count now."""
        try:
            count = len(psutil.pids())
        except OSError as exc:
            raise CheckFailed(
                f"cannot list processes ({exc}); the agent needs read access to /proc"
            ) from exc
        return [
            Measurement(
                check=self._options.instance, name="processes", value=count, timestamp=self._clock()
            )
        ]
