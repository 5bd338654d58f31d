"""Service-level reports over a fixture history whose answers were worked out by hand."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.app import CollectorService
from collector.evaluation.rules import Severity
from collector.incidents.calls import Call, CallEvent, fingerprint
from collector.service_levels import (
    ReportError,
    build_report,
    host_retirements,
    parse_period,
    render,
)
from collector.store.records import AuditEntry, BackupSuccess, CallLink, HostRecord, StateChange
from runwatch.cli import main
from tests.helpers import FS_RULE, TIMED_GROUPS, Reporter

H = 3600.0
NOV = parse_period("2025-11")
START = NOV.start

GROUPS = TIMED_GROUPS
HOST_GROUPS = [{"name": "web", "hosts": ["web*"]}]
SA, CO = "systems-administration", "computer-operations"
ROOT, SRV = '{"mountpoint":"/"}', '{"mountpoint":"/srv"}'


def day(n: int, hours: float = 0.0) -> float:
    """Unix time of day n of November 2025 (1-based) plus hours."""
    return START + (n - 1) * 24 * H + hours * H


def _call(
    store: Any,
    where: tuple[str, str, str],
    opened: float,
    events: Sequence[tuple[float, str]] = (),
    *,
    audited: Sequence[tuple[float, str]] = (),
    link: dict[str, float] | None = None,
) -> int:
    """A call with its events in order (kind, or "resolved" with the text a writer uses), the
    audit entries of what people did to it, and its help-desk link's times."""
    host, rule, group = where
    labels = {"mountpoint": "/"} if rule == "filesystem_full" else {}
    resolved = [at for at, kind in events if kind.startswith("resolved")]
    is_open = not events or not events[-1][1].startswith("resolved")
    call = Call(
        0,
        fingerprint(host, rule, labels),
        host,
        rule,
        labels,
        group,
        group,
        "CRITICAL",
        "high",
        "open" if is_open else "resolved",
        f"{rule} on {host}",
        "",
        opened,
        opened,
        events[-1][0] if events else opened,
        None if is_open else resolved[-1],
        sum(1 for _, kind in events if kind == "reopened"),
    )
    call_id = int(store.insert_call(call))
    store.add_call_event(CallEvent(call_id, opened, "opened", "opened"))
    for at, kind in events:
        text = {"resolved": "Recovered.", "acknowledged": "Acknowledged by ann."}.get(kind, kind)
        store.add_call_event(CallEvent(call_id, at, kind.split(":")[0], text))  # type: ignore[arg-type]
    for at, action in audited:
        store.add_audit(AuditEntry(0, at, "ann", action, f"call {call_id}", "", "console"))
    if link is not None:
        store.save_link(
            CallLink(
                call_id,
                "helpdesk",
                f"T-{call_id}",
                acknowledged_at=link.get("acknowledged_at"),
                desk_closed_at=link.get("desk_closed_at"),
            )
        )
    return call_id


WEEKLY_RULE = {
    "name": "weekly_backup_too_old",
    "metric": "backup_last_snapshot_age_seconds",
    "match": {"job": "weekly"},
    "warning": 8 * 24 * 3600,
    "owner": CO,
}
RETIRED = {"old01": 0.0}  # set in fixture_history: retired at the start of the 21st


