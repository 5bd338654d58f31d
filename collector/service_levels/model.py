"""What a service-level report holds: one row per scope, one per backup job, one per service
and one per run group's OLA."""

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
class Breach:
    """A call that took longer than its target to be responded to or resolved, or that was
    still waiting at the period's end with its target run out."""

    call_id: int
    host: str
    rule: str
    severity: str
    kind: Literal["response", "resolution"]
    calendar: str  # the hours the target counts ("always": around the clock)
    target_seconds: float
    took_seconds: float  # counted in `calendar`; for a call still waiting, so far
    waiting: bool  # not yet responded to (or resolved) at the period's end
    opened_at: float
    due_at: float  # when the target ran out


@dataclass(slots=True)
class TargetLevels:
    """Calls held to response and resolution targets: a service's (SLA) or a run group's (OLA).

    Each call's times count in the calendar of its target (business time where the target says
    so); a call whose severity has no target counts around the clock and is not judged."""

    calls: int  # calls opened in the period
    responded: int
    tta_mean_seconds: float | None
    response_judged: int  # calls with a response target whose outcome is known
    response_met: int
    resolved: int
    ttr_mean_seconds: float | None
    resolution_judged: int
    resolution_met: int
    response_achieved: float | None  # response_met / response_judged
    resolution_achieved: float | None
    targets: str  # the targets as people read them: "CRITICAL respond 30 min, ..."
    breaches: list[Breach] = field(default_factory=list)


@dataclass(slots=True)
class ServiceLevel:
    """One service's month in the hours its SLA counts (its calendar): each state's time,
    availability against the target with the error budget, and its calls against targets.
    Shares are fractions (0.995), as everywhere in the report."""

    service: str
    title: str
    owner: str
    calendar: str  # the hours availability counts in ("always": around the clock)
    counted_seconds: float  # known, watched time in those hours
    up_seconds: float  # operational, maintenance, and degraded when it counts as up
    down_seconds: float  # outage, and degraded when it counts as down
    operational_seconds: float
    degraded_seconds: float
    degraded_counts_as_up: bool
    outage_seconds: float
    maintenance_seconds: float  # a window covered every problem: counted as up
    unknown_seconds: float  # in those hours, but not watched or before the first known state
    availability: float | None  # up / counted
    target: float | None  # the SLA's availability, None: none set
    met: bool | None
    budget_seconds: float | None  # the downtime the target allows in the counted time
    budget_left_seconds: float | None  # negative: overspent
    budget_left: float | None  # share of the budget left
    levels: TargetLevels


@dataclass(slots=True)
class GroupOla:
    """A run group's calls against its OLA's response and resolution targets."""

    group: str
    levels: TargetLevels


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
    services: list[ServiceLevel] = field(default_factory=list)
    olas: list[GroupOla] = field(default_factory=list)

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
            "services": [asdict(s) for s in self.services],
            "olas": [asdict(o) for o in self.olas],
        }
