"""SLA and OLA arithmetic: pure functions, no clock, no store.

- `availability`: a service's availability over a period from its state changes, counted only
  in its target's calendar. OPERATIONAL is up, OUTAGE down, DEGRADED up (or down, as the target
  says; its seconds are given either way). MAINTENANCE (a silence or window covers every
  problem) counts as up, with its own seconds: planned work never counts against a service, and
  a window can only turn down time into up time, never up time into anything else (leaving it
  out of the counted time instead would lower the percentage when a window covers time that
  was up anyway, such as a degraded stretch). Time before the first known state and time no
  collector watched are not counted. Extra `maintenance` spans cover the problems within them
  the same way.
- `deadline`: how a call stands against one response or resolution target: the business time
  taken, when it falls due, whether it breached.
- `call_targets`: the targets a call is held to (its group's OLA, its services' SLAs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from collector.services.calendar import BusinessCalendar, Span
from collector.services.state import ServiceState
from collector.services.targets import OlaConfig, SlaConfig

# The states as plain numbers: compared once per state span.
_OPERATIONAL, _MAINTENANCE, _OUTAGE = (
    int(ServiceState.OPERATIONAL),
    int(ServiceState.MAINTENANCE),
    int(ServiceState.OUTAGE),
)


@dataclass(frozen=True, slots=True)
class Availability:
    """A service's availability over a period, within its calendar's business hours."""

    counted_seconds: float  # business time with a known state, watched: up + down
    up_seconds: float  # operational and maintenance, and degraded when it counts as up
    down_seconds: float  # outage, and degraded when it counts as down
    operational_seconds: float
    degraded_seconds: float  # counted, as up or down (see `degraded_counts_as_up`)
    outage_seconds: float
    maintenance_seconds: float  # counted as up: every problem was covered
    unknown_seconds: float  # business time with no known state, or that no collector watched
    degraded_counts_as_up: bool
    percent: float | None  # up / counted x 100; None: nothing counted
    target_percent: float | None
    met: bool | None  # None: no target, or nothing counted
    allowed_down_seconds: float | None  # (100 - target) % of the counted time
    budget_left_seconds: float | None  # allowed - down: below 0 when the target is missed
    budget_left_percent: float | None  # of the allowed downtime; None when none is allowed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def state_spans(
    changes: Iterable[tuple[float, int]], start: float, end: float, initial: int | None
) -> list[tuple[float, float, int | None]]:
    """The period [start, end) cut where the state changes: (begin, end, state), the state None
    before the first one known. `changes` are (when, ServiceState number), oldest first;
    `initial` is the state at `start` (the last change before it), if known."""
    out: list[tuple[float, float, int | None]] = []
    at, state = start, initial
    for when, new in changes:
        if when >= end:
            break
        if when > at:
            out.append((at, when, state))
            at = when
        state = new
    if at < end:
        out.append((at, end, state))
    return out


def intersect(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """The time in both of two sorted lists of disjoint spans."""
    out: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def merged(spans: Iterable[Span]) -> list[Span]:
    """Spans sorted, with overlapping and touching ones joined (empty ones dropped)."""
    out: list[Span] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _length(spans: Iterable[Span]) -> float:
    return sum(b - a for a, b in spans)


def availability(
    changes: Iterable[tuple[float, int]],
    start: float,
    end: float,
    *,
    initial: int | None,
    calendar: BusinessCalendar,
    target_percent: float | None = None,
    degraded_counts_as_up: bool = True,
    maintenance: Iterable[Span] = (),
    watched: Iterable[Span] | None = None,
) -> Availability:
    """A service's availability in [start, end) from its state changes (see the module).

    `watched`: the spans some collector evaluated (None: all of it); time outside is unknown.
    `maintenance`: spans whose problems count as maintenance (an operational stretch stays up).
    """
    business = calendar.spans(start, end)
    seconds = dict.fromkeys(("operational", "degraded", "outage", "maintenance", "unknown"), 0.0)
    if watched is not None:
        seconds["unknown"] = _length(business)
        business = intersect(business, merged(watched))
        seconds["unknown"] -= _length(business)
    covered = merged(maintenance)
    first = 0  # the business spans before this one end before the current state span
    for a, b, state in state_spans(changes, start, end, initial):
        while first < len(business) and business[first][1] <= a:
            first += 1
        last = first
        while last < len(business) and business[last][0] < b:
            last += 1
        inside = intersect(business[first:last], [(a, b)])
        if state is None:
            seconds["unknown"] += _length(inside)
        elif state == _OPERATIONAL:
            seconds["operational"] += _length(inside)
        elif state == _MAINTENANCE:
            seconds["maintenance"] += _length(inside)
        else:
            total = _length(inside)
            in_window = _length(intersect(inside, covered))
            seconds["maintenance"] += in_window
            key = "outage" if state == _OUTAGE else "degraded"
            seconds[key] += total - in_window
    up = seconds["operational"] + seconds["maintenance"]
    up += seconds["degraded"] if degraded_counts_as_up else 0.0
    down = seconds["outage"] + (0.0 if degraded_counts_as_up else seconds["degraded"])
    counted = up + down
    percent = up / counted * 100 if counted > 0 else None
    allowed = left = left_percent = None
    met = None
    if target_percent is not None and percent is not None:
        met = percent >= target_percent
        allowed = (100 - target_percent) / 100 * counted
        left = allowed - down
        left_percent = left / allowed * 100 if allowed > 0 else None
    return Availability(
        counted_seconds=counted,
        up_seconds=up,
        down_seconds=down,
        operational_seconds=seconds["operational"],
        degraded_seconds=seconds["degraded"],
        outage_seconds=seconds["outage"],
        maintenance_seconds=seconds["maintenance"],
        unknown_seconds=seconds["unknown"],
        degraded_counts_as_up=degraded_counts_as_up,
        percent=percent,
        target_percent=target_percent,
        met=met,
        allowed_down_seconds=allowed,
        budget_left_seconds=left,
        budget_left_percent=left_percent,
    )


@dataclass(frozen=True, slots=True)
class Deadline:
    """One target of one call: respond or resolve, in business time."""

    target_seconds: float  # business seconds allowed
    due_at: float  # the instant the business seconds run out
    taken_seconds: float  # business seconds from opening to done (or to `now` while not done)
    done: bool  # responded (resolved) by now
    breached: bool  # more business seconds taken than allowed

    @property
    def left_seconds(self) -> float:
        """Business seconds left (below 0: overdue by that much)."""
        return self.target_seconds - self.taken_seconds


def deadline(
    opened_at: float,
    done_at: float | None,
    target_seconds: float,
    calendar: BusinessCalendar,
    now: float,
) -> Deadline:
    """How a call stands against one target: the business time from opening to `done_at`
    (the response or the resolution), or to `now` while not done. A target is breached once
    more business time has passed than it allows; time outside business hours never counts,
    so a call done at 18:00 whose target ran out at 17:00 the same day is in time."""
    done = done_at is not None and done_at <= now
    end = done_at if done and done_at is not None else now
    taken = calendar.business_seconds(opened_at, max(end, opened_at))
    return Deadline(
        target_seconds=target_seconds,
        due_at=calendar.add_business_seconds(opened_at, target_seconds),
        taken_seconds=taken,
        done=done,
        breached=taken > target_seconds,
    )


@dataclass(frozen=True, slots=True)
class CallTarget:
    """A target a call is held to: its group's OLA or an affected service's SLA."""

    kind: str  # "OLA" or "SLA"
    name: str  # the run group or the service
    calendar: str
    respond: Deadline | None  # None: no response target for the call's severity
    resolve: Deadline | None

    @property
    def breached(self) -> bool:
        return any(d is not None and d.breached for d in (self.respond, self.resolve))


def call_target(
    kind: str,
    name: str,
    targets: OlaConfig | SlaConfig,
    calendars: Mapping[str, BusinessCalendar],
    *,
    severity: str,
    opened_at: float,
    responded_at: float | None,
    resolved_at: float | None,
    now: float,
) -> CallTarget | None:
    """How one call stands against one OLA or SLA (None: it sets no time for the severity)."""
    calendar = calendars.get(targets.calendar) or BusinessCalendar.always()
    respond = targets.respond_seconds(severity)
    resolve = targets.resolve_seconds(severity)
    if respond is None and resolve is None:
        return None
    return CallTarget(
        kind=kind,
        name=name,
        calendar=targets.calendar,
        respond=None
        if respond is None
        else deadline(opened_at, responded_at, respond, calendar, now),
        resolve=None
        if resolve is None
        else deadline(opened_at, resolved_at, resolve, calendar, now),
    )


def call_targets(
    *,
    group: OlaConfig | None,
    group_name: str,
    services: Mapping[str, SlaConfig | None],
    calendars: Mapping[str, BusinessCalendar],
    severity: str,
    opened_at: float,
    responded_at: float | None,
    resolved_at: float | None,
    now: float,
) -> list[CallTarget]:
    """Every target a call is held to: its group's OLA first, then each affected service's
    SLA (by service name), each counted in its own calendar."""
    out: list[CallTarget] = []
    found = [("OLA", group_name, group)] + [("SLA", n, s) for n, s in sorted(services.items())]
    for kind, name, targets in found:
        if targets is None:
            continue
        target = call_target(
            kind,
            name,
            targets,
            calendars,
            severity=severity,
            opened_at=opened_at,
            responded_at=responded_at,
            resolved_at=resolved_at,
            now=now,
        )
        if target is not None:
            out.append(target)
    return out
