"""Services and OLAs in the report, over a month worked out by hand, in every format.

The month is November 2025 (30 days, 720 h; Saturday the 1st). The office calendar is
Europe/Amsterdam (UTC+1 all month: summer time ended on 26 October), Monday to Friday
08:00-17:00, with Friday the 14th a holiday: 20 weekdays less 1 = 19 days x 9 h = 171 business
hours. Every time below is UTC unless it says "local".

The four fixtures of issue 24:
1. File shares, two of three file servers needed: degraded, then an outage, then degraded.
2. The web shop (and payroll) depend on the database: its outage is theirs.
3. Payroll's maintenance window inside business hours: not counted against it.
4. Call P1 breaches payroll's 4 h resolution target in business time only (in 24x7 time its
   group's 24 h OLA is met); call P2 the other way round.

The history goes through the real store (service changes, calls, their events, the audit log)
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from litestar.testing import TestClient

from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import set_user
from collector.incidents.calls import Call, CallEvent, fingerprint
from collector.service_levels import build_report, parse_period, render
from collector.services.state import ServiceState
from collector.store.records import AuditEntry
from runwatch.cli import main
from tests.helpers import FS_RULE

H = 3600.0
MIN = 60.0
NOV = parse_period("2025-11")
SA, CO = "systems-administration", "computer-operations"
OP, MAINT, DEG, OUT = (int(s) for s in ServiceState)

CALENDARS = {
    "office": {
        "timezone": "Europe/Amsterdam",
        "weekly": {day: ["08:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": ["2025-11-14"],
    }
}
GROUPS = {
    # Systems administration's OLA counts around the clock.
    SA: {
        "sink": "helpdesk",
        "assign": "Systems Administration",
        "ola": {
            "respond": {"CRITICAL": "15m", "WARNING": "30m"},
            "resolve": {"CRITICAL": "4h", "WARNING": "24h"},
        },
    },
    # Computer operations' OLA counts office hours.
    CO: {
        "sink": "helpdesk",
        "assign": "Computer Operations",
        "ola": {
            "calendar": "office",
            "respond": {"CRITICAL": "15m"},
            "resolve": {"CRITICAL": "8h"},
        },
    },
}
SERVICES = {
    "e-mail": {
        "owner": SA,
        "title": "E-mail",
        "components": [{"name": "mail server", "hosts": ["mail01"]}],
        "sla": {"availability": 99.5},
    },
    "file-shares": {
        "owner": SA,
        "title": "File shares",
        "components": [{"name": "file servers", "hosts": ["fs01", "fs02", "fs03"], "need": 2}],
        "sla": {
            "availability": 99.5,
            "respond": {"CRITICAL": "15m"},
            "resolve": {"CRITICAL": "4h"},
        },
    },
    "database": {"owner": SA, "title": "Database", "components": [{"hosts": ["db01"]}]},
    "web-shop": {
        "owner": CO,
        "title": "Web shop",
        "components": [{"name": "web servers", "hosts": ["web01", "web02"], "need": "any"}],
        "depends_on": ["database"],
        "sla": {
            "availability": 99.9,
            "respond": {"CRITICAL": "30m"},
            "resolve": {"CRITICAL": "2h"},
        },
    },
    "payroll": {
        "owner": SA,
        "title": "Payroll",
        "components": [{"hosts": ["pay01"]}],
        "depends_on": ["database"],
        "sla": {
            "availability": 99.0,
            "calendar": "office",
            "respond": {"CRITICAL": "30m", "WARNING": "1h"},
            "resolve": {"CRITICAL": "2h", "WARNING": "4h"},
        },
    },
}


def at(day: int, hour: float = 0.0) -> float:
    """Unix time of `day` November 2025, `hour` UTC."""
    return datetime(2025, 11, day, tzinfo=UTC).timestamp() + hour * H


# Each service's state changes as the collector stores them (the state at the start of the month
# is the last change before it, on 20 October).
CHANGES = [
    (name, datetime(2025, 10, 20, tzinfo=UTC).timestamp(), OP)
    for name in ("database", "e-mail", "file-shares", "payroll", "web-shop")
] + [
    # (1) Tuesday the 4th: fs01 down at 10:00 (degraded, one of three), fs02 too from 12:00 (an
    # outage: one left of the two needed), fs02 back at 16:00, fs01 at 17:00.
    ("file-shares", at(4, 10), DEG),
    ("file-shares", at(4, 12), OUT),
    ("file-shares", at(4, 16), DEG),
    ("file-shares", at(4, 17), OP),
    # The web shop: one of its two web servers down on the 10th, 20:00-22:00.
    ("web-shop", at(10, 20), DEG),
    ("web-shop", at(10, 22), OP),
    # (2) Wednesday the 12th, 02:00-05:00 (03:00-06:00 local): the database is out, and with it
    # the web shop and payroll, which depend on it.
    ("database", at(12, 2), OUT),
    ("payroll", at(12, 2), OUT),
    ("web-shop", at(12, 2), OUT),
    ("database", at(12, 5), OP),
    ("payroll", at(12, 5), OP),
    ("web-shop", at(12, 5), OP),
    # Payroll out on the holiday (Friday the 14th, 10:00-12:00 local): not business hours.
    ("payroll", at(14, 9), OUT),
    ("payroll", at(14, 11), OP),
    # (3) Tuesday the 18th, 09:00-11:00 local: a maintenance window covers payroll's problem.
    ("payroll", at(18, 8), MAINT),
    ("payroll", at(18, 10), OP),
    # Thursday the 20th, 14:00-15:30 local: a real outage of payroll.
    ("payroll", at(20, 13), OUT),
    ("payroll", at(20, 14.5), OP),
    # Payroll degraded while calls P2, P1 and P3 below are open.
    ("payroll", at(21, 15.5), DEG),
    ("payroll", at(24, 9), OP),
    ("payroll", at(25, 14), DEG),
    ("payroll", at(26, 10.5), OP),
    ("payroll", at(28, 15), DEG),
    # After the month: not counted.
    ("file-shares", NOV.end + H, OUT),
]


def _call(
    store: Any,
    where: tuple[str, str, str],
    services: Sequence[str],
    times: tuple[float, float | None, float | None],
) -> int:
    """A call acknowledged by a person in the console (audited) and resolved when its problem
    cleared. `where`: host, run group, severity; `times`: opened, acknowledged, resolved."""
    host, group, severity = where
    opened, acknowledged, resolved = times
    labels = {"mountpoint": "/"}
    call = Call(
        0,
        fingerprint(host, "filesystem_full", labels),
        host,
        "filesystem_full",
        labels,
        group,
        group,
        severity,
        "high",
        "open" if resolved is None else "resolved",
        f"filesystem_full on {host}",
        "",
        opened,
        opened,
        resolved or acknowledged or opened,
        resolved,
        0,
        list(services),
    )
    call_id = int(store.insert_call(call))
    store.add_call_event(CallEvent(call_id, opened, "opened", "opened"))
    if acknowledged is not None:
        store.add_call_event(CallEvent(call_id, acknowledged, "acknowledged", "by ann"))
        store.add_audit(
            AuditEntry(0, acknowledged, "ann", "call.acknowledge", f"call {call_id}", "", "console")
        )
    if resolved is not None:
        store.add_call_event(CallEvent(call_id, resolved, "resolved", "Recovered."))
    return call_id


CALLS: dict[str, int] = {}


def fixture_history(store: Any, *, record_watch: bool = True) -> None:
    """The month into `store`. Without `record_watch`, the month counts as watched because the
    store's first recorded evaluation comes later (a collector running now)."""
    with store.transaction():
        if record_watch:  # a collector evaluated all month
            store.record_evaluation(NOV.start - 24 * H, 60)
            store.record_evaluation(NOV.end + 24 * H, 40 * 24 * H)
        store.add_service_changes(CHANGES)
        # (1) F1 and F2: fs01 and fs02, CRITICAL, computer operations.
        fs01, fs02 = ("fs01", CO, "CRITICAL"), ("fs02", CO, "CRITICAL")
        CALLS["F1"] = _call(store, fs01, ["file-shares"], (at(4, 10), at(4, 10) + 600, at(4, 17)))
        CALLS["F2"] = _call(store, fs02, ["file-shares"], (at(4, 12), at(4, 12) + 1200, at(4, 16)))
        # (2) DB1: the database's disk, CRITICAL; it names every service it put out.
        db01 = ("db01", SA, "CRITICAL")
        everything = ["database", "web-shop", "payroll"]
        CALLS["DB1"] = _call(store, db01, everything, (at(12, 2), at(12, 2) + 300, at(12, 5)))
        pay01 = ("pay01", SA, "WARNING")
        # (4) P2: Friday the 21st 16:30 local to Monday the 24th 10:00 local.
        CALLS["P2"] = _call(store, pay01, ["payroll"], (at(21, 15.5), at(21, 15.75), at(24, 9)))
        # (4) P1: Tuesday the 25th 15:00 local to Wednesday the 26th 11:30 local.
        CALLS["P1"] = _call(
            store, pay01, ["payroll"], (at(25, 14), at(25, 14) + 1200, at(26, 10.5))
        )
        # P3: Friday the 28th 16:00 local, nobody answered, open at the month's end.
        CALLS["P3"] = _call(store, pay01, ["payroll"], (at(28, 15), None, None))


