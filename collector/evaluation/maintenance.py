"""Maintenance windows: ad hoc silences from operators and weekly windows from the config.

While a window covers a (host, rule), the rule's state is still tracked and shown, but no call
is opened or changed. When the window ends, the next evaluation catches up: a problem still
there opens (or updates) its call, and a call whose problem went away is resolved.
"""

from __future__ import annotations

import fnmatch
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from collector.config import WEEKDAYS, MaintenanceConfig
from collector.store.protocols import SilenceStore
from collector.store.records import Silence


@dataclass(frozen=True, slots=True)
class ActiveWindow:
    """A window in force now: an operator's silence or a weekly window from the config."""

    source: str  # "silence N" or "maintenance NAME"
    host_pattern: str
    rule_pattern: str
    starts_at: float
    ends_at: float
    reason: str
    created_by: str  # the operator, or "config"


def weekly_occurrence(window: MaintenanceConfig, now: float) -> tuple[float, float] | None:
    """The (start, end) of the weekly window that covers `now`, if any."""
    zone = zoneinfo.ZoneInfo(window.timezone)
    today = datetime.fromtimestamp(now, zone).date()
    for weekly in window.weekly:
        hours, minutes = divmod(weekly.start_seconds // 60, 60)
        for back in range(8):  # a window lasts at most a week, so it began within 8 days
            day = today - timedelta(days=back)
            if WEEKDAYS[day.weekday()] not in weekly.days:
                continue
            start = datetime(day.year, day.month, day.day, hours, minutes, tzinfo=zone)
            begins = start.timestamp()
            ends = begins + float(weekly.duration)
            if begins <= now < ends:
                return begins, ends
    return None


class MaintenanceCalendar:
    """Answer "is this (host, rule) in a maintenance window now?" without touching the store."""

    def __init__(
        self, windows: Sequence[MaintenanceConfig], store: SilenceStore, now: float
    ) -> None:
        self._windows = tuple(windows)
        self._silences: list[Silence] = []
        self.reload(store, now)

    def reload(self, store: SilenceStore, now: float) -> None:
        """Read the silences that have not ended yet (after a change through the API)."""
        self._silences = store.list_silences(now)

    def silenced(self, host: str, rule: str, now: float) -> bool:
        """Whether a window covers this host and rule at `now`."""
        if not self._silences and not self._windows:
            return False
        for silence in self._silences:
            if (
                silence.active(now)
                and fnmatch.fnmatchcase(host, silence.host_pattern)
                and fnmatch.fnmatchcase(rule, silence.rule_pattern)
            ):
                return True
        for window in self._windows:
            if (
                fnmatch.fnmatchcase(host, window.hosts)
                and fnmatch.fnmatchcase(rule, window.rules)
                and weekly_occurrence(window, now) is not None
            ):
                return True
        return False

    def active(self, now: float) -> list[ActiveWindow]:
        """Every window in force at `now`."""
        found = [
            ActiveWindow(
                f"silence {s.id}",
                s.host_pattern,
                s.rule_pattern,
                s.starts_at,
                s.ends_at,
                s.reason,
                s.created_by,
            )
            for s in self._silences
            if s.active(now)
        ]
        for window in self._windows:
            span = weekly_occurrence(window, now)
            if span is not None:
                found.append(
                    ActiveWindow(
                        f"maintenance {window.name}",
                        window.hosts,
                        window.rules,
                        span[0],
                        span[1],
                        window.reason,
                        "config",
                    )
                )
        return found

    def covering(self, host: str, rule: str, now: float) -> list[ActiveWindow]:
        """The windows in force at `now` that cover this host and rule."""
        return [
            w
            for w in self.active(now)
            if fnmatch.fnmatchcase(host, w.host_pattern)
            and fnmatch.fnmatchcase(rule, w.rule_pattern)
        ]
