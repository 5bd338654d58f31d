"""Who is on call: a run group's weekly rota, with its overrides for holidays and swaps.

The rota turns at `starts` and every week after at the same local time (a handover at Monday
09:00 stays at 09:00 across daylight saving time). An override wins over the rotation while it
lasts; of two overrides at one time, the later one in the config wins.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta

from collector.notify.config import NotifyConfig, Rota, local_time

WEEK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class OnCall:
    """One person on call for a group, from `since` to `until` (Unix times)."""

    group: str
    person: str
    since: float
    until: float
    channels: tuple[str, ...]
    reason: str = ""  # the override's, when one holds


def _wall(at: datetime) -> datetime:
    return at.replace(tzinfo=None)


def _zoned(wall: datetime, zone: zoneinfo.ZoneInfo) -> float:
    return wall.replace(tzinfo=zone).timestamp()


def rotation(rota: Rota, at: float) -> tuple[str, float, float]:
    """The person the weekly rotation puts on call at `at`, and since and until when."""
    zone = zoneinfo.ZoneInfo(rota.timezone)
    start = _wall(local_time(rota.starts, rota.timezone))
    now = _wall(datetime.fromtimestamp(at, zone))
    weeks = (now - start) // WEEK
    since = start + weeks * WEEK
    person = rota.people[weeks % len(rota.people)]
    return person, _zoned(since, zone), _zoned(since + WEEK, zone)


def on_call(config: NotifyConfig, group: str, at: float) -> OnCall | None:
    """Who is on call for `group` at `at`; None when the group has no rota."""
    rota = config.rotas.get(group)
    if rota is None:
        return None
    person, since, until = rotation(rota, at)
    reason = ""
    for override in rota.overrides:
        start = local_time(override.start, rota.timezone).timestamp()
        end = local_time(override.end, rota.timezone).timestamp()
        if start <= at < end:
            person, since, until = override.person, start, end
            reason = override.reason or "override"
        elif reason:
            continue  # an override holds: the rotation's turn does not matter
        elif since < start < until and at < start:
            until = min(until, start)  # this turn is cut short by an override to come
        elif since < end < until and at >= end:
            since = max(since, end)  # ... or began when one ended
    channels = tuple(config.people[person].channels) if person in config.people else ()
    return OnCall(group, person, since, until, channels, reason)