@pytest.fixture
def service(make_service: Callable[..., CollectorService]) -> CollectorService:
    svc = make_service(rules=[FS_RULE], groups=GROUPS, services=SERVICES, calendars=CALENDARS)
    fixture_history(svc.store)
    return svc


# -- the numbers, by hand ----------------------------------------------------------------------

MONTH = 720 * H  # around the clock, all of it watched
BUSINESS = 171 * H  # office hours in November: 19 days x 9 h

EXPECTED_SERVICES: dict[str, dict[str, Any]] = {
    # (1) Around the clock: degraded 10:00-12:00 and 16:00-17:00 (3 h), out 12:00-16:00 (4 h).
    # Availability (720 - 4) / 720 = 716/720 = 99.444%: below 99.5%, missed. The budget is
    # 0.5% of 720 h = 3.6 h = 12,960 s; 14,400 s used: 1,440 s (24 min) overspent, -11.111%.
    # E-mail: operational all month. 100% against 99.5%: the whole budget, 3.6 h, is left.
    "e-mail": {
        "calendar": "always",
        "counted_seconds": MONTH,
        "outage_seconds": 0.0,
        "availability": 1.0,
        "met": True,
        "budget_seconds": 12960.0,
        "budget_left_seconds": 12960.0,
        "budget_left": 1.0,
    },
    "file-shares": {
        "calendar": "always",
        "counted_seconds": MONTH,
        "degraded_seconds": 3 * H,
        "outage_seconds": 4 * H,
        "maintenance_seconds": 0.0,
        "operational_seconds": 713 * H,
        "availability": 716 / 720,
        "target": 0.995,
        "met": False,
        "budget_seconds": 12960.0,
        "budget_left_seconds": -1440.0,
        "budget_left": -1440 / 12960,
    },
    # (2) Out 02:00-05:00 on the 12th: 3 h of 720; no SLA.
    "database": {
        "calendar": "always",
        "counted_seconds": MONTH,
        "outage_seconds": 3 * H,
        "availability": 717 / 720,
        "target": None,
        "met": None,
        "budget_seconds": None,
    },
    # (2) The database's 3 h are the shop's too; its own 2 h degraded still serve. 717/720 =
    # 99.583% < 99.9%: missed. Budget 0.1% of 720 h = 2,592 s; 10,800 used: 8,208 s overspent
    # (2 h 17 min), -316.667% of the budget.
    "web-shop": {
        "calendar": "always",
        "counted_seconds": MONTH,
        "degraded_seconds": 2 * H,
        "outage_seconds": 3 * H,
        "availability": 717 / 720,
        "target": 0.999,
        "met": False,
        "budget_seconds": 2592.0,
        "budget_left_seconds": -8208.0,
        "budget_left": -8208 / 2592,
    },
    # (3) Office hours only (171 h). The database outage (03:00-06:00 local) and the holiday
    # outage fall outside them: 0 s. Maintenance 09:00-11:00 local on the 18th: 2 h, never
    # down (it counts as up). Outage 14:00-15:30 local on the 20th: 1.5 h. Degraded (up):
    # Fri 21st 16:30-17:00 + Mon 24th 08:00-10:00 = 2.5 h; Tue 25th 15:00-17:00 + Wed 26th
    # 08:00-11:30 = 5.5 h; Fri 28th 16:00-17:00 = 1 h: 9 h.
    # Operational: 171 - 2 - 1.5 - 9 = 158.5 h. Availability (171 - 1.5) / 171 = 99.123%:
    # met (99%); had the window counted as down, (171 - 3.5) / 171 = 97.953%: missed.
    # Budget 1% of 171 h = 6,156 s; 5,400 used: 756 s left (12 min 36 s), 12.281%.
    "payroll": {
        "calendar": "office",
        "counted_seconds": BUSINESS,
        "maintenance_seconds": 2 * H,
        "outage_seconds": 1.5 * H,
        "degraded_seconds": 9 * H,
        "operational_seconds": 158.5 * H,
        "unknown_seconds": 0.0,
        "up_seconds": 169.5 * H,
        "down_seconds": 1.5 * H,
        "availability": 169.5 / 171,
        "target": 0.99,
        "met": True,
        "budget_seconds": 6156.0,
        "budget_left_seconds": 756.0,
        "budget_left": 756 / 6156,
    },
}

