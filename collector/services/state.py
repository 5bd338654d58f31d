"""A service's state from its members' health: pure functions, no clock, no view.

A member is a host of a component (or, for a service component, the other service). Its health
is the worst of the component's rules on it: CRITICAL and a silent host are DOWN, WARNING,
UNKNOWN (a failing check) and a silent check DEGRADED, OK is UP. A part made of members is DOWN
when fewer of them serve (are not DOWN) than it needs, DEGRADED when any member is not UP, and
UP otherwise; a component with no member at all is DOWN (nothing known serves it). A service
combines its components the same way, and is at least as bad as every service it depends on.

Every health is worked out twice: `live` leaves out the problems a silence or maintenance window
covers, `overall` counts them too. A service is OPERATIONAL when `overall` is UP, in
MAINTENANCE when every problem it has is covered (`live` is UP but `overall` is not), and
otherwise DEGRADED or in OUTAGE by `overall`: once a problem no window covers bears on it, the
service is shown as it is, the covered problems included (two of two web servers down, one in
a window: an outage). So a window never makes a state worse, and more problems never better.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from collector.config import STALE_RULE
from collector.evaluation.rules import Severity
from collector.services.model import Component, Service, ServiceModel


class Health(IntEnum):
    """How well a member, a component or a service serves; higher is worse."""

    UP = 0
    DEGRADED = 1
    DOWN = 2


class ServiceState(IntEnum):
    """A service's state as users are told it; higher is worse. Stable: exported as-is."""

    OPERATIONAL = 0
    MAINTENANCE = 1
    DEGRADED = 2
    OUTAGE = 3

    @property
    def word(self) -> str:
        return self.name.lower()


def member_health(rule: str, severity: Severity) -> Health:
    """What one rule state says about a member."""
    if severity is Severity.CRITICAL or (severity is Severity.STALE and rule == STALE_RULE):
        return Health.DOWN
    if severity is Severity.OK:
        return Health.UP
    return Health.DEGRADED  # WARNING, UNKNOWN, one silent check


def combine(required: int | None, total: int, down: int, degraded: int) -> Health:
    """A part of `total` members, `down` of them DOWN and `degraded` DEGRADED, that needs
    `required` of them serving (None: all)."""
    if total <= 0:
        return Health.DOWN
    need = total if required is None else required
    if total - down < need:
        return Health.DOWN
    if down or degraded:
        return Health.DEGRADED
    return Health.UP


@dataclass(frozen=True, slots=True)
class Verdict:
    """A health without (`live`) and with (`overall`) what maintenance windows cover."""

    live: Health = Health.UP
    overall: Health = Health.UP

    @property
    def state(self) -> ServiceState:
        if self.overall is Health.UP:
            return ServiceState.OPERATIONAL
        if self.live is Health.UP:
            return ServiceState.MAINTENANCE  # every problem it has, a window covers
        # A problem no window covers: the service as it is, the covered problems included.
        return ServiceState.OUTAGE if self.overall is Health.DOWN else ServiceState.DEGRADED

    def worst(self, other: Verdict) -> Verdict:
        return Verdict(max(self.live, other.live), max(self.overall, other.overall))


@dataclass(frozen=True, slots=True)
class ProblemFact:
    """A rule state that is not OK, on a host that is a member of some component."""

    host: str
    rule: str
    labels_key: str
    severity: Severity
    planned: bool  # a silence or maintenance window covers it


@dataclass(slots=True)
class MemberFacts:
    """What is wrong with one member of one component."""

    verdict: Verdict = field(default_factory=Verdict)
    problems: list[ProblemFact] = field(default_factory=list)


MAX_PROBLEMS_PER_MEMBER = 5  # the problems kept for showing; the verdict counts them all