def fixture_history(service: CollectorService) -> None:
    """The month worked out by hand in the tests below (hours of November from its start)."""
    store = service.store
    RETIRED["old01"] = day(21)
    with store.transaction():
        store.save_host(HostRecord("web01", START - 40 * 24 * H, day(30), 60, "t", "b", 1))
        store.save_host(HostRecord("db01", day(11), day(30), 60, "t", "b", 1))
        store.save_host(HostRecord("old01", START - 9 * 24 * H, day(21), 60, "t", "b", 1))
        # The collector evaluated throughout, except on the 25th (576 h to 600 h).
        store.record_evaluation(START - 10 * 24 * H, 60)
        store.record_evaluation(day(25), day(25) - START + 10 * 24 * H)
        store.record_evaluation(day(26), 60)
        store.record_evaluation(NOV.end + 10 * 24 * H, 40 * 24 * H)
        changes = [
            # web01 /: critical from before the period to 01:00 on the 1st (1 h in it),
            (START - H, "web01", "filesystem_full", ROOT, SA, Severity.CRITICAL),
            (day(1, 1), "web01", "filesystem_full", ROOT, SA, Severity.OK),
            # 02:00-05:00 on the 10th (3 h), and 05:00-07:00 on the 12th (2 h).
            (day(10), "web01", "filesystem_full", ROOT, SA, Severity.WARNING),
            (day(10, 2), "web01", "filesystem_full", ROOT, SA, Severity.CRITICAL),
            (day(10, 5), "web01", "filesystem_full", ROOT, SA, Severity.OK),
            (day(12, 5), "web01", "filesystem_full", ROOT, SA, Severity.CRITICAL),
            (day(12, 7), "web01", "filesystem_full", ROOT, SA, Severity.OK),
            # db01 /srv 04:00-06:00 on the 12th: one hour overlaps web01's.
            (day(12, 4), "db01", "filesystem_full", SRV, SA, Severity.CRITICAL),
            (day(12, 6), "db01", "filesystem_full", SRV, SA, Severity.OK),
            # computer operations on db01: 12 h on the 20th, then from 12:00 on the 24th to
            # 06:00 on the 26th: 12 h + 6 h watched, the 25th not.
            (day(20), "db01", "backup_age", "{}", CO, Severity.CRITICAL),
            (day(20, 12), "db01", "backup_age", "{}", CO, Severity.OK),
            (day(24, 12), "db01", "backup_age", "{}", CO, Severity.CRITICAL),
            (day(26, 6), "db01", "backup_age", "{}", CO, Severity.OK),
            # old01: critical from the 20th, never cleared; retired on the 21st (24 h).
            (day(20), "old01", "filesystem_full", ROOT, SA, Severity.CRITICAL),
            # db01 silent for 6 h on the 15th; old01 silent after its retirement (not counted).
            (day(15), "db01", "host_stale", "{}", SA, Severity.STALE),
            (day(15, 6), "db01", "host_stale", "{}", SA, Severity.OK),
            (day(21, 1), "old01", "host_stale", "{}", SA, Severity.STALE),
            # after the period: must not count.
            (NOV.end + H, "web01", "filesystem_full", ROOT, SA, Severity.CRITICAL),
        ]
        store.add_state_changes(
            [
                StateChange(at, host, rule, key, grp, int(sev))
                for at, host, rule, key, grp, sev in changes
            ]
        )
        fs, backup = "filesystem_full", "backup_age"
        # C0, before the period: not counted.
        _call(store, ("web01", fs, SA), START - 2 * H, [(START - H, "resolved")])
        # C1: acknowledged by hand after 600 s, recovered, came back on the 5th (a recurrence),
        # finally resolved 96.5 h after it opened.
        c1 = day(1, 0.5)
        _call(
            store,
            ("web01", fs, SA),
            c1,
            [
                (c1 + 600, "acknowledged"),
                (day(1, 1), "resolved"),
                (day(5), "reopened"),
                (day(5, 1), "resolved"),
            ],
            audited=[(c1 + 600, "call.acknowledge")],
        )
        # C2: a person's comment after 1200 s; recovered after 10500 s.
        c2 = day(10, 2) + 300
        _call(
            store,
            ("web01", fs, SA),
            c2,
            [(c2 + 1200, "comment"), (day(10, 5), "resolved")],
            audited=[(c2 + 1200, "call.comment")],
        )
        # C3: nobody answered; recovered after 6900 s, inside 4 h.
        _call(store, ("db01", fs, SA), day(12, 4) + 300, [(day(12, 6), "resolved")])
        # C4: acknowledged in the desk after 7200 s (1 h target: missed), closed in the desk
        # and reopened by runwatch (not a recurrence), recovered after 42600 s.
        c4 = day(20) + 600
        _call(
            store,
            ("db01", backup, CO),
            c4,
            [(c4 + 7200, "acknowledged"), (day(20, 3), "reopened"), (day(20, 12), "resolved")],
            link={"acknowledged_at": c4 + 7200},
        )
        # C5: closed in the desk after 7140 s under the new_call policy; retired at 16:00 and
        # followed by C6 at the same evaluation, still open at the end (152 h).
        c5 = day(24, 12) + 60
        _call(
            store,
            ("db01", backup, CO),
            c5,
            [(day(24, 16), "resolved")],
            link={"desk_closed_at": day(24, 14)},
        )
        _call(store, ("db01", backup, CO), day(24, 16))
        # C7: on old01, never answered, still open (264 h - 120 s): missed its 4 h.
        _call(store, ("old01", fs, SA), day(20) + 120)
        # C8: an hour before the end, still open: cannot have missed 4 h yet.
        _call(store, ("web01", fs, SA), day(30, 23))
        nightly = '{"job":"nightly","tool":"restic"}'
        restic = '{"job":"nightly","repo":"/srv/restic","tool":"restic"}'
        weekly = '{"job":"weekly","repo":"ssh://backup/borg","tool":"borg"}'
        success, snapshot = (
            "backup_last_success_timestamp_seconds",
            "backup_last_snapshot_timestamp_seconds",
        )
        store.add_backup_successes(
            [
                BackupSuccess("db01", success, nightly, START + h * H)
                for h in (-48, -30, -23, 1, 25, 97, 720 + 1)
            ]
            + [BackupSuccess("db01", snapshot, restic, day(n, 1)) for n in range(1, 31)]
            + [
                BackupSuccess("db01", snapshot, weekly, t)
                for t in (START - 72 * H, day(5), day(12), day(19), day(26))
            ]
        )