# Calls against the services' SLAs (service -> levels) and the groups' OLAs.
EXPECTED_LEVELS: dict[str, dict[str, Any]] = {
    # F1: acknowledged after 600 s (15 min allowed: met), resolved after 7 h = 25,200 s (4 h
    # allowed: breached, due 14:00). F2: 1,200 s to respond (breached, due 12:15), resolved
    # after exactly 4 h = 14,400 s (met: the target is "at most"). Means 900 s and 19,800 s.
    "file-shares": {
        "calls": 2,
        "tta_mean_seconds": 900.0,
        "response_judged": 2,
        "response_met": 1,
        "ttr_mean_seconds": 19800.0,
        "resolution_judged": 2,
        "resolution_met": 1,
    },
    # DB1 around the clock: 300 s (30 min allowed: met), 3 h = 10,800 s (2 h allowed: breached,
    # due 04:00).
    "web-shop": {
        "calls": 1,
        "tta_mean_seconds": 300.0,
        "response_judged": 1,
        "response_met": 1,
        "ttr_mean_seconds": 10800.0,
        "resolution_judged": 1,
        "resolution_met": 0,
    },
    # No SLA: DB1's times around the clock, nothing judged.
    "database": {
        "calls": 1,
        "tta_mean_seconds": 300.0,
        "response_judged": 0,
        "ttr_mean_seconds": 10800.0,
        "resolution_judged": 0,
    },
    # In office hours. DB1 (CRITICAL, 03:00-06:00 local): 0 s to respond and to resolve: met.
    # P2 (WARNING): 900 s to respond (1 h allowed); resolved in Fri 16:30-17:00 + Mon
    # 08:00-10:00 = 2.5 h = 9,000 s (4 h allowed): met, though it took 65.5 h around the clock.
    # (4) P1 (WARNING): 1,200 s to respond; resolved in Tue 15:00-17:00 + Wed 08:00-11:30 =
    # 5.5 h = 19,800 s: breached (4 h of office time ran out Wed 10:00 local = 09:00 UTC),
    # though it took only 20.5 h around the clock. P3: 1 h of office time by the month's end,
    # exactly its 1 h response target: not breached, not judged yet.
    # Means: respond (0 + 900 + 1,200) / 3 = 700 s; resolve (0 + 9,000 + 19,800) / 3 = 9,600 s.
    "payroll": {
        "calls": 4,
        "responded": 3,
        "tta_mean_seconds": 700.0,
        "response_judged": 3,
        "response_met": 3,
        "resolved": 3,
        "ttr_mean_seconds": 9600.0,
        "resolution_judged": 3,
        "resolution_met": 2,
    },
    # OLA, around the clock: DB1 300 s (15 min) and 10,800 s (4 h): met. P2 900 s (30 min):
    # met; 65.5 h = 235,800 s (24 h): breached, due Sat 22nd 15:30. P1 1,200 s: met; 20.5 h =
    # 73,800 s: met. P3 still open: 57 h = 205,200 s by the end, past 30 min (due 15:30 on the
    # 28th) and 24 h (due 15:00 on the 29th): both breached, waiting.
    # Means: respond (300 + 900 + 1,200) / 3 = 800 s; resolve (10,800 + 235,800 + 73,800) / 3
    # = 106,800 s.
    SA: {
        "calls": 4,
        "responded": 3,
        "tta_mean_seconds": 800.0,
        "response_judged": 4,
        "response_met": 3,
        "resolved": 3,
        "ttr_mean_seconds": 106800.0,
        "resolution_judged": 4,
        "resolution_met": 2,
    },
    # OLA in office hours: F1 600 s (15 min): met; 11:00-17:00 local = 6 h (8 h): met. F2
    # 1,200 s: breached (due 12:15); 13:00-17:00 local = 4 h: met. Means 900 s and 18,000 s.
    CO: {
        "calls": 2,
        "tta_mean_seconds": 900.0,
        "response_judged": 2,
        "response_met": 1,
        "ttr_mean_seconds": 18000.0,
        "resolution_judged": 2,
        "resolution_met": 2,
    },
}

