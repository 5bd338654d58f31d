"""The OLA and SLA targets of one call on its page: when it is due to be responded to and
resolved, in business time, and whether it is in time."""

from __future__ import annotations

from dataclasses import dataclass

from collector.app import CollectorService
from collector.incidents.calls import Call, CallEvent
from collector.service_levels.calls import DESK_ACTIONS, PERSON_ACTIONS
from collector.services.calendar import build_calendars
from collector.services.sla import CallTarget, Deadline, call_targets


@dataclass(frozen=True, slots=True)
class DeadlineView:
    """One deadline as the page shows it."""

    what: str  # "respond" or "resolve"
    deadline: Deadline

    @property
    def word(self) -> str:
        """met, missed (done late), overdue (not done, late) or open (not done, in time)."""
        if self.deadline.done:
            return "missed" if self.deadline.breached else "met"
        return "overdue" if self.deadline.breached else "open"

    @property
    def badge(self) -> str:
        return {"met": "ok", "open": "warning"}.get(self.word, "critical")


def responded_at(service: CollectorService, call: Call, events: list[CallEvent]) -> float | None:
    """When the wait for a response ended, as the report counts it: a person's first response
    (an acknowledgement, comment or resolution in the console or API, audited, or an action
    seen in the help desk), or the call's first resolution if that came first (a problem that
    cleared on its own in time missed no response)."""
    now = service.clock()
    times = [e.at for e in events if e.kind in DESK_ACTIONS or e.kind == "resolved"]
    target = f"call {call.id}"
    times += [
        entry.at
        for entry in service.store.audit_between(call.opened_at, now + 1, "call.")
        if entry.action in PERSON_ACTIONS and entry.target == target
    ]
    group = service.config.groups.get(call.group)
    link = service.store.get_link(call.id, group.sink) if group is not None else None
    if link is not None:
        times += [t for t in (link.acknowledged_at, link.desk_closed_at) if t is not None]
    return min(times, default=None)


def targets_of(service: CollectorService, call: Call, events: list[CallEvent]) -> list[CallTarget]:
    """The call's group OLA and its services' SLAs, as they stand now."""
    config = service.config
    group = config.groups.get(call.group)
    slas = {name: config.services[name].sla for name in call.services if name in config.services}
    if (group is None or group.ola is None) and not any(slas.values()):
        return []
    return call_targets(
        group=group.ola if group is not None else None,
        group_name=call.group,
        services=slas,
        calendars=build_calendars(config.calendars),
        severity=call.severity,
        opened_at=call.opened_at,
        responded_at=responded_at(service, call, events),
        resolved_at=call.resolved_at,
        now=service.clock(),
    )


def deadlines(target: CallTarget) -> list[DeadlineView]:
    """A target's deadlines, respond first."""
    return [
        DeadlineView(what, d)
        for what, d in (("respond", target.respond), ("resolve", target.resolve))
        if d is not None
    ]