@pytest.fixture
def service(make_service: Callable[..., CollectorService]) -> CollectorService:
    svc = make_service(rules=[FS_RULE, WEEKLY_RULE], groups=GROUPS, host_groups=HOST_GROUPS)
    fixture_history(svc)
    return svc


def _report(service: CollectorService, group: str | None = None, **kw: Any) -> Any:
    return build_report(service.store, service.config, NOV, group, retired=RETIRED, **kw)


def _scopes(service: CollectorService) -> dict[str, Any]:
    return {s.name: s for s in _report(service).scopes}


WATCHED = (
    696 + 456 + 480
)  # host-hours: web01 all but the 25th, db01 from the 11th, old01 to the 21st


def test_availability_is_the_mean_of_hosts_over_their_watched_time(
    service: CollectorService,
) -> None:
    scopes = _scopes(service)
    assert list(scopes) == ["all", CO, SA, "web"]
    fleet, sa, co, web = scopes["all"], scopes[SA], scopes[CO], scopes["web"]
    # Down: web01 6 h, db01 2 h + 12 h + 18 h, old01 24 h up to its retirement.
    assert fleet.availability == pytest.approx(1 - 62 / WATCHED)
    assert sa.availability == pytest.approx(1 - 32 / WATCHED)
    assert co.availability == pytest.approx(1 - 30 / WATCHED)
    assert web.availability == pytest.approx(1 - 6 / 696)
    # All clear: no host down at all, of the 696 h anyone was watched.
    assert fleet.all_clear == pytest.approx(1 - 49 / 696)
    assert sa.all_clear == pytest.approx(1 - 31 / 696)
    assert co.all_clear == pytest.approx(1 - 30 / 696)
    assert fleet.watched_host_seconds == WATCHED * H
    assert (fleet.hosts, web.hosts) == (3, 1)


def test_hosts_up_counts_from_first_report_to_retirement(service: CollectorService) -> None:
    scopes = _scopes(service)
    # db01's 6 h silence; old01's silence after its retirement is not counted.
    assert scopes["all"].hosts_up == pytest.approx(1 - 6 / WATCHED)
    assert scopes["web"].hosts_up == 1.0
    assert scopes[SA].hosts_up is None
    unretired = build_report(service.store, service.config, NOV)
    fleet = unretired.scopes[0]
    # Not retired, old01 counts to the end (696 h) and is silent from 01:00 on the 21st.
    assert fleet.hosts_up == pytest.approx(1 - (6 + 696 - 481) / (WATCHED + 216))


