"""The graphs of a host page and of a call page: which series, over which time, with which
thresholds and marks, read from the store when a page is drawn (history.py keeps them).

A host page shows each ruled series over the last 24 hours with the warning and critical
thresholds that apply to that host (host groups' overrides included); a call page the series
that opened the call, from an hour before it opened until now (or until a step after it was
resolved), with the moments it opened, was acknowledged, reopened and resolved.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

from collector.config import CollectorConfig, RuleConfig
from collector.evaluation.overrides import ThresholdResolver
from collector.evaluation.rules import matches
from collector.incidents.calls import Call, CallEvent, labels_key
from collector.store.protocols import HistoryStore
from collector.store.records import HistoryStep
from collector.view.fleet import Fleet, SeriesKey
from collector.view.graphs import Graph, Mark, Threshold
from collector.view.history import series_id

DAY = 86400.0
BEFORE_CALL = 3600.0  # a call's graph starts this long before it opened


class GraphSource(Protocol):
    """What the graphs read: the collector service has all of it."""

    @property
    def config(self) -> CollectorConfig: ...
    @property
    def store(self) -> HistoryStore: ...
    @property
    def fleet(self) -> Fleet: ...
    @property
    def resolver(self) -> ThresholdResolver: ...
    @property
    def clock(self) -> Callable[[], float]: ...


class GraphReader:
    """Graphs for the console's pages."""

    def __init__(self, source: GraphSource) -> None:
        self._source = source

    def host(self, host: str, span: float = DAY) -> list[Graph]:
        """One graph per ruled series of the host, over the last `span` (one store read)."""
        source = self._source
        now = source.clock()
        start = now - span
        rules = {rule.name: rule for rule in source.config.rules}
        by_series: dict[SeriesKey, list[RuleConfig]] = defaultdict(list)
        for rule_name, state_host, key in sorted(source.fleet.states.keys_of(host)):
            rule = rules.get(rule_name)
            if rule is not None and state_host == host:
                by_series[(host, rule.metric, key)].append(rule)
        if not by_series:
            return []
        stored: dict[int, list[HistoryStep]] = defaultdict(list)
        resolution = float(source.config.history.resolution)
        for step in source.store.read_steps(host, start - resolution, now):
            stored[step.series].append(step)
        return [
            self._graph(key, ruled, start=start, end=now, stored=stored[series_id(key[1], key[2])])
            for key, ruled in by_series.items()
        ]

    def call(
        self, call: Call, events: Sequence[CallEvent], acknowledged_at: float | None
    ) -> Graph | None:
        """The graph of the series that opened the call; None for a rule with no series (a
        silent host, a storm's umbrella) or a rule no longer configured."""
        source = self._source
        rule = next((r for r in source.config.rules if r.name == call.rule), None)
        if rule is None:
            return None
        now = source.clock()
        resolution = float(source.config.history.resolution)
        start = max(call.opened_at - BEFORE_CALL, now - float(source.config.history.retention))
        end = now if call.resolved_at is None else min(now, call.resolved_at + resolution)
        key = (call.host, rule.metric, labels_key(call.labels))
        # From the step the window starts in.
        stored = source.store.read_steps(
            call.host, start - resolution, end, series_id(key[1], key[2])
        )
        marks = [Mark("opened", call.opened_at)]
        if acknowledged_at is not None:
            marks.append(Mark("acknowledged", acknowledged_at))
        marks += [Mark(e.kind, e.at) for e in events if e.kind in ("reopened", "resolved")]
        if call.resolved_at is not None and not any(m.kind == "resolved" for m in marks):
            marks.append(Mark("resolved", call.resolved_at))
        rules = [r for r in source.config.rules if r.metric == rule.metric]
        return self._graph(
            key,
            rules,
            start=start,
            end=end,
            stored=stored,
            marks=tuple(marks),
            graph_id="call-graph",
        )

    def _graph(
        self,
        key: SeriesKey,
        rules: Sequence[RuleConfig],
        *,
        start: float,
        end: float,
        stored: list[HistoryStep],
        marks: tuple[Mark, ...] = (),
        graph_id: str = "",
    ) -> Graph:
        source = self._source
        host, metric, labels = key
        current = source.fleet.steps.current(key)
        steps = list(stored)
        if (
            current is not None
            and start - float(source.config.history.resolution) < current.at <= end
        ):
            steps = [s for s in steps if s.at != current.at] + [current]
        series = source.fleet.series.get(key)
        return Graph(
            host=host,
            metric=metric,
            labels=json.loads(labels),
            unit=series.unit if series is not None else "",
            start=start,
            end=end,
            resolution=float(source.config.history.resolution),
            steps=tuple(steps),
            thresholds=self._thresholds(host, rules, json.loads(labels)),
            marks=marks,
            graph_id=graph_id,
        )

    def _thresholds(
        self, host: str, rules: Sequence[RuleConfig], labels: dict[str, str]
    ) -> tuple[Threshold, ...]:
        """The warning and critical thresholds of the rules that judge this series' values
        (a forecast judges a time, not the value: it has none to draw), as they apply here."""
        source = self._source
        state = source.fleet.hosts.get(host)
        host_labels = state.record.labels if state is not None else {}
        found: list[Threshold] = []
        for rule in rules:
            if rule.forecast is not None or not matches(rule, labels):
                continue
            effective = source.resolver.effective(rule, host, host_labels)
            for severity, value in (
                ("warning", effective.warning),
                ("critical", effective.critical),
            ):
                if value is not None:
                    found.append(Threshold(severity, value, rule.name))
        return tuple(found)
