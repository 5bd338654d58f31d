"""Rule evaluation over the fleet: on every report, and on a timer for time-based rules.

Per (host, rule, labels) the pure state machine in `rules.step` decides; `series.py` feeds it
values and forecasts, `staleness.py` the silence of hosts and of single checks, and
`parents.py` routes a child host's staleness into its parent's call while the parent is down.
This module runs one pass at a time (a report, or one host's time-based evaluation): the pass
records what it decided (`outcome.py`), the writer of the incidents stage carries it out, and
the calls it opened come back to the states that opened them.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Generator, Sequence

from collector.config import (
    CHECK_STALE_RULE,
    STALE_RULE,
    CollectorConfig,
)
from collector.evaluation.maintenance import MaintenanceCalendar
from collector.evaluation.outcome import Outcome, OutcomeWriter, PassRecorder, Settled
from collector.evaluation.overrides import ThresholdResolver
from collector.evaluation.parents import HostParents
from collector.evaluation.rules import Severity
from collector.evaluation.series import SeriesRules
from collector.evaluation.staleness import Staleness
from collector.store.records import SeriesRecord
from collector.view.fleet import Fleet


class RuleEvaluator:
    """Turn fresh values and elapsed time into rule states and call decisions."""

    def __init__(
        self,
        config: CollectorConfig,
        fleet: Fleet,
        writer: OutcomeWriter,
        *,
        calendar: MaintenanceCalendar,
        resolver: ThresholdResolver | None = None,
    ) -> None:
        self._config = config
        self._fleet = fleet
        self._writer = writer
        self.calendar = calendar
        self.resolver = resolver or ThresholdResolver(config)
        owners = {rule.name: rule.owner for rule in config.rules}
        staleness_owner = config.staleness.owner or ""
        owners.setdefault(STALE_RULE, staleness_owner)
        owners.setdefault(CHECK_STALE_RULE, staleness_owner)
        self._pass = PassRecorder(fleet, owners)
        self._parents = HostParents(config, fleet, self._pass)
        self._series = SeriesRules(config, fleet, self._pass, self.calendar, self.resolver)
        self._staleness = Staleness(config, fleet, self._pass, self.calendar, self._parents)
        self._pruned_at = float("-inf")
        self._steps_walk: str | None = None  # the last host pruned in the walk under way
        self._steps_walked_at = float("-inf")
        self._walked_at: dict[str, float] = {}  # host -> when tick last walked its series

    @property
    def history_span(self) -> float:
        """How far back forecasts look: what must come back from the store on a restart."""
        return max(self._series.history_for.values(), default=0.0)

    # -- entry points (call inside a store transaction) ----------------------------------------

    def on_report(
        self,
        host: str,
        updated: list[SeriesRecord],
        failing_checks: dict[str, str],
        now: float,
        checks: list[str] | None = None,
    ) -> None:
        """Evaluate what one report changed: its series, its failed checks, and staleness."""
        self._parents.new_evaluation()
        self._staleness.host(host, stale=False, now=now)
        for check in checks or ():
            self._fleet.saw_check(host, check, now)
            self._staleness.check(host, check, stale=False, now=now)
        self._series.on_report(host, updated, failing_checks, now)
        self._carry_out(self._pass.outcome(now))

    def due_in_order(self, now: float) -> list[str]:
        """hosts_due(), parents first, so a child sees its parent's call from the same tick."""
        return _finish(self.due_in_order_steps(now))

    def due_in_order_steps(
        self, now: float, slice_seconds: float = float("inf")
    ) -> Generator[None, None, list[str]]:
        """due_in_order(), yielding every `slice_seconds` of work (its value is the list): a
        pass over every host and rule state of a large fleet takes longer than a report may
        wait."""
        due = yield from self._hosts_due_steps(now, slice_seconds)
        return sorted(due, key=self._parents.depth)

    def tick(self, now: float) -> None:
        """Evaluate what depends on time alone: staleness, `for` timers, vanished series,
        flapping that calmed down and maintenance windows that ended.

        A healthy host is walked (its checks and series) once per its interval; hosts that are
        silent or have a rule state needing attention, every tick. So a tick over a large
        healthy fleet costs a pass over hosts and states plus a slice of the series.
        """
        # Parents first, so a child sees its parent's call from this very evaluation.
        for name in sorted(self.hosts_due(now), key=self._parents.depth):
            self.tick_host(name, now)
        self.prune_history(now)

    def tick_host(self, name: str, now: float) -> bool:
        """The time-based evaluation of one host (call inside a store transaction).

        Return whether a rule state changed, and so the host's stored version must move.
        """
        if name not in self._fleet.hosts:
            return False
        series_before = len(self._fleet.by_host.get(name, ()))
        saved = self._carry_out(self.decide_host(name, now))
        return saved or len(self._fleet.by_host.get(name, ())) != series_before

    def decide_host(self, name: str, now: float) -> Outcome:
        """What time alone changes for one host; the view follows at once."""
        host = self._fleet.hosts[name]
        factor = self._config.staleness.after_intervals
        silent_for = now - host.record.last_report_at
        stale = silent_for > host.stale_after(factor)
        self._staleness.host(name, stale=stale, now=now)
        if not stale:  # else nothing new is known about its series or checks
            self._walked_at[name] = now
            for check in list(host.checks):
                self._staleness.tick_check(name, check, now, factor)
            self._series.walk(name, now, factor)
        return self._pass.outcome(now)

    def _carry_out(self, outcome: Outcome) -> bool:
        """Hand a pass's outcome to the writer, and the calls it opened back to their states;
        return whether rule states were stored."""
        settled = self.settle(self._writer.apply(outcome))
        self._writer.save(settled)
        return bool(settled.states)

    def settle(self, call_ids: Sequence[int | None]) -> Settled:
        """Give the states of the last pass that opened calls their ids (one per OpenCall of
        its outcome, in order); return the pass's rule states and changes to store."""
        return self._pass.settle(call_ids)

    def hosts_due(self, now: float) -> list[str]:
        """Hosts whose time-based evaluation may change something now: silent past their
        limit, with a rule state that time may move (a problem waiting out its `for`,
        flapping, a silence, a parent's call, staleness), or not walked for one of their
        intervals (vanished series, silent checks). A steady problem with its call open
        waits for the next report.

        A replica sharing its store takes each of them under the host's lock.
        """
        return _finish(self._hosts_due_steps(now, float("inf")))

    def _hosts_due_steps(
        self, now: float, slice_seconds: float
    ) -> Generator[None, None, list[str]]:
        """hosts_due(), yielding every `slice_seconds`. It walks copies of the fleet's
        tables, so reports ingested between its steps cannot upset the walk (their hosts are
        looked at afresh by tick_host)."""
        self._parents.new_evaluation()
        factor = self._config.staleness.after_intervals
        due: set[str] = set()
        began = time.perf_counter()
        # Copies of the keys and the values, not of the items: no tuple per state to allocate.
        states = self._fleet.states
        for count, ((rule, state_host, _), state) in enumerate(
            zip(list(states), list(states.values()), strict=True)
        ):
            if (
                (state.severity.is_problem and state.call_id is None)
                or state.flapping
                or state.silenced
                or state.absorbed_by is not None
                or (
                    rule in _STALENESS_RULES
                    and (state.severity is not Severity.OK or state.call_id is not None)
                )
            ):
                due.add(state_host)  # a `for`, a calm-down, a window's end, a recovery
            if not count % 1024 and time.perf_counter() - began >= slice_seconds:
                yield
                began = time.perf_counter()
        hosts = self._fleet.hosts
        for count, (name, host) in enumerate(zip(list(hosts), list(hosts.values()), strict=True)):
            if not count % 256 and time.perf_counter() - began >= slice_seconds:
                yield
                began = time.perf_counter()
            if name in due:
                continue
            walked = self._walked_at.get(name)
            if walked is None:
                # First seen: a place in the interval by the host's name, so that after a
                # restart the walks spread over one interval instead of all coming at once.
                interval = host.record.interval_seconds
                walked = self._walked_at[name] = (
                    now - interval * (zlib.crc32(name.encode()) % 1024 + 1) / 1024
                )
            if (
                now - host.record.last_report_at > host.stale_after(factor)
                or now - walked >= host.record.interval_seconds
            ):
                due.add(name)
        return sorted(due)

    def parents_of(self, host: str) -> tuple[str, ...]:
        """The parents the config names for this host (every matching glob counts)."""
        return self._parents.parents_of(host)

    def prune_history(self, now: float) -> None:
        """Drop history past its retention: forecasts' at most once per resolution step;
        the graphs' a few hosts per tick, a walk over all of them once per resolution step
        (so that no tick holds reports up for a large delete)."""
        history = self._config.history
        resolution = float(history.resolution)
        before = now - float(history.retention)
        if self._series.history_for and now - self._pruned_at >= resolution:
            self._pruned_at = now
            self._writer.prune_history(before)
        if not history.graphs:
            return
        if self._steps_walk is None:
            if now - self._steps_walked_at < resolution:
                return
            self._steps_walk, self._steps_walked_at = "", now
        self._steps_walk = self._writer.prune_steps(before, self._steps_walk, PRUNE_HOSTS)


# Hosts whose graph history one tick prunes: 10,000 hosts in 100 ticks (8 min at 5 s).
PRUNE_HOSTS = 100

_STALENESS_RULES = frozenset({STALE_RULE, CHECK_STALE_RULE})


def _finish(steps: Generator[None, None, list[str]]) -> list[str]:
    """Run a stepwise computation to its end and return its value."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
