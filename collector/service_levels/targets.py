"""The SLA and OLA targets a report holds services and run groups to, read from the config.

This is the one place the report reads targets and business-hours calendars from; the rest of
`service_levels` sees only the small shapes below. A target's time counts in a calendar: the
built-in `always` (around the clock) or business hours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from collector.config import CollectorConfig
from collector.service_levels.period import Span

ALWAYS = "always"


class Hours(Protocol):
    """When a target's time counts."""

    @property
    def name(self) -> str: ...

    def spans(self, start_ts: float, end_ts: float) -> list[Span]:
        """The counted time in [start_ts, end_ts), in order."""
        ...


@dataclass(frozen=True, slots=True)
class AroundTheClock:
    name: str = ALWAYS

    def spans(self, start_ts: float, end_ts: float) -> list[Span]:
        return [(start_ts, end_ts)] if end_ts > start_ts else []


@dataclass(frozen=True, slots=True)
class TimeTarget:
    """So many seconds, counted in `hours`."""

    seconds: float
    hours: Hours


@dataclass(frozen=True, slots=True)
class CallTargets:
    """Response and resolution targets by call severity (CRITICAL, WARNING, ...)."""

    respond: Mapping[str, TimeTarget] = field(default_factory=dict)
    resolve: Mapping[str, TimeTarget] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServiceTargets:
    availability: float | None = None  # a fraction: 0.995
    hours: Hours = AroundTheClock()  # the hours availability counts in
    calls: CallTargets = CallTargets()


@dataclass(frozen=True, slots=True)
class ReportTargets:
    services: Mapping[str, ServiceTargets] = field(default_factory=dict)
    groups: Mapping[str, CallTargets] = field(default_factory=dict)  # OLAs, by run group


def report_targets(config: CollectorConfig) -> ReportTargets:
    """The targets the config sets (none yet: services count around the clock)."""
    del config
    return ReportTargets()
