"""Rendering a report: json, csv, md and html (a page with inline SVG charts, or a fragment)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict
from html import escape
from typing import Any

from collector.service_levels.model import (
    BackupJob,
    Breach,
    GroupOla,
    ScopeReport,
    ServiceLevel,
    ServiceReport,
    TargetLevels,
)
from collector.service_levels.period import ReportError
from collector.view.svg import Svg
from runwatch import units

FORMATS = ("json", "csv", "md", "html")


def _pct(value: float | None) -> str:
    return "-" if value is None else units.percent(value, decimals=3)


def _dur(seconds: float | None) -> str:
    return "-" if seconds is None else units.duration(seconds)


def _ttr_p90(scope: ScopeReport) -> str:
    """The 90th percentile to resolve; "at least" when it fell on a call still open."""
    text = _dur(scope.ttr_p90_seconds)
    return f"at least {text}" if scope.ttr_p90_at_least else text


def _still_open(scope: ScopeReport) -> str:
    if not scope.still_open:
        return "-"
    return f"{scope.still_open} still open, {_dur(scope.still_open_oldest_seconds)} so far"


def _unwatched(report: ServiceReport) -> str:
    """The line that says how much of the period nobody watched."""
    since = report.watch_recorded_from
    if since is None:
        return "Watched time: not recorded by this collector's store (all counted as watched)."
    text = (
        f"Not watched (no collector evaluating): {_dur(report.unwatched_seconds)}, "
        "counted neither up nor down."
    )
    if since > report.period.start:
        text += f" Before {units.timestamp(since)}, when recording began, counted as watched."
    return text


def _backup_cells(b: BackupJob) -> list[str]:
    """A backup job's row, as every format shows it."""
    return [
        b.host,
        b.job,
        b.tool or "-",
        b.repository or "-",
        b.source,
        _dur(b.allowed_age_seconds),
        _pct(b.share),
        str(b.late_days),
    ]


BACKUP_HEADINGS = (
    "host",
    "job",
    "tool",
    "repository",
    "source",
    "allowed age",
    "fresh",
    "late days",
)


COLUMNS = (
    "kind",
    "name",
    "availability",
    "all_clear",
    "hosts_up",
    "hosts",
    "calls_opened",
    "calls_reopened",
    "desk_reopened",
    "responded",
    "tta_mean_seconds",
    "tta_p90_seconds",
    "resolved",
    "ttr_mean_seconds",
    "ttr_p90_seconds",
    "ttr_p90_at_least",
    "still_open",
    "still_open_oldest_seconds",
    "recovered_unanswered",
    "missed_response",
    "recurring",
    "unwatched_seconds",
)
# The scope table as md and html show it: heading, and the cell of a scope.
SCOPE_TABLE: tuple[tuple[str, Callable[[ScopeReport], str]], ...] = (
    ("scope", lambda s: f"{s.kind} {s.name}"),
    ("availability", lambda s: _pct(s.availability)),
    ("all clear", lambda s: _pct(s.all_clear)),
    ("hosts up", lambda s: _pct(s.hosts_up)),
    ("calls", lambda s: str(s.calls_opened)),
    ("reopened", lambda s: str(s.calls_reopened)),
    ("reopened after a desk close", lambda s: str(s.desk_reopened)),
    ("time to respond (mean)", lambda s: _dur(s.tta_mean_seconds)),
    ("time to respond (p90)", lambda s: _dur(s.tta_p90_seconds)),
    ("time to resolve (mean)", lambda s: _dur(s.ttr_mean_seconds)),
    ("time to resolve (p90)", _ttr_p90),
    ("still open", _still_open),
    ("recovered before anyone responded", lambda s: str(s.recovered_unanswered)),
    ("missed respond_within", lambda s: str(s.missed_response)),
    ("recurring problems", lambda s: _recurring_text(s) or "-"),
)


def _hours(name: str) -> str:
    return "around the clock" if name == "always" else name


def _within(met: int, judged: int, share: float | None) -> str:
    """Calls within their target, of those judged: "3 of 4 (75.000%)"."""
    return "-" if not judged else f"{met} of {judged} ({_pct(share)})"


def _met(service: ServiceLevel) -> str:
    return "-" if service.met is None else ("met" if service.met else "missed")


