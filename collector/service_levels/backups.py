"""Backup jobs judged against the age their rule allows, not one backup per calendar day."""

from __future__ import annotations

import json
from collections import defaultdict

from collector.config import CollectorConfig
from collector.evaluation.rules import matches
from collector.service_levels.model import BackupJob, DayMark
from collector.service_levels.period import DAY, Period, Span, intersect, length
from collector.store.protocols import Store

# The shipped backup rules' warning: a daily job is late after a day plus run time and slack.
DEFAULT_ALLOWED_AGE_SECONDS = 93600.0
SNAPSHOT_METRIC = "backup_last_snapshot_timestamp_seconds"


def _labels(key: str) -> dict[str, str]:
    try:
        found = json.loads(key)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def allowed_age(config: CollectorConfig, metric: str, labels: dict[str, str]) -> float:
    """The age of the newest backup the job's rule allows: the age metric's rule that matches
    the job's labels (one with `match` before a general one), warning else critical."""
    age_metric = metric.removesuffix("_timestamp_seconds") + "_age_seconds"
    found = [r for r in config.rules if r.metric == age_metric and matches(r, labels)]
    found.sort(key=lambda rule: not rule.match)
    if not found or found[0].forecast is not None:
        return DEFAULT_ALLOWED_AGE_SECONDS
    return found[0].first_threshold


def late_spans(successes: list[float], allowed: float, until: float) -> list[Span]:
    """When the newest successful backup was older than `allowed`, up to `until`."""
    spans = []
    for i, at in enumerate(successes):
        following = successes[i + 1] if i + 1 < len(successes) else until
        if at + allowed < following:
            spans.append((at + allowed, following))
    return spans


def backup_jobs(
    store: Store, config: CollectorConfig, period: Period, only_hosts: set[str] | None
) -> list[BackupJob]:
    """Every backup job known by the period's last instant, with its share of fresh time."""
    jobs: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for success in store.backup_successes(period.start, period.last):
        if only_hosts is None or success.host in only_hosts:
            jobs[(success.host, success.labels_key, success.name)].append(success.succeeded_at)
    out = []
    for (host, key, name), times in sorted(jobs.items()):
        times.sort()
        labels = _labels(key)
        allowed = allowed_age(config, name, labels)
        known = [(max(period.start, times[0]), period.last)]
        late = intersect(late_spans(times, allowed, period.last), known)
        known_seconds = length(known)
        repository = labels.get("repo") or labels.get("repository") or ""
        out.append(
            BackupJob(
                host=host,
                job=labels.get("job") or repository or key,
                tool=labels.get("tool", ""),
                repository=repository,
                source="repository" if name == SNAPSHOT_METRIC else "status file",
                labels=labels,
                allowed_age_seconds=allowed,
                known_seconds=known_seconds,
                fresh_seconds=known_seconds - length(late),
                share=(known_seconds - length(late)) / known_seconds if known_seconds else None,
                late_days=0,
                calendar=_calendar(period, known[0][0], late),
            )
        )
        out[-1].late_days = out[-1].calendar.count("late")
    return out


def _calendar(period: Period, known_from: float, late: list[Span]) -> list[DayMark]:
    """Per day: late if the newest backup was too old at any time of it, pending for the day
    still running, fresh otherwise; None before the job was known and for days to come."""
    marks: list[DayMark] = []
    for day in range(period.days):
        begin, end = period.start + day * DAY, period.start + (day + 1) * DAY
        if end <= known_from or begin >= period.last:
            marks.append(None)
        elif intersect(late, [(begin, end)]):
            marks.append("late")
        elif end > period.last:
            marks.append("pending")
        else:
            marks.append("fresh")
    return marks
