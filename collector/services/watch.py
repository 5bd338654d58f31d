"""The services stage: every service's state, worked out once per evaluation tick from the view.

A tick costs a pass over the hosts (only a host that is new or whose agent labels changed is
matched against the components again, through the model's index) and a pass over the rule
states that are not OK (the view keeps their keys at hand); what is left is small and goes to
the pure functions in `state.py`. Every part yields every `slice_seconds`, like the rest of the
tick, so reports are served between the slices.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from collector.config import CollectorConfig
from collector.evaluation.rules import Severity
from collector.incidents.calls import Problem, labels_key
from collector.services.model import Component, Service, ServiceModel
from collector.services.state import (
    MemberFacts,
    ProblemFact,
    ServiceState,
    ServiceStatus,
    evaluate_service,
    tally,
)
from collector.view.fleet import Fleet

Silenced = Callable[[str, str, float], bool]  # (host, rule, now): a window covers it


class ServiceWatch:
    """The latest state of every service, and since when it holds."""

    def __init__(
        self,
        config: CollectorConfig,
        fleet: Fleet,
        silenced: Silenced,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = ServiceModel.build(config.services)
        self._fleet = fleet
        self._clock = clock
        self._silenced = silenced
        self._labels: dict[str, dict[str, str]] = {}
        self._member_of: dict[str, tuple[int, ...]] = {}
        self._totals: Counter[int] = Counter()
        self.statuses: dict[str, ServiceStatus] = {}
        self.since: dict[str, float] = {}
        self.evaluated_at: float | None = None
        # The state each service was last known in (from the store after a restart), and the
        # changes not stored yet: (service, when, state).
        self._known: dict[str, ServiceState] = {}
        self._changes: list[tuple[str, float, int]] = []

    def restore(self, last: dict[str, tuple[float, int]]) -> None:
        """Take each service's last stored state change: a state that holds on after a restart
        keeps its `since`."""
        for name, (at, state) in last.items():
            if self.model.service(name) is not None:
                self._known[name] = ServiceState(state)
                self.since[name] = at

    def take_changes(self) -> list[tuple[str, float, int]]:
        """The state changes since the last call, to store: (service, when, state)."""
        changes, self._changes = self._changes, []
        return changes

    def evaluate(self, now: float, *, record: bool = True) -> dict[str, ServiceStatus]:
        """Work out every service's state now, all at once (tests and tools)."""
        for _ in self.steps(now, record=record):
            pass
        return self.statuses

    def steps(
        self, now: float, slice_seconds: float = float("inf"), *, record: bool = True
    ) -> Iterator[None]:
        """Work out every service's state, yielding every `slice_seconds` of work. Without
        `record`, the states are not taken as changes (a call opening in the middle of a pass,
        before the view holds its state, asks for them)."""
        if not self.model.services:
            return
        clock = _Slices(slice_seconds)
        yield from self._follow_hosts(clock)
        members: dict[int, dict[str, MemberFacts]] = {}
        yield from self._gather(now, members, clock)
        statuses: dict[str, ServiceStatus] = {}
        for service in self.model.services:
            statuses[service.name] = evaluate_service(service, self._totals, members, statuses)
            if clock.due():
                yield
        for name, status in statuses.items():
            if record and self._known.get(name) is not status.state:
                self._known[name] = status.state
                self.since[name] = now
                self._changes.append((name, now, int(status.state)))
        self.statuses = statuses
        self.evaluated_at = now

    def _follow_hosts(self, clock: _Slices) -> Iterator[None]:
        """Match the hosts that are new or whose labels changed; forget the hosts gone."""
        hosts = self._fleet.hosts
        for count, (name, host) in enumerate(zip(list(hosts), list(hosts.values()), strict=True)):
            labels = host.record.labels
            known = self._labels.get(name)
            if known is None or (known is not labels and known != labels):
                self._join(name, labels)
            if not count % 64 and clock.due():
                yield
        if len(self._labels) != len(hosts):  # every host now known is in _labels
            for gone in [h for h in self._labels if h not in hosts]:
                self._leave(gone)  # retired, or forgotten

    def _gather(
        self, now: float, members: dict[int, dict[str, MemberFacts]], clock: _Slices
    ) -> Iterator[None]:
        """Tally the rule states that are not OK on members of components into `members`."""
        problems: list[ProblemFact] = []
        member_of = self._member_of
        states = self._fleet.states
        by_id = self.model.by_id
        for count, key in enumerate(states.problem_keys(), start=1):
            rule, state_host, labels_key = key
            state = states.get(key)
            if state is None or not state.severity or not member_of.get(state_host):
                continue  # gone or recovered since the copy, or no member of any component
            planned = self._silenced(state_host, rule, now)
            problems.append(ProblemFact(state_host, rule, labels_key, state.severity, planned))
            if not count % 64:
                tally(by_id, member_of, problems, into=members)
                problems.clear()
                if clock.due():
                    yield
        tally(by_id, member_of, problems, into=members)

    def _join(self, host: str, labels: dict[str, str]) -> None:
        self._leave(host)
        ids = self.model.memberships(host, labels)
        self._labels[host] = labels
        if ids:
            self._member_of[host] = ids
            self._totals.update(ids)

    def _leave(self, host: str) -> None:
        self._labels.pop(host, None)
        ids = self._member_of.pop(host, ())
        self._totals.subtract(ids)

    def members(self, component: Component) -> list[str]:
        """The hosts that are members of a component now, by name."""
        return sorted(h for h, ids in self._member_of.items() if component.id in ids)

    def affected(self, host: str, rule: str) -> list[str]:
        """The services a rule on a host bears on: those with a component the host is a member
        of that watches the rule, and every service resting on one of them, in model order."""
        ids = set(self._member_of.get(host, ()))
        hit: set[str] = set()
        for service in self.model.services:
            for component in service.components:
                if (component.id in ids and component.watches(rule)) or component.other in hit:
                    hit.add(service.name)
            if any(other in hit for other in service.depends_on):
                hit.add(service.name)
        return [s.name for s in self.model.services if s.name in hit]

    def impact(
        self, host: str, rule: str, labels_key: str, severity: Severity
    ) -> list[tuple[Service, ServiceState]]:
        """The services a rule state on a host bears on, each with its state with the rule state
        at `severity`: the last tick's tally with this host's members worked out again from its
        rule states in the view and this one (a call opens or resolves between ticks, before
        the view holds the state that opened it, and says what that does to the services)."""
        now = self._clock()
        if self.evaluated_at is None:
            self.evaluate(now, record=False)
        affected = set(self.affected(host, rule))
        if not affected:
            return []
        ids = self._member_of.get(host, ())
        states = self._fleet.states
        problems = []
        this = (rule, host, labels_key)
        for key in states.keys_of(host):
            state = states.get(key)
            if state is not None and state.severity and key != this:
                planned = self._silenced(host, key[0], now)
                problems.append(ProblemFact(host, key[0], key[2], state.severity, planned))
        if severity:
            problems.append(
                ProblemFact(host, rule, labels_key, severity, self._silenced(host, rule, now))
            )
        fresh = tally(self.model.by_id, {host: ids}, problems)
        statuses = dict(self.statuses)
        for service in self.model.services:
            if service.name not in affected:
                continue
            members: dict[int, dict[str, MemberFacts]] = {}
            for part in statuses[service.name].components:
                found = dict(part.members)
                if part.component.id in ids:
                    found.pop(host, None)
                    if host in fresh.get(part.component.id, {}):
                        found[host] = fresh[part.component.id][host]
                members[part.component.id] = found
            statuses[service.name] = evaluate_service(service, self._totals, members, statuses)
        return [(s, statuses[s.name].state) for s in self.model.services if s.name in affected]

    def call_services(
        self, problem: Problem, over: bool = False
    ) -> tuple[tuple[str, str, str], ...]:
        """What a call's problem does to services: (name, title, state word) for each service it
        bears on, with the problem counted, or without it once it is `over`."""
        if not self.model.services:
            return ()
        severity = Severity.OK if over else Severity[problem.severity]
        found = self.impact(problem.host, problem.rule, labels_key(problem.labels), severity)
        return tuple((service.name, service.title, state.word) for service, state in found)

    # -- as the API and the CLI show them -------------------------------------------------------

    def services(self, only: str | None = None) -> list[dict[str, Any]]:
        """Every service (or the one named `only`) with its state, components and what is wrong,
        worked out now if no tick has yet."""
        if self.evaluated_at is None:
            self.evaluate(self._clock())
        return [
            self._service_json(service)
            for service in sorted(self.model.services, key=lambda s: s.name)
            if only is None or service.name == only
        ]

    def _service_json(self, service: Service) -> dict[str, Any]:
        status = self.statuses[service.name]
        return {
            "service": service.name,
            "title": service.title,
            "owner": service.owner,
            "description": service.description,
            "public": service.public,
            "state": status.state.word,
            "since": self.since.get(service.name),
            "evaluated_at": self.evaluated_at,
            "need": _need(service.required),
            "depends_on": [
                {"service": name, "state": state.word} for name, state in status.dependencies
            ],
            "components": [
                {
                    "index": part.component.index,
                    "name": part.component.title,
                    "service": part.component.other,
                    "need": _need(part.component.required),
                    "state": part.verdict.state.word,
                    "members": part.total,
                    "down": part.down,
                    "degraded": part.degraded,
                    "problems": [
                        {
                            "host": fact.host,
                            "rule": fact.rule,
                            "labels": json.loads(fact.labels_key),
                            "state": fact.severity.name,
                            "planned": fact.planned,
                        }
                        for host in sorted(part.members)
                        for fact in part.members[host].problems
                    ],
                }
                for part in status.components
            ],
        }


class _Slices:
    """Says when a slice of work is over (and starts the next one)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.began = time.perf_counter()

    def due(self) -> bool:
        now = time.perf_counter()
        if now - self.began < self.seconds:
            return False
        self.began = now
        return True


def _need(required: int | None) -> str | int:
    return "all" if required is None else required


STATES = tuple(state.word for state in ServiceState)