# (who, call, kind, calendar, target s, took s, waiting, due)
EXPECTED_BREACHES = {
    "file-shares": [
        ("F1", "resolution", "always", 4 * H, 7 * H, False, at(4, 14)),
        ("F2", "response", "always", 15 * MIN, 1200.0, False, at(4, 12.25)),
    ],
    "web-shop": [("DB1", "resolution", "always", 2 * H, 3 * H, False, at(12, 4))],
    "database": [],
    "payroll": [("P1", "resolution", "office", 4 * H, 5.5 * H, False, at(26, 9))],
    SA: [
        ("P2", "resolution", "always", 24 * H, 65.5 * H, False, at(22, 15.5)),
        ("P3", "response", "always", 30 * MIN, 57 * H, True, at(28, 15.5)),
        ("P3", "resolution", "always", 24 * H, 57 * H, True, at(29, 15)),
    ],
    CO: [("F2", "response", "office", 15 * MIN, 1200.0, False, at(4, 12.25))],
}


def _report(service: CollectorService, group: str | None = None) -> Any:
    return build_report(service.store, service.config, NOV, group)


def _levels(report: Any) -> dict[str, Any]:
    found = {s.service: s.levels for s in report.services}
    found.update({o.group: o.levels for o in report.olas})
    return found


def test_services_availability_by_hand(service: CollectorService) -> None:
    found = {s.service: s for s in _report(service).services}
    assert list(found) == ["database", "e-mail", "file-shares", "payroll", "web-shop"]
    for name, expected in EXPECTED_SERVICES.items():
        for key, value in expected.items():
            got = getattr(found[name], key)
            if isinstance(value, float):
                assert got == pytest.approx(value, rel=1e-12, abs=1e-9), (name, key)
            else:
                assert got == value, (name, key)