def test_time_nobody_watched_is_neither_up_nor_down(service: CollectorService) -> None:
    report = _report(service)
    assert report.unwatched_seconds == 24 * H
    assert report.watch_recorded_from == START - 10 * 24 * H
    assert "Not watched (no collector evaluating): 1 d, counted neither up nor down." in render(
        report, "md"
    )


def test_calls_respond_resolve_and_still_open(service: CollectorService) -> None:
    scopes = _scopes(service)
    sa, co, fleet, web = scopes[SA], scopes[CO], scopes["all"], scopes["web"]
    assert (sa.calls_opened, sa.calls_reopened, sa.desk_reopened) == (5, 1, 0)
    assert (sa.responded, sa.tta_mean_seconds, sa.tta_p90_seconds) == (2, 900.0, 1200.0)
    # To the final resolution: C1 runs 96.5 h, not to its first recovery.
    assert (sa.resolved, sa.ttr_mean_seconds) == (3, (347400 + 10500 + 6900) / 3)
    assert (sa.ttr_p90_seconds, sa.ttr_p90_at_least) == (950280.0, True)
    assert (sa.still_open, sa.still_open_oldest_seconds) == (2, 950280.0)
    assert (sa.recovered_unanswered, sa.missed_response) == (1, 1)
    assert sa.calls_per_day[0] == 1 and sa.calls_per_day[29] == 1 and sum(sa.calls_per_day) == 5

    assert (co.calls_opened, co.calls_reopened, co.desk_reopened) == (3, 0, 2)
    assert (co.responded, co.tta_mean_seconds, co.tta_p90_seconds) == (2, 7170.0, 7200.0)
    assert (co.resolved, co.ttr_mean_seconds) == (2, (42600 + 14340) / 2)
    assert (co.ttr_p90_seconds, co.ttr_p90_at_least) == (547200.0, True)
    assert (co.still_open, co.recovered_unanswered, co.missed_response) == (1, 0, 3)

    assert (fleet.calls_opened, fleet.responded, fleet.resolved) == (8, 4, 5)
    assert (fleet.tta_mean_seconds, fleet.tta_p90_seconds) == (4035.0, 7200.0)
    assert fleet.ttr_mean_seconds == 421740 / 5
    assert (fleet.ttr_p90_seconds, fleet.still_open, fleet.missed_response) == (950280.0, 3, 4)
    assert (web.ttr_mean_seconds, web.ttr_p90_seconds, web.ttr_p90_at_least) == (
        178950.0,
        347400.0,
        False,
    )


def test_desk_close_reopens_are_not_recurrences(service: CollectorService) -> None:
    scopes = _scopes(service)
    assert [(r.host, r.rule, r.calls) for r in scopes["all"].recurring] == [
        ("web01", "filesystem_full", 4),
        ("db01", "backup_age", 2),
    ]
    assert [(r.rule, r.calls) for r in scopes[CO].recurring] == [("backup_age", 2)]


def test_backups_are_judged_against_the_age_their_rule_allows(service: CollectorService) -> None:
    backups = {(b.job, b.source, b.repository): b for b in _report(service).backups}
    nightly = backups[("nightly", "status file", "")]
    # 26 h allowed: late from 51 h to 97 h and from 123 h on, of 720 h.
    assert (nightly.allowed_age_seconds, nightly.tool) == (93600.0, "restic")
    assert nightly.fresh_seconds == 77 * H and nightly.share == pytest.approx(77 / 720)
    assert nightly.calendar[:3] == ["fresh", "fresh", "late"] and nightly.late_days == 28
    restic = backups[("nightly", "repository", "/srv/restic")]
    assert (restic.share, restic.known_seconds, restic.late_days) == (1.0, 719 * H, 0)
    weekly = backups[("weekly", "repository", "ssh://backup/borg")]
    # A weekly job with its own 8 d rule: always within it, not 4 days in 30.
    assert (weekly.allowed_age_seconds, weekly.share, weekly.tool) == (691200.0, 1.0, "borg")
    assert set(weekly.calendar) == {"fresh"}


