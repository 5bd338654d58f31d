"""Service-level reports over a fixture history whose answers were worked out by hand."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collector.app import CollectorService
from collector.evaluation.rules import Severity
from collector.incidents.calls import Call, CallEvent, fingerprint
from collector.service_levels import ReportError, build_report, parse_period, render
from collector.store.records import BackupSuccess, HostRecord, StateChange
from runwatch.cli import main
from tests.helpers import TIMED_GROUPS, Reporter

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
    host: str,
    rule: str,
    group: str,
    opened: float,
    *,
    acked: float | None,
    resolved: float | None,
    reopen: tuple[float, float] | None = None,
) -> int:
    labels = {"mountpoint": "/"} if rule == "filesystem_full" else {}
    status = "resolved" if resolved is not None else "open"
    final = reopen[1] if reopen else resolved
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
        status,
        f"{rule} on {host}",
        "",
        opened,
        opened,
        final or opened,
        final,
        1 if reopen else 0,
    )
    call_id = store.insert_call(call)
    store.add_call_event(CallEvent(call_id, opened, "opened", "opened"))
    if acked is not None:
        store.add_call_event(CallEvent(call_id, acked, "acknowledged", "Acknowledged by ann."))
    if resolved is not None:
        store.add_call_event(CallEvent(call_id, resolved, "resolved", "Recovered."))
    if reopen:
        store.add_call_event(CallEvent(call_id, reopen[0], "reopened", "Back again."))
        store.add_call_event(CallEvent(call_id, reopen[1], "resolved", "Recovered."))
    return call_id


def fixture_history(service: CollectorService) -> None:
    """The month worked out by hand in test_report_numbers."""
    store = service.store
    with store.transaction():
        store.save_host(HostRecord("web01", START - 40 * 24 * H, day(30), 60, "t", "b", 1))
        store.save_host(HostRecord("db01", day(11), day(30), 60, "t", "b", 1))
        changes = [
            # web01 /: critical from before the period to 01:00 on the 1st (1h in it),
            (START - H, "web01", "filesystem_full", ROOT, SA, Severity.CRITICAL),
            (day(1, 1), "web01", "filesystem_full", ROOT, SA, Severity.OK),
            # then warning, critical 02:00-05:00 on the 10th (3h).
            (day(10), "web01", "filesystem_full", ROOT, SA, Severity.WARNING),
            (day(10, 2), "web01", "filesystem_full", ROOT, SA, Severity.CRITICAL),
            (day(10, 5), "web01", "filesystem_full", ROOT, SA, Severity.OK),
            # db01 /srv critical 04:00-06:00 on the 10th: overlaps web01's, 1h more for SA.
            (day(10, 4), "db01", "filesystem_full", SRV, SA, Severity.CRITICAL),
            (day(10, 6), "db01", "filesystem_full", SRV, SA, Severity.OK),
            # computer operations: 12h critical on the 20th.
            (day(20), "db01", "backup_age", "{}", CO, Severity.CRITICAL),
            (day(20, 12), "db01", "backup_age", "{}", CO, Severity.OK),
            # db01 silent for 6h on the 15th (not in availability: in hosts up).
            (day(15), "db01", "host_stale", "{}", SA, Severity.STALE),
            (day(15, 6), "db01", "host_stale", "{}", SA, Severity.OK),
            # after the period: must not count.
            (NOV.end + H, "web01", "filesystem_full", ROOT, SA, Severity.CRITICAL),
        ]
        store.add_state_changes(
            [
                StateChange(at, host, rule, key, grp, int(sev))
                for at, host, rule, key, grp, sev in changes
            ]
        )
        # Calls. Before the period: not counted.
        _call(store, "web01", "filesystem_full", SA, START - 2 * H, acked=None, resolved=START - H)
        # C1: TTA 600, TTR 1800, reopened on the 5th.
        _call(
            store,
            "web01",
            "filesystem_full",
            SA,
            day(1, 0.5),
            acked=day(1, 0.5) + 600,
            resolved=day(1, 1),
            reopen=(day(5), day(5, 1)),
        )
        # C2: TTA 1200, TTR 10500.
        _call(
            store,
            "web01",
            "filesystem_full",
            SA,
            day(10, 2) + 300,
            acked=day(10, 2) + 1500,
            resolved=day(10, 5),
        )
        # C3: never acknowledged, resolved after 6900 s (inside 4h: not missed).
        _call(
            store, "db01", "filesystem_full", SA, day(10, 4) + 300, acked=None, resolved=day(10, 6)
        )
        # C5: opened an hour before the end, still open: cannot have missed 4h yet.
        _call(store, "web01", "filesystem_full", SA, day(30, 23), acked=None, resolved=None)
        # C4: acknowledged after 2h (missed 1h), TTR 42600.
        _call(
            store,
            "db01",
            "backup_age",
            CO,
            day(20) + 600,
            acked=day(20) + 7800,
            resolved=day(20, 12),
        )
        # C7: never answered: missed.
        _call(store, "db01", "job_failed", CO, day(25), acked=None, resolved=None)
        store.add_backup_successes(
            [
                BackupSuccess(
                    "db01", "backup_last_success_timestamp_seconds", '{"job":"nightly"}', t
                )
                for t in (
                    START - 2 * 24 * H,
                    day(1, 1),
                    day(2, 1),
                    day(2, 13),
                    day(5, 1),
                    NOV.end + H,
                )
            ]
            + [
                BackupSuccess(
                    "web01",
                    "backup_last_snapshot_timestamp_seconds",
                    '{"repository":"/srv/restic"}',
                    t,
                )
                for t in (day(21, 3), day(22, 3))
            ]
        )


@pytest.fixture
def service(make_service: Callable[..., CollectorService]) -> CollectorService:
    svc = make_service(groups=GROUPS, host_groups=HOST_GROUPS)
    fixture_history(svc)
    return svc


def test_report_numbers(service: CollectorService) -> None:
    report = build_report(service.store, service.config, NOV)
    scopes = {(s.kind, s.name): s for s in report.scopes}
    assert list(scopes) == [
        ("fleet", "all"),
        ("run group", CO),
        ("run group", SA),
        ("host group", "web"),
    ]
    month = 720.0  # hours in November
    sa, co = scopes[("run group", SA)], scopes[("run group", CO)]
    fleet, web = scopes[("fleet", "all")], scopes[("host group", "web")]
    assert sa.availability == 1 - 5 / month
    assert co.availability == 1 - 12 / month
    assert fleet.availability == 1 - 17 / month
    assert web.availability == 1 - 4 / month
    # db01 joined on the 11th: 480h in the period, 6h of them stale.
    assert fleet.hosts_up == (1.0 + (1 - 6 / 480)) / 2
    assert fleet.hosts == 2
    assert web.hosts_up == 1.0
    assert sa.hosts_up is None

    assert (sa.calls_opened, sa.calls_reopened, sa.acknowledged, sa.resolved) == (4, 1, 2, 3)
    assert (sa.tta_mean_seconds, sa.tta_p90_seconds) == (900.0, 1200.0)
    assert (sa.ttr_mean_seconds, sa.ttr_p90_seconds) == (6400.0, 10500.0)
    assert sa.missed_response == 0
    assert (co.calls_opened, co.tta_mean_seconds, co.ttr_mean_seconds) == (2, 7200.0, 42600.0)
    assert co.missed_response == 2
    assert (fleet.calls_opened, fleet.missed_response) == (6, 2)
    assert (fleet.tta_mean_seconds, fleet.tta_p90_seconds) == (3000.0, 7200.0)
    assert (fleet.ttr_mean_seconds, fleet.ttr_p90_seconds) == (15450.0, 42600.0)
    assert (web.ttr_mean_seconds, web.ttr_p90_seconds) == (6150.0, 10500.0)
    assert [(r.host, r.rule, r.calls) for r in sa.recurring] == [("web01", "filesystem_full", 4)]
    assert sa.calls_per_day[0] == 1 and sa.calls_per_day[9] == 2 and sa.calls_per_day[29] == 1
    assert sum(sa.calls_per_day) == 4

    backups = {(b.host, b.job): b for b in report.backups}
    nightly, restic = backups[("db01", "nightly")], backups[("web01", "/srv/restic")]
    assert (nightly.days_fresh, nightly.days, nightly.share) == (3, 30, 0.1)
    assert nightly.calendar[:5] == [True, True, False, False, True]
    assert (restic.days_fresh, restic.days, restic.share) == (2, 10, 0.2)
    assert restic.calendar[19] is None and restic.calendar[20] is True


def test_report_is_reproducible_and_filters(service: CollectorService) -> None:
    first = render(build_report(service.store, service.config, NOV), "json")
    assert render(build_report(service.store, service.config, NOV), "json") == first
    only = build_report(service.store, service.config, NOV, CO)
    assert [(s.kind, s.name) for s in only.scopes] == [("run group", CO)]
    web = build_report(service.store, service.config, NOV, "web")
    assert [b.host for b in web.backups] == ["web01"]
    with pytest.raises(ReportError, match="no run group or host group named 'nope'"):
        build_report(service.store, service.config, NOV, "nope")


def test_a_running_month_counts_up_to_now(service: CollectorService) -> None:
    report = build_report(service.store, service.config, NOV, SA, as_of=day(10, 3))
    (sa,) = report.scopes
    # 1h on the 1st and 02:00-03:00 on the 10th, out of 9 days and 3 hours.
    assert sa.availability == 1 - 2 / (9 * 24 + 3)
    assert (sa.calls_opened, sa.resolved, sa.acknowledged) == (2, 1, 2)
    later = build_report(service.store, service.config, NOV, as_of=NOV.end + 99 * H)
    assert render(later, "json") == render(build_report(service.store, service.config, NOV), "json")
    nightly = build_report(service.store, service.config, NOV, as_of=day(3)).backups[0]
    assert nightly.calendar[:3] == [True, True, None] and nightly.days == 2


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "November", "2026-11-01"])
def test_bad_periods_are_refused(text: str) -> None:
    with pytest.raises(ReportError, match="YYYY-MM"):
        parse_period(text)


def test_every_format_renders(service: CollectorService) -> None:
    report = build_report(service.store, service.config, NOV)
    data = json.loads(render(report, "json"))
    assert data["period"] == "2025-11" and len(data["scopes"]) == 4
    text = render(report, "csv")
    assert text.splitlines()[0].startswith("period,kind,name,availability")
    assert "db01,nightly,3,30,0.1" in text
    md = render(report, "md")
    assert "| run group computer-operations | 98.333% |" in md
    html = render(report, "html")
    assert html.startswith("<!DOCTYPE html>")
    for chart in ("chart-calls", "chart-ttr", "chart-backups"):
        assert f'id="{chart}"' in html


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


def test_report_command(
    tmp_path: Path, service: CollectorService, capsys: pytest.CaptureFixture[str]
) -> None:
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
    november = ["report", "--config", str(config), "--period", "2025-11"]
    assert main([*november, "--group", CO, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scopes"][0]["missed_response"] == 2
    out = tmp_path / "report.html"
    assert main([*november, "--format", "html", "--output", str(out)]) == 0
    assert 'id="chart-backups"' in out.read_text()
    assert main(["report", "--config", str(config), "--period", "2026-14"]) == 2
    assert "YYYY-MM" in capsys.readouterr().err
    assert main([*november, "--group", "nope"]) == 2
    assert main(["report", "--data-dir", str(tmp_path / "none"), "--period", "2025-11"]) == 1
    assert "no collector store" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_acknowledgements_seen_in_a_help_desk_count(
    make_service: Callable[..., CollectorService],
) -> None:
    from collector.store.records import CallLink

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
            service.store, "db01", "backup_age", CO, day(3), acked=None, resolved=day(3, 2)
        )
        service.store.save_link(CallLink(call_id, "desk", "T-1", acknowledged_at=day(3) + 900))
    (co,) = build_report(service.store, service.config, NOV, CO).scopes
    assert (co.acknowledged, co.tta_mean_seconds, co.missed_response) == (1, 900.0, 0)
