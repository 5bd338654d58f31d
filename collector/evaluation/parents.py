"""Dependencies between hosts: while a parent is down, a silent child goes into its call."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace

from collector.config import STALE_RULE, CollectorConfig
from collector.evaluation.outcome import PassRecorder
from collector.evaluation.rules import CallDecision, OpenCall, RuleState, Severity
from collector.view.fleet import Fleet


@dataclass(slots=True)
class HostParents:
    """The parents the config names for each host, and which of them are down now."""

    config: CollectorConfig
    fleet: Fleet
    recorder: PassRecorder
    _parents_of: dict[str, tuple[str, ...]] = field(init=False, default_factory=dict)
    _down: dict[str, int | None] | None = field(init=False, default=None)  # parent -> its call

    def new_evaluation(self) -> None:
        """Look the parents' calls up afresh from now on."""
        self._down = None

    def parents_of(self, host: str) -> tuple[str, ...]:
        """The parents the config names for this host (every matching glob counts)."""
        found = self._parents_of.get(host)
        if found is None:
            names: list[str] = []
            for pattern, parents in self.config.parents.items():
                if fnmatch.fnmatchcase(host, pattern):
                    names.extend(p for p in parents if p != host and p not in names)
            found = self._parents_of[host] = tuple(names)
        return found

    def depth(self, host: str) -> int:
        """How many generations of parents a host has (a cycle counts once)."""
        seen = {host}
        level, depth = list(self.parents_of(host)), 0
        while level:
            depth += 1
            level = [p for h in level for p in self.parents_of(h) if p not in seen]
            seen.update(level)
        return depth

    def parent_down(self, host: str) -> tuple[str, int | None] | None:
        """A parent that is STALE or CRITICAL, and the call that says so (if one is open)."""
        if not self.config.parents or not self.parents_of(host):
            return None
        if self._down is None:
            self._down = self._parents_down()
        for parent in self.parents_of(host):
            if parent in self._down:
                return parent, self._down[parent]
        return None

    def _parents_down(self) -> dict[str, int | None]:
        """Every parent host that is down now, with the call to note its children in."""
        parents = {p for names in self.config.parents.values() for p in names}
        down: dict[str, int | None] = {}
        for (rule, host, _), state in self.fleet.states.items():
            if host not in parents:
                continue
            if rule == STALE_RULE and state.severity is Severity.STALE:
                down[host] = state.call_id if state.call_id is not None else down.get(host)
            elif state.severity is Severity.CRITICAL and down.get(host) is None:
                down[host] = state.call_id
        return down

    def depend(
        self,
        host: str,
        state: RuleState,
        decisions: tuple[CallDecision, ...],
        detail: str,
    ) -> tuple[RuleState, tuple[CallDecision, ...]]:
        """While a parent is down, a silent child goes into the parent's call, not its own."""
        down = self.parent_down(host)
        if down is None:
            # No parent to blame (any more): the child's own call opens as usual.
            return replace(state, absorbed_by=None), decisions
        parent, call_id = down
        if not any(isinstance(d, OpenCall) for d in decisions) and state.absorbed_by is None:
            return state, decisions  # not yet due (`for`), or in a maintenance window
        kept = tuple(d for d in decisions if not isinstance(d, OpenCall))
        if call_id is not None and state.absorbed_by != call_id:
            self.recorder.note(
                call_id,
                f"{host} depends on {parent} and is silent too "
                f"({detail}); it gets no call of its own while "
                f"{parent} is down.",
            )
            state = replace(state, absorbed_by=call_id)
        return state, kept
