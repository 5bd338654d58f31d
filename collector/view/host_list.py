"""One page of the fleet's hosts, found by name and label, sorted: what the console's host list
shows, read from the in-memory view without building every host's full record.

A search is words: `key=value` matches a label (the value may be a glob: `role=db*`), any other
word is found in the host's name in any case (or matched as a glob when it has `*`). Every word
must match. A host's state is STALE when it stopped reporting, else its worst rule state, as
`FleetReader.hosts` says; states sort worst first (CRITICAL, STALE, UNKNOWN, WARNING, OK).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from collector.evaluation.rules import Severity
from collector.store.call_search import SEVERITY_ORDER
from collector.view.fleet import Fleet

SORTS = ("state", "host", "last_report")
_RANK = {name: len(SEVERITY_ORDER) - i for i, name in enumerate(SEVERITY_ORDER)}


@dataclass(frozen=True, slots=True, kw_only=True)
class HostSearch:
    """Which hosts, and which page of them."""

    text: str = ""
    state: str = ""  # one state's name, or every state
    sort: str = "state"
    descending: bool = True  # for `state`, worst first; for the others, Z to A, newest first
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise ValueError(f"cannot sort hosts by {self.sort!r}")
        if self.limit < 1 or self.offset < 0:
            raise ValueError("a page is at least one host, from offset 0 on")


@dataclass(frozen=True, slots=True)
class HostPage:
    """One page of hosts, how many match, and how many hosts are in each state (all hosts)."""

    hosts: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def _matcher(text: str) -> Any:
    """A test of (name, labels) for the search words."""
    names: list[str] = []
    labels: list[tuple[str, str]] = []
    for word in text.split():
        key, equals, value = word.partition("=")
        if equals and key:
            labels.append((key, value))
        else:
            names.append(word.lower())

    globs = [word for word in names if "*" in word]
    parts = [word for word in names if "*" not in word]
    exact = [(key, value) for key, value in labels if "*" not in value]
    patterns = [(key, value) for key, value in labels if "*" in value]

    def matches(name: str, host_labels: dict[str, str]) -> bool:
        for key, value in exact:
            if host_labels.get(key) != value:
                return False
        for key, value in patterns:
            have = host_labels.get(key)
            if have is None or not fnmatchcase(have, value):
                return False
        if parts or globs:
            lowered = name.lower()
            for word in parts:
                if word not in lowered:
                    return False
            for word in globs:
                if not fnmatchcase(lowered, word):
                    return False
        return True

    return matches


def host_states(fleet: Fleet, now: float, stale_factor: float) -> dict[str, str]:
    """Every host's state by name: STALE when it stopped reporting (Fleet.is_stale), else its
    worst rule state."""
    worst = {host: severity.name for host, severity in fleet.worst_by_host().items()}
    stale, ok = Severity.STALE.name, Severity.OK.name
    out = {}
    for name, host in fleet.hosts.items():
        record = host.record
        if now - record.last_report_at > stale_factor * record.interval_seconds:
            out[name] = stale
        else:
            out[name] = worst.get(name, ok)
    return out


class HostList:
    """The fleet's hosts with their states, read once per request, for one or more pages."""

    def __init__(
        self,
        fleet: Fleet,
        now: float,
        stale_factor: float,
        problems: Callable[[str], list[dict[str, Any]]],
    ) -> None:
        self.fleet = fleet
        self.problems = problems  # a host's open problems, as FleetReader.problems lists them
        self.states = host_states(fleet, now, stale_factor)
        self.counts = dict.fromkeys(SEVERITY_ORDER, 0)
        for state in self.states.values():
            self.counts[state] = self.counts.get(state, 0) + 1

    def page(self, search: HostSearch) -> HostPage:
        """One page of the hosts that match the search, sorted, with the fleet's counts."""
        fleet, states = self.fleet, self.states
        matches = _matcher(search.text)
        found = [
            name
            for name, host in fleet.hosts.items()
            if (not search.state or states[name] == search.state)
            and (not search.text or matches(name, host.record.labels))
        ]
        if search.sort == "host":
            found.sort(reverse=search.descending)
        elif search.sort == "last_report":
            found.sort(key=lambda n: (fleet.hosts[n].record.last_report_at, n))
            if search.descending:
                found.reverse()
        elif search.descending:  # worst first, then by name
            found.sort(key=lambda n: (-_RANK.get(states[n], 0), n))
        else:  # OK first
            found.sort(key=lambda n: (_RANK.get(states[n], 0), n))
        rows = []
        for name in found[search.offset : search.offset + search.limit]:
            record = fleet.hosts[name].record
            rows.append(
                {
                    "host": name,
                    "state": states[name],
                    "last_report_at": record.last_report_at,
                    "labels": record.labels,
                    "agent_version": record.agent_version,
                    "problems": self.problems(name),
                }
            )
        return HostPage(rows, len(found), self.counts)
