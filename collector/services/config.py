"""The `services:` section of the collector config: what each service is made of, checked at load.

A service has an owner run group, a title and a description in the users' words, and
components: hosts (by name, glob or agent label) with the rules that matter on them, or another
service. `need` says how many of a component's hosts, and of a service's components, must serve
(`all`, `any`, or a number: at least that many). `depends_on` names services it cannot work
without. References (owner, rules, services) and dependency cycles are checked in
`check_services`, which names the key path of a mistake.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Annotated, Literal

import msgspec

from checks.settings import ConfigError, Duration, field_error
from collector.services.targets import SlaConfig

ServiceName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]*$", max_length=100)]
NAME_RULE = "lowercase letters, digits, '-' and '_', starting with a letter"
NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
# all of them, any one of them, or at least this many
Need = Literal["all", "any"] | Annotated[int, msgspec.Meta(ge=1)]
# The state from which a service opens a service-level call for its owner group.
CallLevel = Literal["outage", "degraded", "never"]

_GLOB = re.compile(r"\[!?[^\]]+\]|[*?]")
_HOST_TEXT = re.compile(r"^[A-Za-z0-9._-]+$")


def is_glob(pattern: str) -> bool:
    """Whether a host pattern holds glob characters (else it names one host)."""
    return _GLOB.search(pattern) is not None


def host_pattern_problem(pattern: str) -> str | None:
    """What is wrong with a host name or glob, or None: a pattern that could never match a
    host name (spaces, a scheme, a slash, a port) is a mistake."""
    if not pattern:
        return "a host name or glob may not be empty"
    text = _GLOB.sub("a", pattern)
    if not _HOST_TEXT.match(text) or "[" in text or "]" in text:
        return (
            f"{pattern!r} can match no host name (letters, digits, '.', '-' and '_', with "
            "globs * ? [...]): expected a name such as web01 or a glob such as web* or db0[1-3]"
        )
    return None


class _Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ComponentConfig(_Config, frozen=True):
    """Part of a service: hosts and the rules that matter on them, or another service."""

    name: str = ""  # how people call it ("web servers"); default: from its hosts or service
    hosts: list[str] = []  # host names or globs; any of them matches
    labels: dict[str, str] = {}  # agent labels (globs); each must match
    service: str | None = None  # another service, whose state this component takes
    rules: list[str] = []  # the rules that matter; empty: every rule
    need: Need = "all"  # how many of its hosts must serve

    def __post_init__(self) -> None:
        if self.service is not None:
            if self.hosts or self.labels:
                raise field_error(
                    "service", "a component is hosts (`hosts`, `labels`) or one `service`, not both"
                )
            if self.rules:
                raise field_error(
                    "rules", "a service component takes that service's state: it has no rules"
                )
            if isinstance(self.need, int) and self.need > 1:
                raise field_error("need", "a service component is one member: need 1, any or all")
            return
        if not self.hosts and not self.labels:
            raise ValueError("a component needs `hosts` (names or globs), `labels` or a `service`")
        if (
            isinstance(self.need, int)
            and not self.labels
            and not any(is_glob(p) for p in self.hosts)
            and self.need > len(set(self.hosts))
        ):
            raise field_error(
                "need",
                f"at least {self.need} of {len(set(self.hosts))} hosts can never be met",
            )

    @property
    def title(self) -> str:
        """The component's name, or one made of what it holds."""
        if self.name:
            return self.name
        if self.service is not None:
            return f"service {self.service}"
        parts = [", ".join(self.hosts)] if self.hosts else []
        parts += [f"{k}={v}" for k, v in sorted(self.labels.items())]
        return " ".join(parts)

    @property
    def required(self) -> int | None:
        """At least this many members must serve; None: all of them."""
        if self.need == "all":
            return None
        return 1 if self.need == "any" else int(self.need)


class StatusPageConfig(_Config, frozen=True):
    """The status page for users (/status, /status.json, /status.atom): the public services and
    their states, with no sign-in. It shows no host or rule names unless a service opts in."""

    enabled: bool = True
    title: str = "Service status"
    # One render serves every visitor for this long (and browsers may keep it as long).
    cache: Duration = Duration(5)

    def __post_init__(self) -> None:
        if not 0 < float(self.cache) <= 300:
            raise field_error("cache", "must be more than 0s and at most 5m")


