"""The services compiled for evaluation: each component numbered once, with its host matcher, and
the services in an order where each comes after every service it rests on."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from collector.services.config import ServiceConfig, topological_order


@dataclass(frozen=True, slots=True)
class Component:
    """One component of one service. `id` numbers it among every service's components."""

    id: int
    service: str  # the service it is part of
    index: int  # its place in the service's `components`, from 1 (as the config numbers it)
    title: str
    hosts: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    rules: frozenset[str] | None = None  # None: every rule
    required: int | None = None  # at least this many members must serve; None: all
    other: str | None = None  # a service component: the service it takes its state from

    def matches(self, host: str, labels: Mapping[str, str]) -> bool:
        """Whether a host is a member: its name matches any of `hosts` (or there are none), and
        each of `labels` matches the agent's label of that name."""
        if self.other is not None:
            return False
        if self.hosts and not any(fnmatch.fnmatchcase(host, p) for p in self.hosts):
            return False
        for key, pattern in self.labels:
            value = labels.get(key)
            if value is None or not fnmatch.fnmatchcase(value, pattern):
                return False
        return True

    def watches(self, rule: str) -> bool:
        """Whether a rule's state counts for this component's members."""
        return self.rules is None or rule in self.rules


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    title: str
    owner: str
    description: str
    public: bool
    status_details: bool
    required: int | None
    depends_on: tuple[str, ...]
    components: tuple[Component, ...]
    call: str = "outage"  # from this state on, a service-level call; "never": none


def literal_prefix(pattern: str) -> str:
    """The part of a glob before its first glob character (all of it for a plain name)."""
    for i, char in enumerate(pattern):
        if char in "*?[":
            return pattern[:i]
    return pattern


@dataclass(frozen=True, slots=True)
class MembershipIndex:
    """Finds the components a host is a member of without trying every component: by its
    exact name, by the literal prefixes of the globs, and by exact agent labels. Only the
    candidates found are matched in full."""

    by_name: dict[str, list[Component]]
    by_prefix: dict[str, list[Component]]  # globs by their literal prefix ("" for `*.lan`)
    by_label: dict[tuple[str, str], list[Component]]  # label-only components, by one label
    everywhere: tuple[Component, ...]  # label-only components whose labels are all globs

    @classmethod
    def build(cls, components: tuple[Component, ...]) -> MembershipIndex:
        by_name: dict[str, list[Component]] = {}
        by_prefix: dict[str, list[Component]] = {}
        by_label: dict[tuple[str, str], list[Component]] = {}
        everywhere: list[Component] = []
        for component in components:
            for pattern in dict.fromkeys(component.hosts):
                prefix = literal_prefix(pattern)
                if prefix == pattern:
                    by_name.setdefault(pattern, []).append(component)
                else:
                    by_prefix.setdefault(prefix, []).append(component)
            if component.hosts:
                continue
            exact = next(((k, v) for k, v in component.labels if literal_prefix(v) == v), None)
            if exact is None:
                everywhere.append(component)
            else:
                by_label.setdefault(exact, []).append(component)
        return cls(by_name, by_prefix, by_label, tuple(everywhere))

    def memberships(self, host: str, labels: Mapping[str, str]) -> tuple[int, ...]:
        """The ids of the components a host is a member of, in order."""
        candidates: dict[int, Component] = {}
        for component in self.by_name.get(host, ()):
            candidates[component.id] = component
        by_prefix = self.by_prefix
        if by_prefix:
            for end in range(len(host) + 1):
                for component in by_prefix.get(host[:end], ()):
                    candidates[component.id] = component
        for item in labels.items():
            for component in self.by_label.get(item, ()):
                candidates[component.id] = component
        for component in self.everywhere:
            candidates[component.id] = component
        return tuple(sorted(i for i, c in candidates.items() if c.matches(host, labels)))


@dataclass(frozen=True, slots=True)
class ServiceModel:
    """Every service, dependencies first, and the components that hold hosts."""

    services: tuple[Service, ...]  # each after the services it rests on
    host_components: tuple[Component, ...]  # the components made of hosts, by id
    index: MembershipIndex
    by_id: dict[int, Component]  # the components made of hosts

    @classmethod
    def build(cls, services: Mapping[str, ServiceConfig]) -> ServiceModel:
        built: list[Service] = []
        hosts: list[Component] = []
        next_id = 0
        for name in topological_order(services):
            config = services[name]
            components: list[Component] = []
            for index, c in enumerate(config.components, start=1):
                component = Component(
                    id=next_id,
                    service=name,
                    index=index,
                    title=c.title,
                    hosts=tuple(c.hosts),
                    labels=tuple(sorted(c.labels.items())),
                    rules=frozenset(c.rules) if c.rules else None,
                    required=c.required,
                    other=c.service,
                )
                next_id += 1
                components.append(component)
                if component.other is None:
                    hosts.append(component)
            built.append(
                Service(
                    name=name,
                    title=config.title or name,
                    owner=config.owner,
                    description=config.description,
                    public=config.public,
                    status_details=config.status_details,
                    required=config.required,
                    depends_on=tuple(config.depends_on),
                    components=tuple(components),
                    call=config.call,
                )
            )
        return cls(
            tuple(built),
            tuple(hosts),
            MembershipIndex.build(tuple(hosts)),
            {c.id: c for c in hosts},
        )

    def memberships(self, host: str, labels: Mapping[str, str]) -> tuple[int, ...]:
        """The ids of the components a host is a member of, in order."""
        return self.index.memberships(host, labels)

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)
