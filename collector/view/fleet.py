"""The collector's in-memory view of the fleet, rebuilt from the store at start."""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from typing import Any

from collector.config import CHECK_STALE_RULE
from collector.evaluation.rules import RuleState, Severity
from collector.store.protocols import Store
from collector.store.records import (
    CheckStatus,
    HistoryPoint,
    HostRecord,
    HostRetirement,
    HostSnapshot,
    RuleStateRecord,
    SeriesRecord,
)
from collector.view.history import StepKeeper

SeriesKey = tuple[str, str, str]  # host, metric name, labels key
StateKey = tuple[str, str, str]  # rule, host, labels key
_MISSING: Any = object()


# How bad each severity is for a host, worst last: a CRITICAL problem outweighs a check that
# cannot measure (UNKNOWN), as the overview ranks them; STALE (the host is silent) outweighs all.
HOST_RANK: dict[Severity, int] = {
    Severity.OK: 0,
    Severity.WARNING: 1,
    Severity.UNKNOWN: 2,
    Severity.CRITICAL: 3,
    Severity.STALE: 4,
}


def worse(a: Severity, b: Severity) -> Severity:
    """The worse of two severities for a host (HOST_RANK)."""
    return a if HOST_RANK[a] >= HOST_RANK[b] else b


def problem_severity(rule: str, state: RuleState) -> Severity:
    """How much one rule state weighs in its host's state: a host's state is its worst open
    problem (or STALE when it stopped reporting, which the caller decides).

    A problem is the rule's severity now, or its open call's when that is worse: a flapping
    rule's call keeps the worst severity seen, and a silenced step leaves its call as it was,
    so a host never reads WARNING next to its own CRITICAL call. Silenced, flapping and
    absorbed problems count as any other: the host page lists them with their marks. One
    silent check counts as UNKNOWN: the host itself still reports. Which is worse: HOST_RANK.
    """
    severity = state.severity
    if state.call_id is not None:
        severity = worse(severity, state.call_severity)
    if rule == CHECK_STALE_RULE and severity is Severity.STALE:
        severity = Severity.UNKNOWN
    return severity


class StateTable(dict[StateKey, RuleState]):
    """Rule states by (rule, host, labels key), with each host's keys at hand: one host is
    reloaded without a walk over every state of the fleet (180,000 at 10,000 hosts)."""

    def __init__(self) -> None:
        super().__init__()
        self._by_host: dict[str, set[StateKey]] = {}
        # Hosts whose states changed since take_changed() last asked (None: every host).
        self._changed: set[str] | None = None
        # The keys of the states that are not OK: few, even in a large fleet (services/).
        self._problems: set[StateKey] = set()

    def __setitem__(self, key: StateKey, value: RuleState) -> None:
        if key not in self:
            self._by_host.setdefault(key[1], set()).add(key)
        if self._changed is not None:
            self._changed.add(key[1])
        super().__setitem__(key, value)
        if value.severity:
            self._problems.add(key)
        else:
            self._problems.discard(key)

    def __delitem__(self, key: StateKey) -> None:
        super().__delitem__(key)
        if self._changed is not None:
            self._changed.add(key[1])
        self._problems.discard(key)
        keys = self._by_host[key[1]]
        keys.discard(key)
        if not keys:
            del self._by_host[key[1]]

    def pop(self, key: StateKey, default: Any = _MISSING) -> Any:
        if key in self:
            value = self[key]
            del self[key]
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def clear(self) -> None:
        super().clear()
        self._by_host.clear()
        self._problems.clear()
        self._changed = None

    def take_changed(self) -> set[str] | None:
        """The hosts whose states were set or dropped since the last call (None: all may
        have), and start noting afresh."""
        changed, self._changed = self._changed, set()
        return changed

    def hosts(self) -> list[str]:
        """The hosts that have states."""
        return list(self._by_host)

    def keys_of(self, host: str) -> list[StateKey]:
        """The keys of one host's states."""
        return list(self._by_host.get(host, ()))

    def problem_keys(self) -> list[StateKey]:
        """The keys of the states that are not OK (a copy)."""
        return list(self._problems)

    def setdefault(self, *args: Any) -> Any:
        raise NotImplementedError("StateTable keeps an index: set items one by one")

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("StateTable keeps an index: set items one by one")

    def popitem(self) -> Any:
        raise NotImplementedError("StateTable keeps an index: pop items by key")


@dataclass(slots=True)
class HostState:
    record: HostRecord
    checks: dict[str, CheckStatus] = field(default_factory=dict)

    def stale_after(self, factor: float) -> float:
        return factor * self.record.interval_seconds