class ServiceConfig(_Config, frozen=True):
    """A service as its users know it."""

    owner: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]*$", max_length=100)]
    components: Annotated[list[ComponentConfig], msgspec.Meta(min_length=1)]
    title: str = ""  # the users' name for it ("Payroll"); default: the service's key
    description: str = ""  # what it is, for its users
    public: bool = False  # listed on the status page
    # The status page shows its components, and the hosts and rules of their problems.
    status_details: bool = False
    need: Need = "all"  # how many of its components must serve
    depends_on: list[str] = []  # services it cannot work without
    # From this state on, one service-level call for the owner group, linked to the calls of
    # its causes (collector/incidents/service_calls.py); `never`: none.
    call: CallLevel = "outage"
    sla: SlaConfig | None = None  # what its users are promised; see collector/services/targets.py

    def __post_init__(self) -> None:
        if isinstance(self.need, int) and self.need > len(self.components):
            raise field_error(
                "need",
                f"at least {self.need} of {len(self.components)} components can never be met",
            )

    @property
    def required(self) -> int | None:
        if self.need == "all":
            return None
        return 1 if self.need == "any" else int(self.need)


def check_services(
    services: Mapping[str, ServiceConfig],
    groups: Collection[str],
    rules: Collection[str],
    source: str | None,
) -> None:
    """Check what one service cannot check alone: its owner, the rules and services it names,
    its host patterns, and that no service depends on itself through others."""
    for name, service in services.items():
        where = f"services -> {name}"
        if service.owner not in groups:
            known = ", ".join(sorted(groups)) or "none"
            raise ConfigError(
                f"{where} -> owner",
                f"unknown group {service.owner!r} (groups: {known})",
                source=source,
            )
        for i, component in enumerate(service.components, start=1):
            _check_component(services, rules, component, f"{where} -> components -> {i}", source)
        for i, other in enumerate(service.depends_on, start=1):
            _check_reference(services, name, other, f"{where} -> depends_on -> {i}", source)
    cycle = find_cycle(services)
    if cycle is not None:
        path, names = cycle
        raise ConfigError(
            path,
            f"dependency cycle: {' -> '.join(names)}; a service cannot need itself",
            source=source,
        )


def _check_component(
    services: Mapping[str, ServiceConfig],
    rules: Collection[str],
    component: ComponentConfig,
    where: str,
    source: str | None,
) -> None:
    for j, pattern in enumerate(component.hosts, start=1):
        problem = host_pattern_problem(pattern)
        if problem is not None:
            raise ConfigError(f"{where} -> hosts -> {j}", problem, source=source)
    for j, rule in enumerate(component.rules, start=1):
        if rule not in rules:
            known = ", ".join(sorted(rules))
            raise ConfigError(
                f"{where} -> rules -> {j}", f"unknown rule {rule!r} (rules: {known})", source=source
            )
    if component.service is not None:
        owner = where.split(" -> ")[1]
        _check_reference(services, owner, component.service, f"{where} -> service", source)


def _check_reference(
    services: Mapping[str, ServiceConfig], owner: str, other: str, where: str, source: str | None
) -> None:
    if other == owner:
        raise ConfigError(where, f"service {owner!r} cannot be made of itself", source=source)
    if other not in services:
        known = ", ".join(sorted(services)) or "none"
        raise ConfigError(where, f"unknown service {other!r} (services: {known})", source=source)


def edges(service: ServiceConfig) -> list[tuple[str, str]]:
    """The services one service rests on, each with the key path (below the service) naming it."""
    out = [
        (c.service, f"components -> {i} -> service")
        for i, c in enumerate(service.components, start=1)
        if c.service is not None
    ]
    out += [(d, f"depends_on -> {i}") for i, d in enumerate(service.depends_on, start=1)]
    return out


def find_cycle(services: Mapping[str, ServiceConfig]) -> tuple[str, list[str]] | None:
    """A dependency cycle (through components or depends_on), if any: the key path of the edge
    that closes it and the services around it, the first repeated at the end."""
    done: set[str] = set()
    for start in services:
        if start in done:
            continue
        # An iterative depth-first walk: the path so far, and each node's edges left to walk.
        path = [start]
        on_path = {start: 0}
        todo = [iter(edges(services[start]))]
        while todo:
            step = next(todo[-1], None)
            if step is None:
                finished = path.pop()
                del on_path[finished]
                done.add(finished)
                todo.pop()
                continue
            target, key = step
            if target not in services or target in done:
                continue
            if target in on_path:
                names = [*path[on_path[target] :], target]
                return f"services -> {path[-1]} -> {key}", names
            on_path[target] = len(path)
            path.append(target)
            todo.append(iter(edges(services[target])))
    return None


def topological_order(services: Mapping[str, ServiceConfig]) -> list[str]:
    """The services with each after every service it rests on (the config has no cycles)."""
    order: list[str] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        if name in placed:
            return
        placed.add(name)
        for target, _ in edges(services[name]):
            if target in services:
                place(target)
        order.append(name)

    for name in services:
        place(name)
    return order