def test_calls_against_slas_and_olas_by_hand(service: CollectorService) -> None:
    levels = _levels(_report(service))
    ids = {v: k for k, v in CALLS.items()}
    for who, expected in EXPECTED_LEVELS.items():
        for key, value in expected.items():
            assert getattr(levels[who], key) == value, (who, key)
        breaches = [
            (
                ids[b.call_id],
                b.kind,
                b.calendar,
                b.target_seconds,
                b.took_seconds,
                b.waiting,
                b.due_at,
            )
            for b in levels[who].breaches
        ]
        assert breaches == EXPECTED_BREACHES[who], who


def test_a_run_group_report_has_its_services_and_its_ola(service: CollectorService) -> None:
    report = _report(service, CO)
    assert [s.service for s in report.services] == ["web-shop"]
    assert [o.group for o in report.olas] == [CO]
    assert [o.group for o in _report(service, SA).olas] == [SA]
    assert [s.service for s in _report(service, SA).services] == [
        "database",
        "e-mail",
        "file-shares",
        "payroll",
    ]


# -- the same numbers in every format ----------------------------------------------------------

# As md and html show them (every cell of each row, in order).
SERVICE_ROWS = {
    "e-mail": [
        "E-mail (e-mail)", SA, "around the clock", "100.000%", "99.500%", "met",
        "3 h 36 min (100.000%)", "0 s", "0 s", "0 s", "0", "-", "-", "-", "-", "0", "-",
    ],
    "file-shares": [
        "File shares (file-shares)", SA, "around the clock", "99.444%", "99.500%", "missed",
        "-24 min (-11.111%)", "3 h", "4 h", "0 s", "2",
        "15 min", "1 of 2 (50.000%)", "5 h 30 min", "1 of 2 (50.000%)", "2",
        "CRITICAL respond 15 min, resolve 4 h",
    ],
    "web-shop": [
        "Web shop (web-shop)", CO, "around the clock", "99.583%", "99.900%", "missed",
        "-2 h 17 min (-316.667%)", "2 h", "3 h", "0 s", "1",
        "5 min", "1 of 1 (100.000%)", "3 h", "0 of 1 (0.000%)", "1",
        "CRITICAL respond 30 min, resolve 2 h",
    ],
    "database": [
        "Database (database)", SA, "around the clock", "99.583%", "-", "-", "-", "0 s", "3 h",
        "0 s", "1", "5 min", "-", "3 h", "-", "0", "-",
    ],
    "payroll": [
        "Payroll (payroll)", SA, "office", "99.123%", "99.000%", "met",
        "12 min 36 s (12.281%)", "9 h", "1 h 30 min", "2 h", "4",
        "11 min 40 s", "3 of 3 (100.000%)", "2 h 40 min", "2 of 3 (66.667%)", "1",
        "CRITICAL respond 30 min, resolve 2 h (office); WARNING respond 1 h, resolve 4 h (office)",
    ],
}  # fmt: skip
OLA_ROWS = {
    SA: [
        SA, "CRITICAL respond 15 min, resolve 4 h; WARNING respond 30 min, resolve 1 d",
        "4", "13 min 20 s", "3 of 4 (75.000%)", "1 d 6 h", "2 of 4 (50.000%)", "3",
    ],
    CO: [
        CO, "CRITICAL respond 15 min, resolve 8 h (office)",
        "2", "15 min", "1 of 2 (50.000%)", "5 h", "2 of 2 (100.000%)", "1",
    ],
}  # fmt: skip


