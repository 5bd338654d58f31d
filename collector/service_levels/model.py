"""What a service-level report holds: one row per scope, one per backup job."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from collector.service_levels.period import Period

DayMark = Literal["fresh", "late", "pending"] | None  # None: before the job was known, or to come


@dataclass(slots=True)
class Recurring:
    host: str
    rule: str
    calls: int  # times the problem began in the period: new calls and reopens after recovery


@dataclass(slots=True)
class ScopeReport:
    """The service levels of one run group, one host group, or the whole fleet."""

    kind: str  # "fleet", "run group" or "host group"
    name: str
    availability: float | None  # mean of the hosts' availabilities, by watched time
    all_clear: float | None  # share of watched time with nothing CRITICAL on any host in scope
    hosts_up: float | None  # mean of the hosts' shares not STALE, by watched time
    hosts: int  # hosts with watched time in the period
    watched_host_seconds: float
    calls_opened: int
    calls_reopened: int  # reopened after runwatch had resolved them: the problem came back
    desk_reopened: int  # reopened (or continued as a new call) after a close in the desk
    responded: int
    tta_mean_seconds: float | None  # time to the first response by a person
    tta_p90_seconds: float | None
    resolved: int  # calls finally resolved
    ttr_mean_seconds: float | None  # to the final resolution
    ttr_p90_seconds: float | None  # open calls count at their age
    ttr_p90_at_least: bool  # the 90th percentile fell on an open call: at least this
    still_open: int
    still_open_oldest_seconds: float | None
    recovered_unanswered: int  # resolved on their own before anyone responded
    missed_response: int
    recurring: list[Recurring] = field(default_factory=list)
    calls_per_day: list[int] = field(default_factory=list)  # the days begun only
    ttr_seconds: list[float] = field(default_factory=list)


@dataclass(slots=True)
class BackupJob:
    host: str
    job: str
    tool: str  # restic, borg, or what a status file says ("" when unknown)
    repository: str
    source: str  # "repository" (the tool's own listing) or "status file"
    labels: dict[str, str]
    allowed_age_seconds: float  # from the job's backup rule (warning, else critical)
    known_seconds: float  # time in the period since the job was first seen
    fresh_seconds: float  # of which the newest successful backup was young enough
    share: float | None
    late_days: int
    calendar: list[DayMark]  # per day of the period


@dataclass(slots=True)
class ServiceReport:
    period: Period
    group: str | None
    scopes: list[ScopeReport]
    backups: list[BackupJob]
    unwatched_seconds: float  # of the period so far, no collector evaluated
    # When the collector first recorded an evaluation (None: never); time before counts as
    # watched.
    watch_recorded_from: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period.label,
            "start": self.period.start,
            "end": self.period.end,
            "until": self.period.last,
            "group": self.group,
            "unwatched_seconds": self.unwatched_seconds,
            "watch_recorded_from": self.watch_recorded_from,
            "scopes": [asdict(s) for s in self.scopes],
            "backups": [asdict(b) for b in self.backups],
        }