def _budget(service: ServiceLevel) -> str:
    """The error budget left: "2 h 36 min (72.222%)", negative once overspent."""
    if service.budget_left_seconds is None:
        return "-"
    return f"{_dur(service.budget_left_seconds)} ({_pct(service.budget_left)})"


# The services' table as md and html show it: heading, and the cell of a service.
SERVICE_TABLE: tuple[tuple[str, Callable[[ServiceLevel], str]], ...] = (
    ("service", lambda s: f"{s.title} ({s.service})" if s.title != s.service else s.service),
    ("owner", lambda s: s.owner),
    ("counted in", lambda s: _hours(s.calendar)),
    ("availability", lambda s: _pct(s.availability)),
    ("target", lambda s: _pct(s.target)),
    ("met", _met),
    ("error budget left", _budget),
    ("degraded", lambda s: _dur(s.degraded_seconds)),
    ("outage", lambda s: _dur(s.outage_seconds)),
    ("maintenance", lambda s: _dur(s.maintenance_seconds)),
    ("calls", lambda s: str(s.levels.calls)),
)
# Calls against response and resolution targets, for a service or a run group's OLA.
LEVEL_TABLE: tuple[tuple[str, Callable[[TargetLevels], str]], ...] = (
    ("targets", lambda t: t.targets or "-"),
    ("calls", lambda t: str(t.calls)),
    ("time to respond (mean)", lambda t: _dur(t.tta_mean_seconds)),
    (
        "responded within target",
        lambda t: _within(t.response_met, t.response_judged, t.response_achieved),
    ),
    ("time to resolve (mean)", lambda t: _dur(t.ttr_mean_seconds)),
    (
        "resolved within target",
        lambda t: _within(t.resolution_met, t.resolution_judged, t.resolution_achieved),
    ),
    ("breaches", lambda t: str(len(t.breaches))),
)
BREACH_HEADINGS = (
    "of",
    "call",
    "host",
    "rule",
    "severity",
    "target",
    "took",
    "due",
    "opened",
)


def _breach_cells(owner: str, b: Breach) -> list[str]:
    target = f"{b.kind} {_dur(b.target_seconds)}"
    if b.calendar != "always":
        target += f" ({b.calendar})"
    took = f"{_dur(b.took_seconds)} so far" if b.waiting else _dur(b.took_seconds)
    return [
        owner,
        f"#{b.call_id}",
        b.host,
        b.rule,
        b.severity,
        target,
        took,
        units.timestamp(b.due_at) if math.isfinite(b.due_at) else "-",
        units.timestamp(b.opened_at),
    ]


def _breach_rows(report: ServiceReport) -> list[list[str]]:
    rows = [
        _breach_cells(f"service {s.service}", b) for s in report.services for b in s.levels.breaches
    ]
    rows += [
        _breach_cells(f"run group {o.group}", b) for o in report.olas for b in o.levels.breaches
    ]
    return rows


def _service_cells(s: ServiceLevel) -> list[str]:
    levels = [cell(s.levels) for _, cell in LEVEL_TABLE[2:]]
    return [cell(s) for _, cell in SERVICE_TABLE] + levels + [s.levels.targets or "-"]


def _ola_cells(o: GroupOla) -> list[str]:
    return [o.group] + [cell(o.levels) for _, cell in LEVEL_TABLE]


SERVICE_HEADINGS = [
    *(h for h, _ in SERVICE_TABLE),
    *(h for h, _ in LEVEL_TABLE[2:]),
    "call targets",
]
OLA_HEADINGS = ["run group", *(h for h, _ in LEVEL_TABLE)]
# csv: the raw numbers (seconds, fractions) of services, OLAs and breaches.
LEVEL_COLUMNS = (
    "calls",
    "responded",
    "tta_mean_seconds",
    "response_judged",
    "response_met",
    "response_achieved",
    "resolved",
    "ttr_mean_seconds",
    "resolution_judged",
    "resolution_met",
    "resolution_achieved",
    "breaches",
    "targets",
)
SERVICE_COLUMNS = (
    "service",
    "title",
    "owner",
    "calendar",
    "counted_seconds",
    "up_seconds",
    "down_seconds",
    "operational_seconds",
    "degraded_seconds",
    "degraded_counts_as_up",
    "outage_seconds",
    "maintenance_seconds",
    "unknown_seconds",
    "availability",
    "target",
    "met",
    "budget_seconds",
    "budget_left_seconds",
    "budget_left",
)
BREACH_COLUMNS = (
    "call_id",
    "host",
    "rule",
    "severity",
    "kind",
    "calendar",
    "target_seconds",
    "took_seconds",
    "waiting",
    "opened_at",
    "due_at",
)


