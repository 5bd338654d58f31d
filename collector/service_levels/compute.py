"""Computing a report: availability and hosts up per host over its watched time, then calls."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from collector.config import STALE_RULE, CollectorConfig
from collector.evaluation.overrides import group_matches
from collector.evaluation.rules import Severity
from collector.service_levels.backups import backup_jobs
from collector.service_levels.calls import CallFacts, call_facts
from collector.service_levels.model import Recurring, ScopeReport, ServiceReport
from collector.service_levels.period import (
    DAY,
    Period,
    ReportError,
    Span,
    intersect,
    length,
    refuse_future,
    union,
)
from collector.service_levels.services import group_olas, service_levels
from collector.store.protocols import Store
from collector.store.records import HostRecord, StateChange


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def p90(values: list[float]) -> float | None:
    """The nearest-rank 90th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def host_retirements(store: Store) -> tuple[list[HostRecord], dict[str, float]]:
    """The retired hosts' records and when each was retired (Unix time), for build_report's
    `retired_hosts` and `retired`: a retired host counts from its first report to then (the
    store's load_hosts() lists only the hosts in service)."""
    found = store.retirements()
    return [r.record for r in found if r.record], {r.host: r.retired_at for r in found}


def watched_spans(recorded: list[Span], period: Period) -> list[Span]:
    """When a collector evaluated within the period. Before the first evaluation ever recorded
    (a store from an older runwatch), time counts as watched, as it did then."""
    before = [(-math.inf, recorded[0][0])] if recorded else [(-math.inf, math.inf)]
    return intersect(before + recorded, [(period.start, period.last)])


def _severity_spans(changes: list[StateChange], period: Period, wanted: int) -> list[Span]:
    """The spans within the period in which one series' severity was `wanted`."""
    spans = []
    for i, change in enumerate(changes):
        if change.severity != wanted:
            continue
        begin = max(change.at, period.start)
        end = min(changes[i + 1].at if i + 1 < len(changes) else period.last, period.last)
        if end > begin:
            spans.append((begin, end))
    return spans


@dataclass(slots=True)
class HostTime:
    """One host's watched time, and when a rule of each owner group was CRITICAL on it."""

    watched: list[Span]
    critical: dict[str, list[Span]]  # owner group -> spans, within `watched`
    stale: list[Span]  # within `watched`

    def seconds(self) -> float:
        return length(self.watched)

    def down(self, group: str | None) -> list[Span]:
        if group is not None:
            return self.critical.get(group, [])
        return union(s for spans in self.critical.values() for s in spans)


def host_times(
    hosts: Mapping[str, HostRecord],
    changes: list[StateChange],
    period: Period,
    watched: list[Span],
    retired: Mapping[str, float],
) -> dict[str, HostTime]:
    """Each host's time from its first report to its retirement, as far as it was watched."""
    by_series: dict[tuple[str, str, str], list[StateChange]] = defaultdict(list)
    for change in changes:
        by_series[(change.host, change.rule, change.labels_key)].append(change)
    out: dict[str, HostTime] = {}
    for name, record in hosts.items():
        begin = max(period.start, record.first_seen)
        end = min(period.last, retired.get(name, math.inf))
        out[name] = HostTime(intersect([(begin, end)], watched), {}, [])
    for (host, rule, _key), series in by_series.items():
        time = out.get(host)
        if time is None:
            continue
        if rule == STALE_RULE:
            stale = _severity_spans(series, period, Severity.STALE)
            time.stale = union(time.stale + intersect(stale, time.watched))
            continue
        group = series[-1].group
        spans = intersect(_severity_spans(series, period, Severity.CRITICAL), time.watched)
        time.critical[group] = union(time.critical.get(group, []) + spans)
    return out


def _levels(
    times: list[HostTime], group: str | None
) -> tuple[float | None, float | None, float | None, float]:
    """Availability, all-clear share, hosts up (None if nothing watched), watched seconds."""
    watched = sum(t.seconds() for t in times)
    if watched <= 0:
        return None, None, None, 0.0
    down = sum(length(t.down(group)) for t in times)
    stale = sum(length(t.stale) for t in times)
    covered = union(s for t in times for s in t.watched)
    any_down = union(s for t in times for s in t.down(group))
    return 1 - down / watched, 1 - length(any_down) / length(covered), 1 - stale / watched, watched