class Fleet:
    """Hosts, the latest value of every series, and every rule state, indexed for evaluation."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostState] = {}
        self.series: dict[SeriesKey, SeriesRecord] = {}
        self.seen_at: dict[SeriesKey, float] = {}  # collector time of the last update
        self.by_host: dict[str, set[SeriesKey]] = defaultdict(set)
        self.states = StateTable()
        # The stored version of each host this view reflects (see Store.lock_host).
        self.versions: dict[str, int] = {}
        # The last few values of series that rules watch, for the calls' "recent measurements".
        self.recent: dict[SeriesKey, deque[tuple[float, float]]] = {}
        # Collector time when each (host, check) last reported a run: per-check staleness.
        self.check_seen_at: dict[tuple[str, str], float] = {}
        # Downsampled points of the series that forecasts watch, oldest first.
        self.history: dict[SeriesKey, deque[tuple[float, float]]] = {}
        # The step in progress of every ruled series, for the console's graphs (history.py).
        self.steps = StepKeeper()
        # A stamp per host, new whenever one of its series is put or dropped: what was derived
        # from a host's series (its /metrics text) is current while the stamp is unchanged.
        # Stamps come from one counter, so a host removed and seen again never repeats one.
        self.series_stamps: dict[str, int] = {}
        self._stamps = itertools.count(1)
        # Hosts an operator retired: their reports are refused by a lookup here, not a query.
        self.retired: dict[str, HostRetirement] = {}
        # Each host's worst rule state, when not OK, as of the last worst_by_host().
        self._worst: dict[str, Severity] = {}

    def reload(self, store: Store, now: float, history_since: float | None = None) -> None:
        """Rebuild the view from the store. Series count as seen now: a restart is no outage."""
        self.hosts.clear()
        self.series.clear()
        self.seen_at.clear()
        self.by_host.clear()
        self.states.clear()
        self.check_seen_at.clear()
        self.history.clear()
        self.series_stamps.clear()
        self.versions = store.host_versions()
        self.retired = {retirement.host: retirement for retirement in store.retirements()}
        for host in store.load_hosts():
            self.hosts[host.host] = HostState(host)
        for status in store.load_check_statuses():
            if status.host in self.hosts:
                self.hosts[status.host].checks[status.check] = status
                self.check_seen_at[(status.host, status.check)] = now
        if history_since is not None:
            for point in store.load_history(history_since):
                key = (point.host, point.name, point.labels_key)
                self.history.setdefault(key, deque()).append((point.timestamp, point.value))
        for series in store.load_series():
            self.put_series(series, now)
        self.steps.keep_only(self.series)  # steps in progress survive a reload, not old series
        for record in store.load_rule_states():
            self.states[(record.rule, record.host, record.labels_key)] = record.state

    def reload_host(self, snapshot: HostSnapshot, host: str, now: float) -> None:
        """Replace this view of one host by what the store holds (another replica moved it)."""
        history = {
            key: self.history[key] for key in self.by_host.get(host, ()) if key in self.history
        }
        for key in list(self.by_host.get(host, ())):
            self.drop_series(key)
        for key in self.states.keys_of(host):
            del self.states[key]
        known = self.hosts.pop(host, None)
        for check in known.checks if known is not None else ():
            self.check_seen_at.pop((host, check), None)
        self.versions[host] = snapshot.version
        if snapshot.retirement is not None:
            self.retired[host] = snapshot.retirement
        else:
            self.retired.pop(host, None)
        if snapshot.record is None:
            return
        state = self.hosts[host] = HostState(snapshot.record)
        for status in snapshot.statuses:
            state.checks[status.check] = status
            self.check_seen_at[(host, status.check)] = now
        for series in snapshot.series:
            self.put_series(series, now)
        # Forecast history this view gathered stays; points another replica wrote are in the
        # store for the next full reload.
        self.history.update(history)
        for record in snapshot.states:
            self.states[(record.rule, record.host, record.labels_key)] = record.state

    def retire(self, retirement: HostRetirement) -> None:
        """Forget a retired host's series, checks and states, and refuse its reports."""
        host = retirement.host
        for key in list(self.by_host.get(host, ())):
            self.drop_series(key)
        self.by_host.pop(host, None)
        for key in self.states.keys_of(host):
            del self.states[key]
        known = self.hosts.pop(host, None)
        for check in known.checks if known is not None else ():
            self.check_seen_at.pop((host, check), None)
        self.retired[host] = retirement

    def restore(self, record: HostRecord) -> None:
        """Take a retired host back: it reports again (within its staleness limit)."""
        self.retired.pop(record.host, None)
        self.hosts[record.host] = HostState(record)

    def is_current(self, host: str, version: int) -> bool:
        """Whether this view holds the host at the stored `version` (see view/replica.py)."""
        return host in self.hosts and self.versions.get(host) == version

    def version_of(self, host: str) -> int | None:
        """The stored version of the host this view reflects, if it knows one."""
        return self.versions.get(host)

    def set_versions(self, versions: dict[str, int]) -> None:
        """Note the versions the store gave the hosts this view just changed."""
        self.versions.update(versions)

    def release_call(self, call_id: int) -> list[RuleStateRecord]:
        """Free the rule states that pointed at a call that is over; return them to store."""
        released = []
        for key, state in self.states.items():
            if state.call_id == call_id:
                freed = replace(state, call_id=None, call_severity=Severity.OK)
                self.states[key] = freed
                released.append(RuleStateRecord(key[0], key[1], key[2], freed))
        return released

    def take_report(
        self,
        record: HostRecord,
        statuses: list[CheckStatus],
        series: list[SeriesRecord],
        now: float,
    ) -> None:
        """Bring the view up to date with a stored report: the host, its checks' last runs
        and the latest value of each series it sent."""
        host = self.hosts.setdefault(record.host, HostState(record))
        host.record = record
        for status in statuses:
            host.checks[status.check] = status
        for one in series:
            self.put_series(one, now)

    def saw_check(self, host: str, check: str, now: float) -> None:
        """Note that a check of the host reported a run (per-check staleness goes by it)."""
        self.check_seen_at[(host, check)] = now

    def forget_check(self, host: str, check: str) -> None:
        """Forget a check the host no longer runs, and its staleness state."""
        self.hosts[host].checks.pop(check, None)
        self.check_seen_at.pop((host, check), None)

    def set_state(self, key: StateKey, state: RuleState) -> None:
        """Record where a rule stands for one series (evaluation decided it)."""
        self.states[key] = state

    def forget_state(self, key: StateKey) -> None:
        """Forget a rule's state for a series that is gone."""
        self.states.pop(key, None)

    def put_series(self, series: SeriesRecord, now: float) -> None:
        key = (series.host, series.name, series.labels_key)
        self.series[key] = series
        self.seen_at[key] = now
        self.by_host[series.host].add(key)
        self.series_stamps[series.host] = next(self._stamps)

    def remember(self, series: SeriesRecord, keep: int = 8) -> tuple[tuple[float, float], ...]:
        """Add the series' latest value to its short history; return the history."""
        key = (series.host, series.name, series.labels_key)
        ring = self.recent.get(key)
        if ring is None:
            ring = self.recent[key] = deque(maxlen=keep)
        if not ring or ring[-1][0] != series.timestamp:
            ring.append((series.timestamp, series.value))
        return tuple(ring)

    def record_history(
        self, series: SeriesRecord, resolution: float, keep_for: float
    ) -> HistoryPoint | None:
        """Keep the series' value if it opens a new `resolution` step; return the new point."""
        key = (series.host, series.name, series.labels_key)
        points = self.history.get(key)
        if points is None:
            points = self.history[key] = deque()
        if points and series.timestamp // resolution <= points[-1][0] // resolution:
            return None  # this step already has its point: one per series per step
        points.append((series.timestamp, series.value))
        while points and points[0][0] < series.timestamp - keep_for:
            points.popleft()
        return HistoryPoint(
            series.host, series.name, series.labels_key, series.timestamp, series.value
        )

    def drop_series(self, key: SeriesKey) -> None:
        self.steps.close(key)
        self.history.pop(key, None)
        self.recent.pop(key, None)
        self.series.pop(key, None)
        self.seen_at.pop(key, None)
        self.by_host[key[0]].discard(key)
        self.series_stamps[key[0]] = next(self._stamps)

    def worst_of(self, host: str) -> Severity:
        """One host's state from its rule states: its worst open problem (problem_severity)."""
        return max(
            (problem_severity(key[0], self.states[key]) for key in self.states.keys_of(host)),
            default=Severity.OK,
            key=HOST_RANK.__getitem__,
        )

    def worst_by_host(self) -> dict[str, Severity]:
        """Each host's state with a problem (the others are OK): its worst open problem. Kept
        between calls: only hosts whose states changed since are read again, so the console
        asking every few seconds does not walk all the fleet's states (180,000 at 10,000)."""
        changed = self.states.take_changed()
        if changed is None:
            self._worst = {}
            changed = set(self.states.hosts())
        for host in changed:
            severity = self.worst_of(host)
            if severity is Severity.OK:
                self._worst.pop(host, None)
            else:
                self._worst[host] = severity
        return dict(self._worst)

    def is_stale(self, host: str, now: float, factor: float) -> bool:
        state = self.hosts[host]
        return now - state.record.last_report_at > state.stale_after(factor)