def _raw(row: dict[str, Any], columns: tuple[str, ...]) -> list[Any]:
    return ["" if row[c] is None else row[c] for c in columns]


def _level_raw(levels: TargetLevels) -> list[Any]:
    row = asdict(levels)
    row["breaches"] = len(levels.breaches)
    return _raw(row, LEVEL_COLUMNS)


def _csv_services(report: ServiceReport, writer: Any) -> None:
    """The services, the OLAs and the breaches, each with its heading row."""
    label = report.period.label
    writer.writerow([])
    writer.writerow(["period", *SERVICE_COLUMNS, *LEVEL_COLUMNS])
    for s in report.services:
        row = asdict(s)
        writer.writerow([label, *_raw(row, SERVICE_COLUMNS), *_level_raw(s.levels)])
    writer.writerow([])
    writer.writerow(["period", "run_group", *LEVEL_COLUMNS])
    for o in report.olas:
        writer.writerow([label, o.group, *_level_raw(o.levels)])
    writer.writerow([])
    writer.writerow(["period", "breach_of", "name", *BREACH_COLUMNS])
    for kind, name, levels in [("service", s.service, s.levels) for s in report.services] + [
        ("run group", o.group, o.levels) for o in report.olas
    ]:
        for b in levels.breaches:
            writer.writerow([label, kind, name, *_raw(asdict(b), BREACH_COLUMNS)])


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


def _cells(scope: ScopeReport) -> list[str]:
    return [cell(scope) for _, cell in SCOPE_TABLE]


def _csv(report: ServiceReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["period", *COLUMNS])
    for s in report.scopes:
        row = asdict(s)
        row["recurring"] = _recurring_text(s)
        row["unwatched_seconds"] = report.unwatched_seconds
        writer.writerow([report.period.label, *("" if row[c] is None else row[c] for c in COLUMNS)])
    writer.writerow([])
    writer.writerow(
        [
            "period",
            "host",
            "backup_job",
            "tool",
            "repository",
            "source",
            "allowed_age_seconds",
            "fresh_seconds",
            "known_seconds",
            "share",
            "late_days",
        ]
    )
    for b in report.backups:
        writer.writerow(
            [
                report.period.label,
                b.host,
                b.job,
                b.tool,
                b.repository,
                b.source,
                b.allowed_age_seconds,
                b.fresh_seconds,
                b.known_seconds,
                "" if b.share is None else b.share,
                b.late_days,
            ]
        )
    _csv_services(report, writer)
    return buffer.getvalue()


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _markdown(report: ServiceReport) -> str:
    headings = [h for h, _ in SCOPE_TABLE]
    lines = [
        f"# Service levels, {report.period.label}",
        "",
        _unwatched(report),
        "",
        _md_row(headings),
        "|" + "---|" * len(headings),
    ]
    lines += [_md_row(_cells(s)) for s in report.scopes]
    lines += ["", "## Backups: time the newest backup was younger than its rule allows", ""]
    if not report.backups:
        lines.append("No backup jobs reported.")
    else:
        lines += [_md_row(list(BACKUP_HEADINGS)), "|" + "---|" * len(BACKUP_HEADINGS)]
        lines += [_md_row(_backup_cells(b)) for b in report.backups]
    lines += _md_services(report)
    return "\n".join(lines) + "\n"


def _md_table(headings: list[str], rows: list[list[str]], empty: str) -> list[str]:
    if not rows:
        return [empty]
    return [_md_row(headings), "|" + "---|" * len(headings), *(_md_row(r) for r in rows)]


