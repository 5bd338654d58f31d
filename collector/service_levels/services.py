"""Services and OLAs in a report: each service's state over the month against its availability
target, and calls against response and resolution targets (business time where they say so).

A service's states come from the store's record of its state changes (`service_changes`, one
row each time the collector saw the state change). Its time counts where three things hold: a
collector was evaluating (watched time), its state was known (from its first recorded state),
and the hours its availability target counts in (business hours, or around the clock).
Availability is the share of that time not in outage: degraded time serves, and maintenance
(every problem covered by a silence or maintenance window) is not counted as down, so a window
never lowers availability.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from collector.config import CollectorConfig
from collector.service_levels.calls import CallFacts
from collector.service_levels.model import Breach, GroupOla, ServiceLevel, TargetLevels
from collector.service_levels.period import Period, Span, intersect, length
from collector.service_levels.targets import (
    ALWAYS,
    AroundTheClock,
    CallTargets,
    Hours,
    ReportTargets,
    ServiceTargets,
    TimeTarget,
)
from collector.services.state import ServiceState
from collector.store.protocols import Store
from runwatch import units

AROUND_THE_CLOCK = AroundTheClock()
SEVERITY_ORDER = ("CRITICAL", "WARNING", "UNKNOWN", "STALE")


def state_spans(
    before: Mapping[str, tuple[float, int]],
    changes: Iterable[tuple[str, float, int]],
    period: Period,
) -> dict[str, dict[ServiceState, list[Span]]]:
    """Each service's spans in each state within [start, last): from its state at the start
    (its last change `before` it) and its changes in the period, oldest first."""
    timeline: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for name, (_at, state) in before.items():
        timeline[name].append((period.start, state))
    for name, at, state in changes:
        if period.start <= at < period.last:
            timeline[name].append((at, state))
    out: dict[str, dict[ServiceState, list[Span]]] = {}
    for name, steps in timeline.items():
        spans: dict[ServiceState, list[Span]] = defaultdict(list)
        for i, (at, state) in enumerate(steps):
            end = steps[i + 1][0] if i + 1 < len(steps) else period.last
            if end > at:
                spans[ServiceState(state)].append((at, end))
        out[name] = spans
    return out


def elapsed(hours: Hours, begin: float, end: float) -> float:
    """The seconds of [begin, end) that count in `hours`."""
    return length(hours.spans(begin, end)) if end > begin else 0.0


def due_at(hours: Hours, begin: float, seconds: float, bound: float) -> float:
    """When `seconds` of counted time have passed since `begin`, known to be by `bound`."""
    left = seconds
    for low, high in hours.spans(begin, bound):
        if high - low >= left:
            return low + left
        left -= high - low
    return bound


def _describe(targets: CallTargets) -> str:
    """The targets as people read them: "CRITICAL respond 30 min, resolve 4 h (office)"."""
    severities = sorted(
        set(targets.respond) | set(targets.resolve),
        key=lambda s: (SEVERITY_ORDER.index(s) if s in SEVERITY_ORDER else 99, s),
    )
    parts = []
    for severity in severities:
        said = [
            f"{verb} {units.duration(goal.seconds)}"
            + ("" if goal.hours.name == ALWAYS else f" ({goal.hours.name})")
            for verb, goal in (
                ("respond", targets.respond.get(severity)),
                ("resolve", targets.resolve.get(severity)),
            )
            if goal is not None
        ]
        parts.append(f"{severity} {', '.join(said)}")
    return "; ".join(parts)


def target_levels(mine: list[CallFacts], targets: CallTargets, last: float) -> TargetLevels:
    """Calls against their response and resolution targets, as they stood at `last`.

    The wait for a response ends at the first response by a person, or when the call resolves
    first (nothing is left to respond to: an automatic recovery within the target is not a
    breach). A call still waiting at `last` is judged only once its target has run out."""
    tta: list[float] = []
    ttr: list[float] = []
    judged = {"response": 0, "resolution": 0}
    met = {"response": 0, "resolution": 0}
    breaches: list[Breach] = []
    for facts in mine:
        call = facts.call
        opened = call.opened_at
        responded = min(
            (t for t in (facts.first_response, facts.first_resolved) if t is not None),
            default=None,
        )
        checks = (
            ("response", responded, targets.respond.get(call.severity)),
            ("resolution", facts.final_resolved, targets.resolve.get(call.severity)),
        )
        for kind, ended, goal in checks:
            hours = goal.hours if goal is not None else AROUND_THE_CLOCK
            if kind == "response" and facts.first_response is not None:
                tta.append(elapsed(hours, opened, facts.first_response))
            if kind == "resolution" and ended is not None:
                ttr.append(elapsed(hours, opened, ended))
            if goal is None:
                continue
            took = elapsed(hours, opened, last if ended is None else ended)
            if ended is None and took <= goal.seconds:
                continue  # still waiting, and within its target so far
            judged[kind] += 1
            if took <= goal.seconds:
                met[kind] += 1
                continue
            breaches.append(_breach(facts, kind, goal, took, ended=ended, last=last))
    return TargetLevels(
        calls=len(mine),
        responded=len(tta),
        tta_mean_seconds=sum(tta) / len(tta) if tta else None,
        response_judged=judged["response"],
        response_met=met["response"],
        resolved=len(ttr),
        ttr_mean_seconds=sum(ttr) / len(ttr) if ttr else None,
        resolution_judged=judged["resolution"],
        resolution_met=met["resolution"],
        response_achieved=_share(met["response"], judged["response"]),
        resolution_achieved=_share(met["resolution"], judged["resolution"]),
        targets=_describe(targets),
        breaches=sorted(breaches, key=lambda b: (b.opened_at, b.call_id, b.kind != "response")),
    )


def _breach(
    facts: CallFacts, kind: str, goal: TimeTarget, took: float, *, ended: float | None, last: float
) -> Breach:
    call = facts.call
    bound = last if ended is None else ended
    return Breach(
        call_id=call.id,
        host=call.host,
        rule=call.rule,
        severity=call.severity,
        kind="response" if kind == "response" else "resolution",
        hours=goal.hours.name,
        target_seconds=goal.seconds,
        took_seconds=took,
        waiting=ended is None,
        opened_at=call.opened_at,
        due_at=due_at(goal.hours, call.opened_at, goal.seconds, bound),
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def service_levels(
    store: Store,
    config: CollectorConfig,
    period: Period,
    watched: list[Span],
    calls: list[CallFacts],
    *,
    targets: ReportTargets,
    owner: str | None = None,
) -> list[ServiceLevel]:
    """Every configured service (owned by `owner`, if given), by name."""
    names = sorted(n for n, s in config.services.items() if owner in (None, s.owner))
    if not names:
        return []
    spans = state_spans(
        store.last_service_states(before=period.start),
        store.service_changes(period.start, period.last),
        period,
    )
    out = []
    for name in names:
        service = config.services[name]
        goal = targets.services.get(name, ServiceTargets())
        counted_in = intersect(watched, goal.hours.spans(period.start, period.last))
        states = spans.get(name, {})
        seconds = {s: length(intersect(states.get(s, []), counted_in)) for s in ServiceState}
        counted = sum(seconds.values())
        outage = seconds[ServiceState.OUTAGE]
        availability = 1 - outage / counted if counted > 0 else None
        budget = None if goal.availability is None else (1 - goal.availability) * counted
        mine = [c for c in calls if name in c.call.services]
        out.append(
            ServiceLevel(
                service=name,
                title=service.title or name,
                owner=service.owner,
                hours=goal.hours.name,
                counted_seconds=counted,
                operational_seconds=seconds[ServiceState.OPERATIONAL],
                degraded_seconds=seconds[ServiceState.DEGRADED],
                outage_seconds=outage,
                maintenance_seconds=seconds[ServiceState.MAINTENANCE],
                availability=availability,
                target=goal.availability,
                met=(
                    None
                    if goal.availability is None or availability is None
                    else availability >= goal.availability
                ),
                budget_seconds=budget,
                budget_left_seconds=None if budget is None else budget - outage,
                budget_left=None if not budget else (budget - outage) / budget,
                levels=target_levels(mine, goal.calls, period.last),
            )
        )
    return out


def group_olas(
    config: CollectorConfig,
    period: Period,
    calls: list[CallFacts],
    targets: ReportTargets,
    group: str | None = None,
) -> list[GroupOla]:
    """Each run group's calls (or `group`'s) against its OLA, by name."""
    return [
        GroupOla(
            name,
            target_levels(
                [c for c in calls if c.call.group == name],
                targets.groups.get(name, CallTargets()),
                period.last,
            ),
        )
        for name in sorted(config.groups)
        if group in (None, name)
    ]