def test_a_running_month_counts_up_to_now(service: CollectorService) -> None:
    report = _report(service, SA, as_of=day(10, 3))
    (sa,) = report.scopes
    # web01 1 h + 1 h and old01 nothing yet, of 219 h each (db01 has not reported yet).
    assert sa.availability == pytest.approx(1 - 2 / (2 * 219))
    assert (sa.calls_opened, sa.resolved, sa.responded, sa.still_open) == (2, 1, 2, 1)
    assert len(sa.calls_per_day) == 10  # the days that have begun, not the month's 30
    later = _report(service, as_of=NOV.end + 99 * H)
    assert render(later, "json") == render(_report(service), "json")
    # At 00:00:20 on the 3rd the nightly backup of 01:00 on the 2nd is 23 h old: fresh, and the
    # 3rd is pending, not missed.
    early = {b.repository: b for b in _report(service, as_of=day(3) + 20).backups}
    restic = early["/srv/restic"]
    assert restic.calendar[:4] == ["fresh", "fresh", "pending", None] and restic.share == 1.0


def test_a_future_period_is_refused(service: CollectorService) -> None:
    with pytest.raises(ReportError, match="period 2025-11 has not begun"):
        _report(service, as_of=START - 1)
    with pytest.raises(
        ReportError, match="starts 2025-12-01 00:00:00 UTC, and it is 2025-11-30 04:00:00 UTC"
    ):
        build_report(service.store, service.config, parse_period("2025-12"), as_of=day(30, 4))


def test_report_is_reproducible_and_filters(service: CollectorService) -> None:
    first = render(_report(service), "json")
    assert render(_report(service), "json") == first
    only = _report(service, CO)
    assert [(s.kind, s.name) for s in only.scopes] == [("run group", CO)]
    web = _report(service, "web")
    assert [b.host for b in web.backups] == []
    with pytest.raises(ReportError, match="no run group or host group named 'nope'"):
        _report(service, "nope")


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "November", "2026-11-01"])
def test_bad_periods_are_refused(text: str) -> None:
    with pytest.raises(ReportError, match="YYYY-MM"):
        parse_period(text)


def test_every_format_shows_the_same_numbers(service: CollectorService) -> None:
    report = _report(service)
    data = json.loads(render(report, "json"))
    assert data["period"] == "2025-11" and len(data["scopes"]) == 4
    assert data["unwatched_seconds"] == 86400.0
    assert {(b["job"], b["tool"], b["repository"]) for b in data["backups"]} == {
        ("nightly", "restic", ""),
        ("nightly", "restic", "/srv/restic"),
        ("weekly", "borg", "ssh://backup/borg"),
    }
    text = render(report, "csv")
    assert text.splitlines()[0].startswith("period,kind,name,availability,all_clear,hosts_up")
    assert "2025-11,db01,nightly,restic,,status file,93600.0,277200.0,2592000.0," in text
    assert "2025-11,db01,nightly,restic,/srv/restic,repository,93600.0," in text
    md = render(report, "md")
    assert "| run group computer-operations | 98.162% | 95.690% | - | 3 | 0 | 2 | 2 h | 2 h |" in md
    assert "| 7 h 54 min | at least 6 d 8 h | 1 still open, 6 d 8 h so far | 0 | 3 |" in md
    assert "| db01 | nightly | restic | - | status file | 1 d 2 h | 10.694% | 28 |" in md
    assert "| db01 | nightly | restic | /srv/restic | repository | 1 d 2 h | 100.000% | 0 |" in md
    assert "| db01 | weekly | borg | ssh://backup/borg | repository | 8 d | 100.000% | 0 |" in md
    html = render(report, "html")
    assert html.startswith("<!DOCTYPE html>")
    for chart in ("chart-calls", "chart-ttr", "chart-backups"):
        assert f'id="{chart}"' in html
    for cells in (
        "<td>run group computer-operations</td><td>98.162%</td><td>95.690%</td>",
        "<td>at least 6 d 8 h</td><td>1 still open, 6 d 8 h so far</td>",
        "<td>db01</td><td>nightly</td><td>restic</td><td>/srv/restic</td><td>repository</td>",
        "<td>db01</td><td>nightly</td><td>restic</td><td>-</td><td>status file</td>",
        "Not watched (no collector evaluating): 1 d, counted neither up nor down.",
        ">db01 nightly restic status file</text>",  # the calendar's rows, told apart too
        ">db01 nightly restic /srv/restic</text>",
        "<th>time to resolve (p90)</th><th>still open</th>",
    ):
        assert cells in html
    assert "0m" not in md and "h0" not in md


