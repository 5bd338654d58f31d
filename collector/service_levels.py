"""Service-level reports: how each run group and host group met its service levels in a month.

Every number comes from the store's own records (rule state changes, calls and their events,
backup successes) up to the end of the period, never from the wall clock: the same data gives
the same report, and a month's report does not change once the month is over.

Definitions (all times UTC):
- availability: the share of the period in which no rule in scope was CRITICAL;
- hosts up: the mean over hosts in scope of the share of the period (from the host's first
  report) in which the host was not STALE;
- time to acknowledge: from a call's opening to its first acknowledgement (by hand in the
  built-in register, or seen in its help desk); time to resolve: to its first resolution;
- the 90th percentile is the nearest-rank one (the value at rank ceil(0.9 n));
- a call missed `respond_within` when it was neither acknowledged nor resolved within it;
- a recurring problem is a (host, rule) that opened or reopened calls at least twice;
- a backup job had a fresh backup on a day when a successful backup finished that day.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from html import escape
from typing import Any

from collector.config import STALE_RULE, CollectorConfig
from collector.evaluation.overrides import group_matches
from collector.evaluation.rules import Severity
from collector.store.protocols import Store
from collector.store.records import StateChange

DAY = 86400.0
FORMATS = ("json", "csv", "md", "html")


class ReportError(ValueError):
    """The period or the group asked for does not exist."""


@dataclass(frozen=True, slots=True)
class Period:
    label: str  # 2026-11
    start: float  # Unix time, inclusive
    end: float  # Unix time, exclusive
    until: float | None = None  # a month still running is reported up to here

    @property
    def last(self) -> float:
        """Where the records read end: the period's end, or `until` for a running month."""
        return self.end if self.until is None else min(self.end, self.until)

    @property
    def days(self) -> int:
        return round((self.end - self.start) / DAY)


def parse_period(text: str) -> Period:
    """A calendar month in UTC, written YYYY-MM."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not match or not 1 <= int(match[2]) <= 12:
        raise ReportError(f"period {text!r} is not a month written YYYY-MM (e.g. 2026-11)")
    year, month = int(match[1]), int(match[2])
    start = datetime(year, month, 1, tzinfo=UTC).timestamp()
    days = calendar.monthrange(year, month)[1]
    return Period(f"{year:04d}-{month:02d}", start, start + days * DAY)


@dataclass(slots=True)
class Recurring:
    host: str
    rule: str
    calls: int  # calls opened or reopened in the period


@dataclass(slots=True)
class ScopeReport:
    """The service levels of one run group, one host group, or the whole fleet."""

    kind: str  # "fleet", "run group" or "host group"
    name: str
    availability: float | None  # None: nothing in scope
    hosts_up: float | None
    hosts: int
    calls_opened: int
    calls_reopened: int
    acknowledged: int
    resolved: int
    tta_mean_seconds: float | None
    tta_p90_seconds: float | None
    ttr_mean_seconds: float | None
    ttr_p90_seconds: float | None
    missed_response: int
    recurring: list[Recurring] = field(default_factory=list)
    calls_per_day: list[int] = field(default_factory=list)
    ttr_seconds: list[float] = field(default_factory=list)


@dataclass(slots=True)
class BackupJob:
    host: str
    job: str
    labels: dict[str, str]
    days_fresh: int
    days: int
    share: float | None
    calendar: list[bool | None]  # per day of the period; None: before the job was known


@dataclass(slots=True)
class ServiceReport:
    period: Period
    group: str | None
    scopes: list[ScopeReport]
    backups: list[BackupJob]

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period.label,
            "start": self.period.start,
            "end": self.period.end,
            "until": self.period.last,
            "group": self.group,
            "scopes": [asdict(s) for s in self.scopes],
            "backups": [asdict(b) for b in self.backups],
        }


# -- computing ------------------------------------------------------------------------------


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def p90(values: list[float]) -> float | None:
    """The nearest-rank 90th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def _intervals(
    changes: list[StateChange], period: Period, wanted: set[int]
) -> list[tuple[float, float]]:
    """The spans within the period in which one series' severity was in `wanted`."""
    spans = []
    for i, change in enumerate(changes):
        if change.severity not in wanted:
            continue
        begin = max(change.at, period.start)
        end = min(changes[i + 1].at if i + 1 < len(changes) else period.last, period.last)
        if end > begin:
            spans.append((begin, end))
    return spans