def _breach_rows() -> list[list[str]]:
    """The breach table: whose target, the call, host, rule, severity, target, took, due, opened."""
    c = CALLS

    def stamp(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    return [
        ["service file-shares", f"#{c['F1']}", "fs01", "filesystem_full", "CRITICAL",
         "resolution 4 h", "7 h", stamp(at(4, 14)), stamp(at(4, 10))],
        ["service file-shares", f"#{c['F2']}", "fs02", "filesystem_full", "CRITICAL",
         "response 15 min", "20 min", stamp(at(4, 12.25)), stamp(at(4, 12))],
        ["service payroll", f"#{c['P1']}", "pay01", "filesystem_full", "WARNING",
         "resolution 4 h (office)", "5 h 30 min", stamp(at(26, 9)), stamp(at(25, 14))],
        ["service web-shop", f"#{c['DB1']}", "db01", "filesystem_full", "CRITICAL",
         "resolution 2 h", "3 h", stamp(at(12, 4)), stamp(at(12, 2))],
        ["run group computer-operations", f"#{c['F2']}", "fs02", "filesystem_full", "CRITICAL",
         "response 15 min (office)", "20 min", stamp(at(4, 12.25)), stamp(at(4, 12))],
        ["run group systems-administration", f"#{c['P2']}", "pay01", "filesystem_full",
         "WARNING", "resolution 1 d", "2 d 18 h", stamp(at(22, 15.5)), stamp(at(21, 15.5))],
        ["run group systems-administration", f"#{c['P3']}", "pay01", "filesystem_full",
         "WARNING", "response 30 min", "2 d 9 h so far", stamp(at(28, 15.5)), stamp(at(28, 15))],
        ["run group systems-administration", f"#{c['P3']}", "pay01", "filesystem_full",
         "WARNING", "resolution 1 d", "2 d 9 h so far", stamp(at(29, 15)), stamp(at(28, 15))],
    ]  # fmt: skip


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _html_row(cells: list[str]) -> str:
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _assert_html(page: str) -> None:
    for cells in [*SERVICE_ROWS.values(), *OLA_ROWS.values(), *_breach_rows()]:
        assert _html_row(cells) in page, cells


def test_every_format_gives_the_hand_numbers(service: CollectorService) -> None:
    report = _report(service)
    # json: the numbers themselves (shares as fractions, times in seconds).
    data = json.loads(render(report, "json"))
    services = {s["service"]: s for s in data["services"]}
    for name, expected in EXPECTED_SERVICES.items():
        for key, value in expected.items():
            assert services[name][key] == (
                pytest.approx(value, rel=1e-12, abs=1e-9) if isinstance(value, float) else value
            ), (name, key)
    levels = {s["service"]: s["levels"] for s in data["services"]}
    levels.update({o["group"]: o["levels"] for o in data["olas"]})
    ids = {v: k for k, v in CALLS.items()}
    for who, expected in EXPECTED_LEVELS.items():
        assert {k: levels[who][k] for k in expected} == expected, who
        assert [
            (
                ids[b["call_id"]],
                b["kind"],
                b["calendar"],
                b["target_seconds"],
                b["took_seconds"],
                b["waiting"],
                b["due_at"],
            )
            for b in levels[who]["breaches"]
        ] == EXPECTED_BREACHES[who], who
    # csv: one table each for services, OLAs and breaches, with raw numbers.
    tables = _csv_tables(render(report, "csv"))
    rows = {r["service"]: r for r in tables["service"]}
    assert rows["payroll"]["counted_seconds"] == str(171 * H)
    assert rows["payroll"]["maintenance_seconds"] == str(2 * H)
    assert rows["payroll"]["met"] == "True" and rows["file-shares"]["met"] == "False"
    assert float(rows["file-shares"]["availability"]) == pytest.approx(716 / 720, rel=1e-12)
    assert float(rows["web-shop"]["budget_left_seconds"]) == pytest.approx(-8208.0)
    assert rows["database"]["target"] == "" and rows["payroll"]["calendar"] == "office"
    assert (rows["payroll"]["ttr_mean_seconds"], rows["payroll"]["resolution_met"]) == (
        "9600.0",
        "2",
    )
    olas = {r["run_group"]: r for r in tables["run_group"]}
    assert (olas[SA]["tta_mean_seconds"], olas[SA]["ttr_mean_seconds"]) == ("800.0", "106800.0")
    assert (olas[SA]["response_met"], olas[SA]["response_judged"], olas[SA]["breaches"]) == (
        "3",
        "4",
        "3",
    )
    assert olas[CO]["resolution_achieved"] == "1.0"
    breaches = [
        (r["breach_of"], r["name"], ids[int(r["call_id"])], r["kind"], r["took_seconds"])
        for r in tables["breach_of"]
    ]
    assert breaches == [
        ("service", "file-shares", "F1", "resolution", str(7 * H)),
        ("service", "file-shares", "F2", "response", "1200.0"),
        ("service", "payroll", "P1", "resolution", str(5.5 * H)),
        ("service", "web-shop", "DB1", "resolution", str(3 * H)),
        ("run group", CO, "F2", "response", "1200.0"),
        ("run group", SA, "P2", "resolution", str(65.5 * H)),
        ("run group", SA, "P3", "response", str(57 * H)),
        ("run group", SA, "P3", "resolution", str(57 * H)),
    ]
    # md and html: as people read them.
    md = render(report, "md")
    for cells in [*SERVICE_ROWS.values(), *OLA_ROWS.values(), *_breach_rows()]:
        assert _md_row(cells) in md, cells
    html = render(report, "html")
    _assert_html(html)
    # The chart of error budget used: down / allowed. File shares 14,400 / 12,960 s; payroll
    # 5,400 / 6,156 s; the web shop 10,800 / 2,592 s; e-mail nothing.
    chart = html.split('id="chart-budget"')[1].split("</svg>")[0]
    for text in (
        ">0.000% of 3 h 36 min<",
        ">111.111% of 3 h 36 min<",
        ">87.719% of 1 h 43 min<",
        ">416.667% of 43 min 12 s<",
    ):
        assert text in chart, text


def _csv_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """The csv's tables (blank-line separated), by their second heading."""
    out: dict[str, list[dict[str, str]]] = {}
    for block in text.split("\n\n"):
        rows = list(csv.DictReader(io.StringIO(block)))
        if rows or block.strip():
            heading = block.splitlines()[0].split(",")[1]
            out[heading] = rows
    return out


def test_the_console_report_page_gives_the_hand_numbers(service: CollectorService) -> None:
    set_user(service.config.users_file, "carol", "carol-secret-1")
    with TestClient(create_app(service)) as client:
        signed = client.post(
            "/login",
            data={"next": "/", "user": "carol", "password": "carol-secret-1"},
            follow_redirects=False,
        )
        assert signed.status_code == 303
        page = client.get("/report?period=2025-11")
        assert page.status_code == 200
        _assert_html(page.text)
        # A run group's page: its services and its OLA only.
        mine = client.get(f"/report?period=2025-11&group={CO}").text
        assert _html_row(SERVICE_ROWS["web-shop"]) in mine
        assert _html_row(OLA_ROWS[CO]) in mine and _html_row(OLA_ROWS[SA]) not in mine
        assert _html_row(SERVICE_ROWS["payroll"]) not in mine
        assert _html_row(SERVICE_ROWS["file-shares"]) not in mine


def test_the_report_command_gives_the_hand_numbers(
    tmp_path: Path, service: CollectorService, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "collector.yaml"
    store = service.config.store
    config.write_text(
        json.dumps(
            {
                "data_dir": str(service.config.data_dir),
                "store": {"backend": store.backend, **({"dsn": store.dsn} if store.dsn else {})},
                "sinks": {"helpdesk": {"type": "builtin"}},
                "groups": GROUPS,
                "services": SERVICES,
                "calendars": CALENDARS,
            }
        )
    )
    assert main(["report", "--config", str(config), "--period", "2025-11"]) == 0
    md = capsys.readouterr().out
    for cells in [*SERVICE_ROWS.values(), *OLA_ROWS.values(), *_breach_rows()]:
        assert _md_row(cells) in md, cells


# -- docs/reports.md shows this month ----------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"


def docs_block(page: str, name: str) -> str:
    """The fenced block after `<!-- example: NAME -->` on a docs page."""
    text = (DOCS / page).read_text(encoding="utf-8")
    after = text.split(f"<!-- example: {name} -->\n", 1)[1]
    return after.split("\n", 1)[1].split("\n```\n", 1)[0] + "\n"


def test_the_docs_targets_are_the_fixtures() -> None:
    shown = yaml.safe_load(docs_block("reports.md", "targets"))
    assert shown["calendars"] == CALENDARS
    assert {n: g["ola"] for n, g in shown["groups"].items()} == {
        n: g["ola"] for n, g in GROUPS.items()
    }
    assert {n: s["sla"] for n, s in shown["services"].items()} == {
        n: s["sla"] for n, s in SERVICES.items() if "sla" in s
    }


def test_the_docs_show_this_months_report(service: CollectorService) -> None:
    md = render(_report(service), "md")
    assert md[md.index("## Services") :] == docs_block("reports.md", "services report")


def test_the_services_page_shows_this_months_services(service: CollectorService) -> None:
    md = render(_report(service), "md")
    table = md[md.index("| service |") :]
    assert table[: table.index("\n\n") + 1] == docs_block("services.md", "services table")


def test_a_running_month_counts_services_up_to_now(service: CollectorService) -> None:
    """At 14:00 on the 4th, the file shares have been out for 2 h (since 12:00) of the 86 h of
    the month so far; F1 (4 h to resolve, opened at 10:00) is still within its target, and F2's
    response (due 12:15, acknowledged at 12:20) is already a breach."""
    report = build_report(service.store, service.config, NOV, as_of=at(4, 14))
    shares = next(s for s in report.services if s.service == "file-shares")
    assert (shares.counted_seconds, shares.outage_seconds) == (86 * H, 2 * H)
    assert shares.availability == pytest.approx(1 - 2 / 86, rel=1e-12)
    assert [(b.call_id, b.kind) for b in shares.levels.breaches] == [(CALLS["F2"], "response")]
    assert (shares.levels.resolution_judged, shares.levels.resolved) == (0, 0)


def test_a_host_group_report_has_no_services(make_service: Callable[..., Any]) -> None:
    service = make_service(
        rules=[FS_RULE],
        groups=GROUPS,
        services=SERVICES,
        calendars=CALENDARS,
        host_groups=[{"name": "web", "hosts": ["web*"]}],
    )
    fixture_history(service.store)
    report = _report(service, "web")
    assert (report.services, report.olas) == ([], [])
    assert "## Services" not in render(report, "md")


def test_without_services_or_olas_the_report_is_as_before(
    make_service: Callable[..., Any],
) -> None:
    plain = {name: {k: v for k, v in g.items() if k != "ola"} for name, g in GROUPS.items()}
    service = make_service(rules=[FS_RULE], groups=plain)
    report = _report(service)
    assert (report.services, report.olas) == ([], [])
    assert "## OLAs" not in render(report, "md") and "OLAs" not in render(report, "html")
    with_ola = make_service(rules=[FS_RULE], groups=GROUPS, calendars=CALENDARS)
    assert [o.group for o in _report(with_ola).olas] == [CO, SA]
