"""Services and OLAs in a report: each service's month against its SLA, and calls against the
response and resolution targets of their services (SLA) and run group (OLA).

A service's states come from the store's record of its state changes (`service_changes`, one
row each time the collector saw its state change); the arithmetic is `collector.services.sla`'s,
counted in the SLA's calendar (business hours, or `always`), in the time a collector watched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from collector.config import SERVICE_RULE, CollectorConfig
from collector.service_levels.calls import CallFacts
from collector.service_levels.model import Breach, GroupOla, ServiceLevel, TargetLevels
from collector.service_levels.period import Period, Span
from collector.services.calendar import ALWAYS, BusinessCalendar, build_calendars
from collector.services.sla import Deadline, availability, deadline
from collector.services.targets import SEVERITIES, OlaConfig, SlaConfig
from collector.store.protocols import Store
from runwatch import units

Targets = OlaConfig | SlaConfig


def _describe(targets: Targets | None) -> str:
    """The targets as people read them: "CRITICAL respond 30 min, resolve 4 h (office)"."""
    if targets is None:
        return ""
    said: dict[str, list[str]] = defaultdict(list)
    for verb, times in (("respond", targets.respond), ("resolve", targets.resolve)):
        for severity, value in times.items():
            said[severity.upper()].append(f"{verb} {units.duration(float(value))}")
    where = "" if targets.calendar == ALWAYS else f" ({targets.calendar})"
    order = sorted(said, key=lambda s: SEVERITIES.index(s) if s in SEVERITIES else len(SEVERITIES))
    return "; ".join(f"{s} {', '.join(said[s])}{where}" for s in order)


def target_levels(
    mine: list[CallFacts],
    targets: Targets | None,
    calendars: Mapping[str, BusinessCalendar],
    last: float,
) -> TargetLevels:
    """Calls against one SLA's or OLA's response and resolution targets, as they stood at
    `last`, each time counted in the targets' calendar.

    The wait for a response ends at a person's first response, or when the call resolves first
    (nothing is left to respond to: a recovery within the target is not a breach). A call
    still waiting at `last` is judged once its target has run out, not before."""
    calendar = calendars.get(targets.calendar if targets else ALWAYS) or BusinessCalendar.always()
    tta: list[float] = []
    ttr: list[float] = []
    judged = {"response": 0, "resolution": 0}
    met = {"response": 0, "resolution": 0}
    breaches: list[Breach] = []
    for facts in mine:
        call = facts.call
        opened = call.opened_at
        if facts.first_response is not None:
            tta.append(calendar.business_seconds(opened, facts.first_response))
        if facts.final_resolved is not None:
            ttr.append(calendar.business_seconds(opened, facts.final_resolved))
        if targets is None:
            continue
        answered = min(
            (t for t in (facts.first_response, facts.first_resolved) if t is not None),
            default=None,
        )
        for kind, done_at, seconds in (
            ("response", answered, targets.respond_seconds(call.severity)),
            ("resolution", facts.final_resolved, targets.resolve_seconds(call.severity)),
        ):
            if seconds is None:
                continue
            found = deadline(opened, done_at, seconds, calendar, last)
            if not found.done and not found.breached:
                continue  # still waiting, within its target so far
            judged[kind] += 1
            if found.breached:
                breaches.append(_breach(facts, kind, targets.calendar, found))
            else:
                met[kind] += 1
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


def _breach(facts: CallFacts, kind: str, calendar: str, found: Deadline) -> Breach:
    call = facts.call
    return Breach(
        call_id=call.id,
        host=call.host,
        rule=call.rule,
        severity=call.severity,
        kind="response" if kind == "response" else "resolution",
        calendar=calendar,
        target_seconds=found.target_seconds,
        took_seconds=found.taken_seconds,
        waiting=not found.done,
        opened_at=call.opened_at,
        due_at=found.due_at,
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _fraction(percent: float | None) -> float | None:
    return None if percent is None else percent / 100


def service_levels(
    store: Store,
    config: CollectorConfig,
    period: Period,
    watched: list[Span],
    calls: list[CallFacts],
    *,
    owner: str | None = None,
) -> list[ServiceLevel]:
    """Every configured service (owned by `owner`, if given), by name."""
    names = sorted(n for n, s in config.services.items() if owner in (None, s.owner))
    if not names:
        return []
    calendars = build_calendars(config.calendars)
    before = store.last_service_states(before=period.start)
    changes: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for name, at, state in store.service_changes(period.start, period.last):
        changes[name].append((at, state))
    out = []
    for name in names:
        service = config.services[name]
        sla = service.sla
        calendar = calendars[sla.calendar if sla else ALWAYS]
        found = availability(
            changes.get(name, []),
            period.start,
            period.last,
            initial=before[name][1] if name in before else None,
            calendar=calendar,
            target_percent=sla.availability if sla else None,
            degraded_counts_as_up=sla.degraded_counts_as_up if sla else True,
            watched=watched,
        )
        # The calls of its causes; its own service-level call sums those up, and counting it
        # too would count each outage twice.
        mine = [c for c in calls if name in c.call.services and c.call.rule != SERVICE_RULE]
        out.append(
            ServiceLevel(
                service=name,
                title=service.title or name,
                owner=service.owner,
                calendar=calendar.name,
                counted_seconds=found.counted_seconds,
                up_seconds=found.up_seconds,
                down_seconds=found.down_seconds,
                operational_seconds=found.operational_seconds,
                degraded_seconds=found.degraded_seconds,
                degraded_counts_as_up=found.degraded_counts_as_up,
                outage_seconds=found.outage_seconds,
                maintenance_seconds=found.maintenance_seconds,
                unknown_seconds=found.unknown_seconds,
                availability=_fraction(found.percent),
                target=_fraction(found.target_percent),
                met=found.met,
                budget_seconds=found.allowed_down_seconds,
                budget_left_seconds=found.budget_left_seconds,
                budget_left=_fraction(found.budget_left_percent),
                levels=target_levels(mine, sla, calendars, period.last),
            )
        )
    return out


def group_olas(
    config: CollectorConfig, period: Period, calls: list[CallFacts], group: str | None = None
) -> list[GroupOla]:
    """Each run group's calls (or `group`'s) against its OLA, by name."""
    calendars = build_calendars(config.calendars)
    return [
        GroupOla(
            name,
            target_levels(
                [c for c in calls if c.call.group == name],
                config.groups[name].ola,
                calendars,
                period.last,
            ),
        )
        for name in sorted(config.groups)
        if group in (None, name)
    ]