def tally(
    components: Mapping[int, Component],
    memberships: Mapping[str, tuple[int, ...]],
    problems: Iterable[ProblemFact],
    into: dict[int, dict[str, MemberFacts]] | None = None,
) -> dict[int, dict[str, MemberFacts]]:
    """The members that are not UP, by component id and host (added to `into`, if given: the
    problems may come in parts)."""
    by_id = components
    out: dict[int, dict[str, MemberFacts]] = {} if into is None else into
    for problem in problems:
        health = member_health(problem.rule, problem.severity)
        for cid in memberships.get(problem.host, ()):
            component = by_id[cid]
            if problem.rule != STALE_RULE and not component.watches(problem.rule):
                continue  # a silent host is down in every component; other rules as named
            members = out.setdefault(cid, {})
            facts = members.get(problem.host)
            if facts is None:
                facts = members[problem.host] = MemberFacts()
            old = facts.verdict
            live = old.live if problem.planned else max(old.live, health)
            facts.verdict = Verdict(live, max(old.overall, health))
            if len(facts.problems) < MAX_PROBLEMS_PER_MEMBER:
                facts.problems.append(problem)
    return out


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    component: Component
    verdict: Verdict
    total: int  # members (hosts, or 1 for a service component)
    down: int  # members DOWN, windows left out
    degraded: int
    members: Mapping[str, MemberFacts]  # the members that are not UP, by host


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    verdict: Verdict
    components: tuple[ComponentStatus, ...]
    dependencies: tuple[tuple[str, ServiceState], ...]  # each service it depends on, its state

    @property
    def state(self) -> ServiceState:
        return self.verdict.state


def evaluate(
    model: ServiceModel,
    totals: Mapping[int, int],
    members: Mapping[int, Mapping[str, MemberFacts]],
) -> dict[str, ServiceStatus]:
    """Every service's status, from each component's member count and its members not UP."""
    out: dict[str, ServiceStatus] = {}
    for service in model.services:
        out[service.name] = evaluate_service(service, totals, members, out)
    return out


def evaluate_service(
    service: Service,
    totals: Mapping[int, int],
    members: Mapping[int, Mapping[str, MemberFacts]],
    done: Mapping[str, ServiceStatus],
) -> ServiceStatus:
    """One service's status; `done` holds the statuses of the services it rests on."""
    parts: list[ComponentStatus] = []
    for component in service.components:
        if component.other is not None:
            verdict = done[component.other].verdict
            live_down = int(verdict.live is Health.DOWN)
            live_degraded = int(verdict.live is Health.DEGRADED)
            parts.append(ComponentStatus(component, verdict, 1, live_down, live_degraded, {}))
            continue
        total = totals.get(component.id, 0)
        found = members.get(component.id, {})
        counts = [0, 0, 0, 0]  # live down, live degraded, overall down, overall degraded
        for facts in found.values():
            counts[0] += facts.verdict.live is Health.DOWN
            counts[1] += facts.verdict.live is Health.DEGRADED
            counts[2] += facts.verdict.overall is Health.DOWN
            counts[3] += facts.verdict.overall is Health.DEGRADED
        verdict = Verdict(
            combine(component.required, total, counts[0], counts[1]),
            combine(component.required, total, counts[2], counts[3]),
        )
        parts.append(ComponentStatus(component, verdict, total, counts[0], counts[1], found))
    verdict = Verdict(
        _combine_verdicts(service.required, [p.verdict for p in parts], live=True),
        _combine_verdicts(service.required, [p.verdict for p in parts], live=False),
    )
    dependencies = []
    for other in service.depends_on:
        theirs = done[other]
        verdict = verdict.worst(theirs.verdict)
        dependencies.append((other, theirs.state))
    return ServiceStatus(service.name, verdict, tuple(parts), tuple(dependencies))


def _combine_verdicts(required: int | None, verdicts: list[Verdict], *, live: bool) -> Health:
    healths = [v.live if live else v.overall for v in verdicts]
    return combine(
        required,
        len(healths),
        sum(h is Health.DOWN for h in healths),
        sum(h is Health.DEGRADED for h in healths),
    )