def _md_services(report: ServiceReport) -> list[str]:
    if not report.services and not report.olas:
        return []
    return [
        "",
        f"## {SERVICES_HEADING}",
        "",
        *_md_table(
            SERVICE_HEADINGS,
            [_service_cells(s) for s in report.services],
            "No services configured.",
        ),
        "",
        f"## {OLA_HEADING}",
        "",
        *_md_table(OLA_HEADINGS, [_ola_cells(o) for o in report.olas], "No run groups."),
        "",
        f"## {BREACH_HEADING}",
        "",
        *_md_table(list(BREACH_HEADINGS), _breach_rows(report), "No breaches."),
    ]


SERVICES_HEADING = "Services: availability against target, and calls against targets"
OLA_HEADING = "OLAs: each run group's calls against its response and resolution targets"
BREACH_HEADING = "Breaches: calls that took longer than their target"


_PALETTE = ("#2f6db5", "#d9822b", "#3a9a5b", "#b5412f", "#7a5cb8", "#5b8a9a", "#a0862f")


def _calls_chart(report: ServiceReport) -> str:
    """Calls opened per day, one line per run group."""
    groups = [s for s in report.scopes if s.kind == "run group"]
    days = report.period.days
    top = max([max(s.calls_per_day, default=0) for s in groups] + [1])
    width, height, left, bottom = 640, 200, 30, 20
    step = (width - left - 10) / max(days - 1, 1)
    svg = Svg(
        width,
        height + 30,
        label="Calls opened per day per run group",
        class_="chart",
        id="chart-calls",
    )
    svg.line(left, height - bottom, width - 10, height - bottom, stroke="#888")
    svg.text(2, 14, str(top), font_size=10)
    svg.text(2, height - bottom, "0", font_size=10)
    for day in range(0, days, 5):
        svg.text(left + day * step, height - 4, str(day + 1), font_size=10)
    for i, scope in enumerate(groups):
        colour = _PALETTE[i % len(_PALETTE)]
        svg.add(
            "polyline",
            scope.name,
            fill="none",
            stroke=colour,
            stroke_width=2,
            points=" ".join(
                f"{left + d * step:.1f},{(height - bottom) - n / top * (height - bottom - 10):.1f}"
                for d, n in enumerate(scope.calls_per_day)
            ),
        )
        svg.rect(left + i * 150, height + 10, 10, 10, fill=colour)
        svg.text(left + i * 150 + 14, height + 19, scope.name, font_size=11)
    return svg.markup()


def _ttr_chart(report: ServiceReport) -> str:
    """Mean and 90th-percentile time to resolve per run group, as bars."""
    groups = [s for s in report.scopes if s.kind == "run group"]
    top = max([s.ttr_p90_seconds or 0 for s in groups] + [1.0])
    row, width, left, label = 26, 760, 190, 210  # label: room for "7 h 54 min / at least 6 d 8 h"
    height = row * max(len(groups), 1) + 20
    svg = Svg(width, height, label="Time to resolve per run group", class_="chart", id="chart-ttr")
    for i, scope in enumerate(groups):
        y = i * row + 4
        svg.text(0, y + 14, scope.name, font_size=11)
        for value, colour, offset in (
            (scope.ttr_p90_seconds, "#9dbbe0", 0),
            (scope.ttr_mean_seconds, "#2f6db5", 6),
        ):
            if value is None:
                continue
            bar = max(1.0, value / top * (width - left - label))
            svg.rect(left, y + offset, bar, 18 - 2 * offset, fill=colour)
        svg.text(
            width - label + 5,
            y + 14,
            f"{_dur(scope.ttr_mean_seconds)} / {_ttr_p90(scope)}",
            font_size=11,
        )
    svg.text(left, height - 4, "dark: mean, light: 90th percentile", font_size=10)
    return svg.markup()


_MARK_COLOURS = {None: "#ccc", "fresh": "#3a9a5b", "late": "#b5412f", "pending": "#9dbbe0"}