def test_calls_chart_stops_at_today(service: CollectorService) -> None:
    html = render(_report(service, SA, as_of=day(10, 3)), "html")
    chart = html.split('id="chart-calls"')[1].split("</svg>")[0]
    points = chart.split('points="')[1].split('"')[0].split()
    assert len(points) == 10


def test_evaluation_records_state_changes_and_backups(
    make_service: Callable[..., CollectorService], clock: Any
) -> None:
    service = make_service()
    web = Reporter("web01", clock)
    service.ingest("web01", web.report({"fs_used_ratio": 0.5}))
    clock.advance(60)
    service.ingest("web01", web.report({"fs_used_ratio": 0.97}))
    clock.advance(60)
    service.ingest("web01", web.report({"fs_used_ratio": 0.5}))
    changes = [
        (c.rule, c.group, Severity(c.severity).name)
        for c in service.store.state_changes(0, clock() + 1)
    ]
    assert changes == [("filesystem_full", SA, "CRITICAL"), ("filesystem_full", SA, "OK")]
    for value in (1000.0, 1000.0, 2000.0):
        clock.advance(60)
        service.ingest(
            "web01",
            web.report(
                {"backup_last_success_timestamp_seconds": value},
                labels={"job": "nightly"},
                check="statusfile",
            ),
        )
    assert [b.succeeded_at for b in service.store.backup_successes(0, clock())] == [1000.0, 2000.0]


def write_collector_config(tmp_path: Path, service: CollectorService) -> Path:
    """Write a collector config for `runwatch report` that reads the service's store."""
    config = tmp_path / "collector.yaml"
    store = service.config.store
    backend = {"backend": store.backend, **({"dsn": store.dsn} if store.dsn else {})}
    config.write_text(
        json.dumps(
            {
                "data_dir": str(service.config.data_dir),
                "store": backend,
                "sinks": {"helpdesk": {"type": "builtin"}},
                "groups": GROUPS,
                "host_groups": HOST_GROUPS,
            }
        )
    )
    return config