def _union_length(spans: list[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for begin, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(begin, reach)
        reach = end
    return total


def _labels(key: str) -> dict[str, str]:
    try:
        found = json.loads(key)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def build_report(
    store: Store,
    config: CollectorConfig,
    period: Period,
    group: str | None = None,
    *,
    as_of: float | None = None,
) -> ServiceReport:
    """Compute the report for `period`, for every group or just `group` (run or host group).

    `as_of`: for a month still running, count only up to this time (the caller's clock); a
    month that is over is the same whatever `as_of` says."""
    if as_of is not None and as_of < period.end:
        period = replace(period, until=max(as_of, period.start))
    host_groups = {g.name: g for g in config.host_groups}
    if group is not None and group not in config.groups and group not in host_groups:
        raise ReportError(
            f"no run group or host group named {group!r} (run groups: "
            f"{', '.join(sorted(config.groups)) or 'none'}; host groups: "
            f"{', '.join(sorted(host_groups)) or 'none'})"
        )
    hosts = {h.host: h for h in store.load_hosts()}
    by_series: dict[tuple[str, str, str], list[StateChange]] = defaultdict(list)
    for change in store.state_changes(period.start, period.last):
        by_series[(change.host, change.rule, change.labels_key)].append(change)

    # Calls opened in the period, with what happened to them before its end.
    calls = []
    for call in store.calls_opened_between(period.start, period.last):
        events = [e for e in store.call_events(call.id) if e.at < period.last]
        acked = next((e.at for e in events if e.kind == "acknowledged"), None)
        if acked is None and call.group in config.groups:
            link = store.get_link(call.id, config.groups[call.group].sink)
            if link and link.acknowledged_at is not None and link.acknowledged_at < period.last:
                acked = link.acknowledged_at
        resolved = next((e.at for e in events if e.kind == "resolved"), None)
        reopens = [e.at for e in events if e.kind == "reopened" and e.at >= period.start]
        calls.append((call, acked, resolved, reopens))

    def members(name: str) -> set[str]:
        return {
            h
            for h, record in hosts.items()
            if group_matches(host_groups[name], h, record.labels)[0]
        }

    scopes: list[tuple[str, str, set[str] | None, str | None]] = []
    if group is None:
        scopes.append(("fleet", "all", set(hosts), None))
    for name in sorted(config.groups):
        if group in (None, name):
            scopes.append(("run group", name, None, name))
    for name in sorted(host_groups):
        if group in (None, name):
            scopes.append(("host group", name, members(name), None))

    out = []
    for kind, name, scope_hosts, run_group in scopes:

        def in_scope(
            host: str,
            grp: str,
            scope_hosts: set[str] | None = scope_hosts,
            run_group: str | None = run_group,
        ) -> bool:
            return (scope_hosts is None or host in scope_hosts) and (
                run_group is None or grp == run_group
            )

        out.append(
            _scope(
                kind,
                name,
                period,
                config,
                hosts=hosts,
                by_series=by_series,
                calls=calls,
                in_scope=in_scope,
                scope_hosts=scope_hosts,
            )
        )
    backup_hosts = members(group) if group in host_groups else None
    return ServiceReport(period, group, out, _backups(store, period, backup_hosts))


def _scope(
    kind: str,
    name: str,
    period: Period,
    config: CollectorConfig,
    *,
    hosts: dict[str, Any],
    by_series: dict[tuple[str, str, str], list[StateChange]],
    calls: list[Any],
    in_scope: Any,
    scope_hosts: set[str] | None,
) -> ScopeReport:
    critical: list[tuple[float, float]] = []
    series_seen = False
    for (host, rule, _key), changes in by_series.items():
        if rule == STALE_RULE or not in_scope(host, changes[-1].group):
            continue
        series_seen = True
        critical += _intervals(changes, period, {int(Severity.CRITICAL)})
    length = period.last - period.start
    availability = (
        1.0 - _union_length(critical) / length
        if (series_seen or scope_hosts) and length > 0
        else None
    )

    hosts_up = None
    counted = 0
    if scope_hosts is not None:
        shares = []
        for host in sorted(scope_hosts):
            begin = max(period.start, hosts[host].first_seen)
            if begin >= period.last:
                continue
            stale = sum(
                _union_length(_intervals(changes, period, {int(Severity.STALE)}))
                for (h, rule, _k), changes in by_series.items()
                if h == host and rule == STALE_RULE
            )
            shares.append(1.0 - stale / (period.last - begin))
        counted = len(shares)
        hosts_up = mean(shares)

    mine = [c for c in calls if in_scope(c[0].host, c[0].group)]
    tta = [acked - call.opened_at for call, acked, _r, _o in mine if acked is not None]
    ttr = [resolved - call.opened_at for call, _a, resolved, _o in mine if resolved is not None]
    missed = 0
    per_day = [0] * period.days
    recurring: Counter[tuple[str, str]] = Counter()
    reopened = 0
    for call, acked, resolved, reopens in mine:
        group = config.groups.get(call.group)
        within = float(group.respond_within) if group else float("inf")
        responded = min((t for t in (acked, resolved) if t is not None), default=None)
        if (responded is None and call.opened_at + within < period.last) or (
            responded is not None and responded - call.opened_at > within
        ):
            missed += 1
        per_day[min(int((call.opened_at - period.start) // DAY), period.days - 1)] += 1
        recurring[(call.host, call.rule)] += 1 + len(reopens)
        reopened += len(reopens)
    return ScopeReport(
        kind=kind,
        name=name,
        availability=availability,
        hosts_up=hosts_up,
        hosts=counted,
        calls_opened=len(mine),
        calls_reopened=reopened,
        acknowledged=len(tta),
        resolved=len(ttr),
        tta_mean_seconds=mean(tta),
        tta_p90_seconds=p90(tta),
        ttr_mean_seconds=mean(ttr),
        ttr_p90_seconds=p90(ttr),
        missed_response=missed,
        recurring=[
            Recurring(h, r, n)
            for (h, r), n in sorted(recurring.items(), key=lambda item: (-item[1], item[0]))
            if n >= 2
        ][:5],
        calls_per_day=per_day,
        ttr_seconds=sorted(ttr),
    )


def _backups(store: Store, period: Period, only_hosts: set[str] | None) -> list[BackupJob]:
    jobs: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for success in store.backup_successes(period.start, period.last):
        if only_hosts is None or success.host in only_hosts:
            jobs[(success.host, success.name, success.labels_key)].append(success.succeeded_at)
    out = []
    for (host, _name, key), times in sorted(jobs.items()):
        first_day = int((min(times) - period.start) // DAY)
        fresh_days = {int((t - period.start) // DAY) for t in times if t >= period.start}
        cells: list[bool | None] = [
            None
            if day < first_day or period.start + day * DAY >= period.last
            else day in fresh_days
            for day in range(period.days)
        ]
        counted = [c for c in cells if c is not None]
        labels = _labels(key)
        job = labels.get("job") or labels.get("repository") or labels.get("name") or key
        out.append(
            BackupJob(
                host,
                job,
                labels,
                sum(counted),
                len(counted),
                sum(counted) / len(counted) if counted else None,
                cells,
            )
        )
    return out


# -- rendering ------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.3f}%"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


COLUMNS = (
    "kind",
    "name",
    "availability",
    "hosts_up",
    "calls_opened",
    "calls_reopened",
    "tta_mean_seconds",
    "tta_p90_seconds",
    "ttr_mean_seconds",
    "ttr_p90_seconds",
    "missed_response",
    "recurring",
)


def render(report: ServiceReport, fmt: str) -> str:
    """The report as json, csv, md or html (a self-contained page with inline SVG charts)."""
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n"
    if fmt == "csv":
        return _csv(report)
    if fmt == "md":
        return _markdown(report)
    if fmt == "html":
        return render_html(report, standalone=True)
    raise ReportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def _recurring_text(scope: ScopeReport) -> str:
    return "; ".join(f"{r.rule} on {r.host} x{r.calls}" for r in scope.recurring)


def _csv(report: ServiceReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["period", *COLUMNS])
    for s in report.scopes:
        row = asdict(s)
        row["recurring"] = _recurring_text(s)
        writer.writerow([report.period.label, *("" if row[c] is None else row[c] for c in COLUMNS)])
    writer.writerow([])
    writer.writerow(["period", "host", "backup_job", "days_fresh", "days", "share"])
    for b in report.backups:
        writer.writerow(
            [
                report.period.label,
                b.host,
                b.job,
                b.days_fresh,
                b.days,
                "" if b.share is None else b.share,
            ]
        )
    return buffer.getvalue()


def _markdown(report: ServiceReport) -> str:
    lines = [
        f"# Service levels, {report.period.label}",
        "",
        "| scope | availability | hosts up | calls | reopened | MTTA | p90 TTA | MTTR | "
        "p90 TTR | missed respond_within | recurring problems |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report.scopes:
        lines.append(
            f"| {s.kind} {s.name} | {_pct(s.availability)} | {_pct(s.hosts_up)} | "
            f"{s.calls_opened} | {s.calls_reopened} | {_dur(s.tta_mean_seconds)} | "
            f"{_dur(s.tta_p90_seconds)} | {_dur(s.ttr_mean_seconds)} | "
            f"{_dur(s.ttr_p90_seconds)} | {s.missed_response} | {_recurring_text(s) or '-'} |"
        )
    lines += ["", "## Backups: days with a fresh successful backup", ""]
    if not report.backups:
        lines.append("No backup jobs reported.")
    else:
        lines += ["| host | job | days fresh | share |", "|---|---|---|---|"]
        lines += [
            f"| {b.host} | {b.job} | {b.days_fresh}/{b.days} | {_pct(b.share)} |"
            for b in report.backups
        ]
    return "\n".join(lines) + "\n"


_PALETTE = ("#2f6db5", "#d9822b", "#3a9a5b", "#b5412f", "#7a5cb8", "#5b8a9a", "#a0862f")


def _calls_chart(report: ServiceReport) -> str:
    """Calls opened per day, one line per run group."""
    groups = [s for s in report.scopes if s.kind == "run group"]
    days = report.period.days
    top = max([max(s.calls_per_day, default=0) for s in groups] + [1])
    width, height, left, bottom = 640, 200, 30, 20
    step = (width - left - 10) / max(days - 1, 1)
    parts = [
        f'<svg class="chart" id="chart-calls" viewBox="0 0 {width} {height + 30}" '
        f'width="{width}" height="{height + 30}" role="img" '
        'aria-label="Calls opened per day per run group">',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" '
        f'y2="{height - bottom}" stroke="#888"/>',
        f'<text x="2" y="14" font-size="10">{top}</text>',
        f'<text x="2" y="{height - bottom}" font-size="10">0</text>',
    ]
    for day in range(0, days, 5):
        parts.append(
            f'<text x="{left + day * step:.1f}" y="{height - 4}" font-size="10">{day + 1}</text>'
        )
    for i, scope in enumerate(groups):
        colour = _PALETTE[i % len(_PALETTE)]
        points = " ".join(
            f"{left + d * step:.1f},{(height - bottom) - n / top * (height - bottom - 10):.1f}"
            for d, n in enumerate(scope.calls_per_day)
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{points}"><title>{escape(scope.name)}</title></polyline>'
        )
        parts.append(
            f'<rect x="{left + i * 150}" y="{height + 10}" width="10" height="10" '
            f'fill="{colour}"/><text x="{left + i * 150 + 14}" y="{height + 19}" '
            f'font-size="11">{escape(scope.name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _ttr_chart(report: ServiceReport) -> str:
    """Mean and 90th-percentile time to resolve per run group, as bars."""
    groups = [s for s in report.scopes if s.kind == "run group"]
    top = max([s.ttr_p90_seconds or 0 for s in groups] + [1.0])
    row, width, left = 26, 640, 190
    height = row * max(len(groups), 1) + 20
    parts = [
        f'<svg class="chart" id="chart-ttr" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        'aria-label="Time to resolve per run group">'
    ]
    for i, scope in enumerate(groups):
        y = i * row + 4
        parts.append(f'<text x="0" y="{y + 14}" font-size="11">{escape(scope.name)}</text>')
        for value, colour, offset in (
            (scope.ttr_p90_seconds, "#9dbbe0", 0),
            (scope.ttr_mean_seconds, "#2f6db5", 6),
        ):
            if value is None:
                continue
            bar = max(1.0, value / top * (width - left - 90))
            parts.append(
                f'<rect x="{left}" y="{y + offset}" width="{bar:.1f}" '
                f'height="{18 - 2 * offset}" fill="{colour}"/>'
            )
        parts.append(
            f'<text x="{width - 85}" y="{y + 14}" font-size="11">'
            f"{_dur(scope.ttr_mean_seconds)} / {_dur(scope.ttr_p90_seconds)}</text>"
        )
    parts.append(
        f'<text x="{left}" y="{height - 4}" font-size="10">dark: mean, light: 90th '
        "percentile</text></svg>"
    )
    return "".join(parts)


def _backup_calendar(report: ServiceReport) -> str:
    """One row per backup job, one square per day: green fresh, red not, grey not known."""
    cell, left = 16, 230
    height = cell * max(len(report.backups), 1) + 24
    width = left + cell * report.period.days + 10
    parts = [
        f'<svg class="chart" id="chart-backups" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        'aria-label="Backup freshness calendar">'
    ]
    for day in range(0, report.period.days, 5):
        parts.append(f'<text x="{left + day * cell}" y="10" font-size="10">{day + 1}</text>')
    for i, job in enumerate(report.backups):
        y = 14 + i * cell
        parts.append(
            f'<text x="0" y="{y + 12}" font-size="11">{escape(job.host)} {escape(job.job)}</text>'
        )
        for day, fresh in enumerate(job.calendar):
            colour = "#ccc" if fresh is None else ("#3a9a5b" if fresh else "#b5412f")
            parts.append(
                f'<rect x="{left + day * cell}" y="{y}" width="{cell - 2}" '
                f'height="{cell - 2}" fill="{colour}"><title>day {day + 1}: '
                f"{'unknown' if fresh is None else 'fresh' if fresh else 'missed'}"
                "</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: ServiceReport, *, standalone: bool) -> str:
    """The report as HTML: a whole page (standalone, to mail) or a fragment for the console."""
    rows = "".join(
        f"<tr><td>{escape(s.kind)}</td><td>{escape(s.name)}</td>"
        f"<td>{_pct(s.availability)}</td><td>{_pct(s.hosts_up)}</td>"
        f"<td>{s.calls_opened}</td><td>{s.calls_reopened}</td>"
        f"<td>{_dur(s.tta_mean_seconds)}</td><td>{_dur(s.tta_p90_seconds)}</td>"
        f"<td>{_dur(s.ttr_mean_seconds)}</td><td>{_dur(s.ttr_p90_seconds)}</td>"
        f"<td>{s.missed_response}</td><td>{escape(_recurring_text(s)) or '-'}</td></tr>"
        for s in report.scopes
    )
    backups = (
        "".join(
            f"<tr><td>{escape(b.host)}</td><td>{escape(b.job)}</td>"
            f"<td>{b.days_fresh}/{b.days}</td><td>{_pct(b.share)}</td></tr>"
            for b in report.backups
        )
        or '<tr><td colspan="4">No backup jobs reported.</td></tr>'
    )
    scope = f" - {escape(report.group)}" if report.group else ""
    body = (
        f'<section class="report"><h1>Service levels, {report.period.label}{scope}</h1>'
        '<table class="levels"><thead><tr><th>kind</th><th>scope</th><th>availability</th>'
        "<th>hosts up</th><th>calls</th><th>reopened</th><th>MTTA</th><th>p90 TTA</th>"
        "<th>MTTR</th><th>p90 TTR</th><th>missed respond_within</th>"
        f"<th>recurring problems</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<h2>Calls opened per day</h2>{_calls_chart(report)}"
        f"<h2>Time to resolve</h2>{_ttr_chart(report)}"
        "<h2>Backups: days with a fresh successful backup</h2>"
        '<table class="backups"><thead><tr><th>host</th><th>job</th><th>days fresh</th>'
        f"<th>share</th></tr></thead><tbody>{backups}</tbody></table>"
        f"{_backup_calendar(report)}"
        '<p class="note">Times in UTC. Computed from the collector\'s records up to the end '
        "of the period; the same records give the same report.</p></section>"
    )
    if not standalone:
        return body
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>runwatch service levels {report.period.label}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left}"
        "th{background:#f0f3f7}.chart{display:block;margin:1em 0}"
        f"</style></head><body>{body}</body></html>\n"
    )
