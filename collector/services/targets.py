"""SLA and OLA targets in the collector config, and their checks at load.

A service's `sla:` is what its users are promised: an availability in percent over a month,
counted in a calendar's business hours (or `always`), and per call severity the longest time
to respond and to resolve. A run group's `ola:` is what the group promises the others: response
and resolution times per severity, in a calendar. Times to respond and resolve count only the
calendar's business hours. Calendar names and severities are checked in `check_targets`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal

import msgspec

from checks.settings import ConfigError, Duration, field_error
from collector.services.calendar import ALWAYS, calendar_problem

# The severities a call carries (collector.evaluation.rules.Severity, less OK).
SEVERITIES = ("CRITICAL", "WARNING", "UNKNOWN", "STALE")


class _Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class _TimeTargets(_Config, frozen=True):
    calendar: Annotated[str, msgspec.Meta(max_length=100)] = ALWAYS
    respond: dict[str, Duration] = {}  # severity -> the longest time to a person's response
    resolve: dict[str, Duration] = {}  # severity -> the longest time to resolution

    def respond_seconds(self, severity: str) -> float | None:
        """The response target for a call of this severity, in business seconds, or None."""
        return _lookup(self.respond, severity)

    def resolve_seconds(self, severity: str) -> float | None:
        """The resolution target for a call of this severity, in business seconds, or None."""
        return _lookup(self.resolve, severity)


def _lookup(targets: Mapping[str, Duration], severity: str) -> float | None:
    for key, value in targets.items():
        if key.upper() == severity.upper():
            return float(value)
    return None


class SlaConfig(_TimeTargets, frozen=True):
    """A service's targets: availability (percent of the counted time in a month) and, per
    severity, response and resolution times of the calls that affect it."""

    availability: float | None = None  # percent, in (0, 100]; None: no availability target
    period: str = "month"  # the report covers calendar months
    # Whether time in `degraded` counts as up (the default) or as down. Either way the report
    # gives its seconds.
    degraded: Literal["up", "down"] = "up"

    def __post_init__(self) -> None:
        if self.period != "month":
            raise field_error(
                "period", f"{self.period!r}: only `month` is supported (reports cover months)"
            )
        if self.availability is not None and not 0 < self.availability <= 100:
            raise field_error(
                "availability",
                f"must be a percentage above 0 and at most 100, got {self.availability:g}",
            )

    @property
    def degraded_counts_as_up(self) -> bool:
        return self.degraded == "up"


class OlaConfig(_TimeTargets, frozen=True):
    """A run group's targets for its own calls: response and resolution per severity."""


def prevalidate_targets(data: Mapping[str, Any], source: str | None) -> None:
    """Check the durations of the targets in the raw config, so that an error names the
    severity it belongs to (decoding alone would not)."""
    for section, kind in (("services", "sla"), ("groups", "ola")):
        entries = data.get(section)
        if not isinstance(entries, Mapping):
            continue
        for name, entry in entries.items():
            target = entry.get(kind) if isinstance(entry, Mapping) else None
            if not isinstance(target, Mapping):
                continue
            for key in ("respond", "resolve"):
                times = target.get(key)
                if not isinstance(times, Mapping):
                    continue
                for severity, value in times.items():
                    try:
                        Duration.parse(value)
                    except ValueError as exc:
                        raise ConfigError(
                            f"{section} -> {name} -> {kind} -> {key} -> {severity}",
                            str(exc),
                            source=source,
                        ) from None


def check_targets(
    calendars: Collection[str],
    services: Mapping[str, SlaConfig | None],
    groups: Mapping[str, OlaConfig | None],
    source: str | None,
) -> None:
    """Check the calendars and severities the targets name, with their key paths."""
    known = {name: None for name in calendars}
    for kind, section, table in (("sla", "services", services), ("ola", "groups", groups)):
        for name, target in table.items():
            if target is None:
                continue
            where = f"{section} -> {name} -> {kind}"
            problem = calendar_problem(target.calendar, known)
            if problem is not None:
                raise ConfigError(f"{where} -> calendar", problem, source=source)
            for key in ("respond", "resolve"):
                _check_severities(getattr(target, key), f"{where} -> {key}", source)


def _check_severities(targets: Mapping[str, Duration], where: str, source: str | None) -> None:
    seen: set[str] = set()
    for severity, value in targets.items():
        if severity.upper() not in SEVERITIES:
            raise ConfigError(
                f"{where} -> {severity}",
                f"unknown severity {severity!r} (severities: {', '.join(SEVERITIES)})",
                source=source,
            )
        if severity.upper() in seen:
            raise ConfigError(
                f"{where} -> {severity}",
                f"severity {severity.upper()} is given twice",
                source=source,
            )
        seen.add(severity.upper())
        if float(value) <= 0:
            raise ConfigError(f"{where} -> {severity}", "must be more than 0s", source=source)
