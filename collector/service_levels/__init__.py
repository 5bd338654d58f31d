"""Service-level reports: how each run group, host group and service met its service levels in
a month.

Every number comes from the store's own records (rule state changes, calls and their events,
the audit log, backup successes, services' state changes, when the collector evaluated) up to
the end of the period, never from the wall clock: the same data gives the same report, and a
month's report does not change once the month is over. docs/reports.md defines each number.

- `period`: the month, and spans of time;
- `compute`, `calls`, `backups`: the numbers;
- `services`: each service against its SLA and each run group against its OLA;
- `model`: what a report holds;
- `render`: json, csv, md and html.
"""

from collector.service_levels.compute import build_report, host_retirements, mean, p90
from collector.service_levels.model import BackupJob, Recurring, ScopeReport, ServiceReport
from collector.service_levels.period import DAY, Period, ReportError, parse_period
from collector.service_levels.render import FORMATS, render, render_html

__all__ = [
    "DAY",
    "FORMATS",
    "BackupJob",
    "Period",
    "Recurring",
    "ReportError",
    "ScopeReport",
    "ServiceReport",
    "build_report",
    "host_retirements",
    "mean",
    "p90",
    "parse_period",
    "render",
    "render_html",
]