def test_report_command(
    tmp_path: Path, service: CollectorService, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_collector_config(tmp_path, service)
    november = ["report", "--config", str(config), "--period", "2025-11"]
    assert main([*november, "--group", CO, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scopes"][0]["missed_response"] == 3
    out = tmp_path / "report.html"
    assert main([*november, "--format", "html", "--output", str(out)]) == 0
    assert 'id="chart-backups"' in out.read_text()
    assert main(["report", "--config", str(config), "--period", "2026-14"]) == 2
    assert "YYYY-MM" in capsys.readouterr().err
    assert main([*november, "--group", "nope"]) == 2
    capsys.readouterr()
    assert main(["report", "--config", str(config), "--period", "2999-01"]) == 2
    assert "period 2999-01 has not begun: it starts 2999-01-01 00:00:00 UTC" in (
        capsys.readouterr().err
    )
    assert main(["report", "--data-dir", str(tmp_path / "none"), "--period", "2025-11"]) == 1
    assert "no collector store" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_acknowledgements_seen_in_a_help_desk_count(
    make_service: Callable[..., CollectorService],
) -> None:
    groups = {**GROUPS, CO: {**GROUPS[CO], "sink": "desk"}}
    service = make_service(
        groups=groups,
        sinks={
            "helpdesk": {"type": "builtin"},
            "desk": {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
        },
    )
    with service.store.transaction():
        call_id = _call(
            service.store, ("db01", "backup_age", CO), day(3), [(day(3, 2), "resolved")]
        )
        service.store.save_link(CallLink(call_id, "desk", "T-1", acknowledged_at=day(3) + 900))
    (co,) = build_report(service.store, service.config, NOV, CO).scopes
    assert (co.responded, co.tta_mean_seconds, co.missed_response) == (1, 900.0, 0)
    assert co.recovered_unanswered == 0


def test_an_automatic_recovery_is_not_a_response(
    make_service: Callable[..., CollectorService],
) -> None:
    service = make_service(groups=GROUPS)
    with service.store.transaction():
        # Recovered after 30 min; a note by runwatch (no person) after 10 min.
        _call(
            service.store,
            ("db01", "backup_age", CO),
            day(3),
            [(day(3) + 600, "comment"), (day(3, 0.5), "resolved")],
        )
        # Resolved by hand after 20 min: a response.
        _call(
            service.store,
            ("db01", "job_failed", CO),
            day(4),
            [(day(4) + 1200, "resolved")],
            audited=[(day(4) + 1200, "call.resolve")],
        )
    (co,) = build_report(service.store, service.config, NOV, CO).scopes
    assert (co.responded, co.tta_mean_seconds, co.recovered_unanswered) == (1, 1200.0, 1)
    assert (co.resolved, co.ttr_mean_seconds, co.missed_response) == (2, 1500.0, 0)


def test_what_people_did_in_the_help_desk_is_a_response(
    make_service: Callable[..., CollectorService],
) -> None:
    service = make_service(groups=TIMED_GROUPS)
    with service.store.transaction():
        # A note written in the desk after 5 min; a close there, reopened by runwatch; the
        # problem clears after 2 h.
        _call(
            service.store,
            ("db01", "backup_age", CO),
            day(3),
            [(day(3) + 300, "desk_comment"), (day(3, 1), "desk_reopened"), (day(3, 2), "resolved")],
        )
        # Closed in the desk after 40 min and left closed by the policy; cleared at 1 h.
        _call(
            service.store,
            ("db01", "job_failed", CO),
            day(4),
            [(day(4) + 2400, "desk_closed"), (day(4, 1), "resolved")],
        )
    (co,) = build_report(service.store, service.config, NOV, CO).scopes
    assert (co.responded, co.tta_mean_seconds, co.recovered_unanswered) == (2, 1350.0, 0)
    assert (co.calls_reopened, co.desk_reopened, co.recurring) == (0, 1, [])
    assert co.missed_response == 0  # both answered inside the 1 h target


def test_the_collector_records_when_it_evaluated(
    make_service: Callable[..., CollectorService], clock: Any
) -> None:
    service = make_service()
    began = clock()
    service.tick()
    clock.advance(30)
    service.tick()
    assert service.store.evaluation_spans() == [(began, began + 30)]
    clock.advance(3600)  # the collector was down for an hour
    service.tick()
    assert service.store.evaluation_spans() == [
        (began, began + 30),
        (began + 3630, began + 3630),
    ]


def test_a_stale_span_starts_at_the_last_report(
    make_service: Callable[..., CollectorService], clock: Any
) -> None:
    service = make_service()
    web = Reporter("web01", clock)
    service.ingest("web01", web.report({"fs_used_ratio": 0.5}))
    last = clock()
    clock.advance(600)  # stale after 3 intervals of 60 s; detected at the next tick
    service.tick()
    stale = [
        (c.at, Severity(c.severity).name)
        for c in service.store.state_changes(0, clock() + 1)
        if c.rule == "host_stale"
    ]
    assert stale == [(last, "STALE")]


def test_a_silent_host_and_a_stopped_collector_through_the_pipeline(
    make_service: Callable[..., CollectorService], clock: Any
) -> None:
    """Reports and ticks through the collector: silence from the last report, and the hour the
    collector was down counted neither up nor down."""
    service = make_service()
    web = Reporter("web01", clock)
    first = clock()
    for _ in range(11):  # reports and evaluations every minute for 10 min
        service.ingest("web01", web.report({"fs_used_ratio": 0.5}))
        service.tick()
        clock.advance(60)
    for _ in range(10):  # silent for 10 min: stale from its last report, 10 min ago
        service.tick()
        clock.advance(60)
    service.tick()  # first + 1260
    clock.advance(3600)  # the collector is down for an hour
    service.tick()  # first + 4860: still stale, then it reports again
    service.ingest("web01", web.report({"fs_used_ratio": 0.5}))
    clock.advance(60)
    service.tick()
    period = parse_period(datetime.fromtimestamp(first, UTC).strftime("%Y-%m"))
    report = build_report(service.store, service.config, period, as_of=clock())
    fleet = report.scopes[0]
    watched = 1260 + 60
    assert fleet.watched_host_seconds == watched
    assert report.unwatched_seconds == 3600  # before the first evaluation counts as watched
    # Silent from its last report (first + 600) to the collector's stop (first + 1260), and
    # not again once it reported at first + 4860.
    assert fleet.hosts_up == pytest.approx(1 - 660 / watched)
    assert fleet.availability == 1.0


def test_a_retired_host_the_store_no_longer_lists_counts_to_its_retirement(
    make_service: Callable[..., CollectorService],
) -> None:
    service = make_service(groups=GROUPS)
    with service.store.transaction():
        service.store.save_host(HostRecord("web01", START - H, day(30), 60, "t", "b", 1))
        service.store.add_state_changes(
            [StateChange(day(10), "gone01", "filesystem_full", ROOT, SA, int(Severity.CRITICAL))]
        )
    gone = HostRecord("gone01", day(6), day(11), 60, "t", "b", 1)  # listed by retirements only
    report = build_report(
        service.store,
        service.config,
        NOV,
        retired={"gone01": day(11)},
        retired_hosts=[gone],
        as_of=NOV.end,
    )
    fleet = report.scopes[0]
    # gone01: 5 days watched from its first report, the last of them down; web01: 720 h.
    assert (fleet.hosts, fleet.watched_host_seconds) == (2, (720 + 120) * H)
    assert fleet.availability == pytest.approx(1 - 24 / 840)


def test_time_before_evaluations_were_recorded_counts_as_watched(
    make_service: Callable[..., CollectorService],
) -> None:
    """A store upgraded on the 16th: the first half of the month counts as before."""
    service = make_service(groups=GROUPS)
    with service.store.transaction():
        service.store.save_host(HostRecord("web01", START - H, day(30), 60, "t", "b", 1))
        service.store.record_evaluation(day(16), 60)
        service.store.record_evaluation(day(21), 5 * 24 * H)  # then down from the 21st
    report = build_report(service.store, service.config, NOV, as_of=NOV.end)
    assert report.unwatched_seconds == 10 * 24 * H
    assert report.scopes[0].watched_host_seconds == 20 * 24 * H
    assert report.watch_recorded_from == day(16)
    assert (
        "Not watched (no collector evaluating): 10 d, counted neither up nor down. Before "
        "2025-11-16 00:00:00 UTC, when recording began, counted as watched."
    ) in render(report, "md")


def test_hosts_retired_in_the_store_count_to_their_retirement(
    tmp_path: Path, service: CollectorService, capsys: pytest.CaptureFixture[str]
) -> None:
    before = render(_report(service), "json")  # the retirement given to the computation
    with service.store.transaction():
        assert service.store.retire_host("old01", day(21), "ann", "decommissioned")
    assert "old01" not in {h.host for h in service.store.load_hosts()}
    records, retired = host_retirements(service.store)
    assert ([r.host for r in records], retired) == (["old01"], {"old01": day(21)})
    report = build_report(
        service.store, service.config, NOV, retired=retired, retired_hosts=records
    )
    assert render(report, "json") == before
    # `runwatch report` reads them the same way.
    config = write_collector_config(tmp_path, service)
    assert main(["report", "--config", str(config), "--period", "2025-11", "--format", "json"]) == 0
    fleet = json.loads(capsys.readouterr().out)["scopes"][0]
    assert (fleet["hosts"], fleet["availability"]) == (3, pytest.approx(1 - 62 / WATCHED))