def build_report(
    store: Store,
    config: CollectorConfig,
    period: Period,
    group: str | None = None,
    *,
    as_of: float | None = None,
    retired: Mapping[str, float] | None = None,
    retired_hosts: Iterable[HostRecord] = (),
) -> ServiceReport:
    """Compute the report for `period`, for every group or just `group` (run or host group).

    `as_of`: the caller's clock: a month still running counts up to it, a month that has not
    begun is refused, and a month that is over is the same whatever it says. `retired`: when
    each retired host was retired; `retired_hosts`: the records of retired hosts the store no
    longer lists with the hosts in service (see host_retirements)."""
    if as_of is not None:
        refuse_future(period, as_of)
        if as_of < period.end:
            period = replace(period, until=as_of)
    host_groups = {g.name: g for g in config.host_groups}
    if group is not None and group not in config.groups and group not in host_groups:
        raise ReportError(
            f"no run group or host group named {group!r} (run groups: "
            f"{', '.join(sorted(config.groups)) or 'none'}; host groups: "
            f"{', '.join(sorted(host_groups)) or 'none'})"
        )
    hosts = {h.host: h for h in store.load_hosts()}
    for record in retired_hosts:
        hosts.setdefault(record.host, record)
    recorded = store.evaluation_spans()
    watched = watched_spans(recorded, period)
    times = host_times(
        hosts, store.state_changes(period.start, period.last), period, watched, retired or {}
    )
    calls = call_facts(store, config, period)

    def members(name: str) -> set[str]:
        return {
            h
            for h, record in hosts.items()
            if group_matches(host_groups[name], h, record.labels)[0]
        }

    common: dict[str, Any] = {"config": config, "times": times, "calls": calls}
    scopes = []
    if group is None:
        scopes.append(_scope("fleet", "all", period, **common))
    for name in sorted(config.groups):
        if group in (None, name):
            scopes.append(_scope("run group", name, period, **common, run_group=name))
    for name in sorted(host_groups):
        if group in (None, name):
            scopes.append(_scope("host group", name, period, **common, scope_hosts=members(name)))
    backup_hosts = members(group) if group in host_groups else None
    # Services and OLAs, once the config has either: every service and run group, or the run
    # group's own.
    services, olas = [], []
    has_targets = bool(config.services) or any(g.ola for g in config.groups.values())
    if has_targets and (group is None or group in config.groups):
        services = service_levels(store, config, period, watched, calls, owner=group)
        olas = group_olas(config, period, calls, group)
    return ServiceReport(
        period,
        group,
        scopes,
        backup_jobs(store, config, period, backup_hosts),
        unwatched_seconds=period.last - period.start - length(watched),
        watch_recorded_from=recorded[0][0] if recorded else None,
        services=services,
        olas=olas,
    )


def _scope(
    kind: str,
    name: str,
    period: Period,
    *,
    config: CollectorConfig,
    times: dict[str, HostTime],
    calls: list[CallFacts],
    scope_hosts: set[str] | None = None,
    run_group: str | None = None,
) -> ScopeReport:
    def in_scope(host: str, grp: str) -> bool:
        return (scope_hosts is None or host in scope_hosts) and run_group in (None, grp)

    chosen = [t for h, t in sorted(times.items()) if scope_hosts is None or h in scope_hosts]
    availability, all_clear, hosts_up, watched = _levels(chosen, run_group)
    mine = [c for c in calls if in_scope(c.call.host, c.call.group)]
    return ScopeReport(
        kind=kind,
        name=name,
        availability=availability,
        all_clear=all_clear,
        hosts_up=hosts_up if run_group is None else None,
        hosts=sum(1 for t in chosen if t.seconds() > 0),
        watched_host_seconds=watched,
        **_call_levels(mine, period, lambda grp: _respond_within(config, grp)),
    )


def _respond_within(config: CollectorConfig, group: str) -> float:
    found = config.groups.get(group)
    return float(found.respond_within) if found is not None else math.inf


def _call_levels(
    mine: list[CallFacts], period: Period, respond_within: Callable[[str], float]
) -> dict[str, Any]:
    """The call columns of one scope."""
    last = period.last
    tta = [c.first_response - c.call.opened_at for c in mine if c.first_response is not None]
    ttr = [c.final_resolved - c.call.opened_at for c in mine if c.final_resolved is not None]
    ages = [last - c.call.opened_at for c in mine if c.final_resolved is None]
    ranked = sorted([(t, False) for t in ttr] + [(a, True) for a in ages])
    p90_rank = ranked[max(0, math.ceil(0.9 * len(ranked)) - 1)] if ranked else None
    per_day = [0] * period.days_begun
    recurring: Counter[tuple[str, str]] = Counter()
    missed = unanswered = 0
    for c in mine:
        opened = c.call.opened_at
        deadline = opened + respond_within(c.call.group)
        ended = min(
            (t for t in (c.first_response, c.first_resolved) if t is not None), default=None
        )
        if (ended is None and deadline < last) or (ended is not None and ended > deadline):
            missed += 1
        if c.first_resolved is not None and (
            c.first_response is None or c.first_response > c.first_resolved
        ):
            unanswered += 1
        per_day[min(int((opened - period.start) // DAY), len(per_day) - 1)] += 1
        recurring[(c.call.host, c.call.rule)] += (0 if c.continues_desk_close else 1) + c.reopened
    return {
        "calls_opened": len(mine),
        "calls_reopened": sum(c.reopened for c in mine),
        "desk_reopened": sum(c.desk_reopened + c.continues_desk_close for c in mine),
        "responded": len(tta),
        "tta_mean_seconds": mean(tta),
        "tta_p90_seconds": p90(tta),
        "resolved": len(ttr),
        "ttr_mean_seconds": mean(ttr),
        "ttr_p90_seconds": None if p90_rank is None else p90_rank[0],
        "ttr_p90_at_least": bool(p90_rank and p90_rank[1]),
        "still_open": len(ages),
        "still_open_oldest_seconds": max(ages, default=None),
        "recovered_unanswered": unanswered,
        "missed_response": missed,
        "recurring": [
            Recurring(h, r, n)
            for (h, r), n in sorted(recurring.items(), key=lambda item: (-item[1], item[0]))
            if n >= 2
        ][:5],
        "calls_per_day": per_day,
        "ttr_seconds": sorted(ttr),
    }