def _backup_calendar(report: ServiceReport) -> str:
    """One row per backup job, one square per day: green fresh, red late, blue pending (the day
    still running), grey not known or to come."""
    cell, left = 16, 260
    height = cell * max(len(report.backups), 1) + 24
    width = left + cell * report.period.days + 10
    svg = Svg(width, height, label="Backup freshness calendar", class_="chart", id="chart-backups")
    for day in range(0, report.period.days, 5):
        svg.text(left + day * cell, 10, str(day + 1), font_size=10)
    for i, job in enumerate(report.backups):
        y = 14 + i * cell
        where = job.repository if job.source == "repository" else job.source
        svg.text(
            0, y + 12, " ".join(c for c in (job.host, job.job, job.tool, where) if c), font_size=11
        )
        for day, mark in enumerate(job.calendar):
            svg.add(
                "rect",
                f"day {day + 1}: {mark or 'not known'}",
                x=float(left + day * cell),
                y=float(y),
                width=cell - 2,
                height=cell - 2,
                fill=_MARK_COLOURS[mark],
            )
    return svg.markup()


def _budget_chart(report: ServiceReport) -> str:
    """The error budget each service with an availability target used, as bars: up to the
    line at 100% the target is met; red past it."""
    judged = [s for s in report.services if s.budget_seconds]
    row, width, left, label = 26, 760, 190, 210
    height = row * max(len(judged), 1) + 20
    svg = Svg(
        width, height, label="Error budget used per service", class_="chart", id="chart-budget"
    )
    room = width - left - label
    full = room / 1.5  # the whole budget; bars stop at one and a half budgets
    for i, service in enumerate(judged):
        y = i * row + 4
        budget = service.budget_seconds or 1.0
        used = service.down_seconds / budget
        svg.text(0, y + 14, service.title, font_size=11)
        colour = "#b5412f" if service.met is False else "#3a9a5b"
        svg.rect(left, y, max(1.0, min(used, 1.5) * full), 18, fill=colour)
        svg.text(width - label + 5, y + 14, f"{_pct(used)} of {_dur(budget)}", font_size=11)
    svg.line(left + full, 0, left + full, height - 16, stroke="#222", stroke_dasharray="4 3")
    svg.text(
        left, height - 4, "error budget used; the dashed line is the whole budget", font_size=10
    )
    return svg.markup()


def render_html(report: ServiceReport, *, standalone: bool) -> str:
    """The report as HTML: a whole page (standalone, to mail) or a fragment for the console."""

    def row(cells: list[str]) -> str:
        return "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"

    def head(names: tuple[str, ...] | list[str]) -> str:
        return "<thead><tr>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr></thead>"

    rows = "".join(row(_cells(s)) for s in report.scopes)
    backups = "".join(row(_backup_cells(b)) for b in report.backups) or (
        f'<tr><td colspan="{len(BACKUP_HEADINGS)}">No backup jobs reported.</td></tr>'
    )
    scope = f" - {escape(report.group)}" if report.group else ""

    def table(class_: str, headings: list[str], cells: list[list[str]], empty: str) -> str:
        body = "".join(row(c) for c in cells) or (
            f'<tr><td colspan="{len(headings)}">{escape(empty)}</td></tr>'
        )
        return f'<table class="{class_}">{head(headings)}<tbody>{body}</tbody></table>'

    services = ""
    if report.services or report.olas:
        services = (
            f"<h2>{escape(SERVICES_HEADING)}</h2>"
            + table(
                "services",
                SERVICE_HEADINGS,
                [_service_cells(s) for s in report.services],
                "No services configured.",
            )
            + (_budget_chart(report) if any(s.budget_seconds for s in report.services) else "")
            + f"<h2>{escape(OLA_HEADING)}</h2>"
            + table("olas", OLA_HEADINGS, [_ola_cells(o) for o in report.olas], "No run groups.")
            + f"<h2>{escape(BREACH_HEADING)}</h2>"
            + table("breaches", list(BREACH_HEADINGS), _breach_rows(report), "No breaches.")
        )
    body = (
        f'<section class="report"><h1>Service levels, {report.period.label}{scope}</h1>'
        f'<p class="watched">{escape(_unwatched(report))}</p>'
        f'<table class="levels">{head([h for h, _ in SCOPE_TABLE])}<tbody>{rows}</tbody></table>'
        f"<h2>Calls opened per day</h2>{_calls_chart(report)}"
        f"<h2>Time to resolve</h2>{_ttr_chart(report)}"
        "<h2>Backups: time the newest backup was younger than its rule allows</h2>"
        f'<table class="backups">{head(BACKUP_HEADINGS)}<tbody>{backups}</tbody></table>'
        f"{_backup_calendar(report)}"
        f"{services}"
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
