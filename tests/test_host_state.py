"""A host's state and its rule states as people read them: a real "since" for every rule state
(never 1970), and a host's state that is its worst open problem, the same on the overview, the
host page, its calls, the API and /metrics."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import add_token
from collector.evaluation.rules import Severity
from collector.view.fleet import HOST_RANK
from tests.helpers import FS_RULE, FakeClock, Reporter
from tests.helpers.reports import measurement

MakeService = Callable[..., CollectorService]
FAST_FS = {**FS_RULE, "for": "0s"}
FLAPPING_FS = {**FAST_FS, "flapping": {"changes": 3, "window": "10m"}}


def feed(service: CollectorService, reporter: Reporter, value: float) -> None:
    service.ingest(reporter.host, reporter.report({"fs_used_ratio": value}))


@pytest.fixture
def console(make_service: MakeService) -> Iterator[Callable[[CollectorService], TestClient[Any]]]:
    """A signed-in console client for a service."""
    clients: list[TestClient[Any]] = []

    def open_console(service: CollectorService) -> TestClient[Any]:
        token = add_token(service.config.operator_tokens_file, "alice")
        client = TestClient(create_app(service))
        client.__enter__()
        clients.append(client)
        answer = client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        assert answer.status_code == 303
        return client

    yield open_console
    for client in clients:
        client.__exit__(None, None, None)


def rule_state_row(page: str, rule: str) -> str:
    """The host page's row of the rule-state table for `rule`."""
    table = page.split('id="rule-states"', 1)[1].split("</table>", 1)[0]
    (row,) = [r for r in table.split("<tr>") if f"<td>{rule}</td>" in r]
    return row


# -- since ------------------------------------------------------------------------------------


def test_a_rule_that_never_changed_holds_since_the_first_report(
    make_service: MakeService, clock: FakeClock, console: Any
) -> None:
    service = make_service([FAST_FS])
    web = Reporter("web01", clock)
    first = clock()
    feed(service, web, 0.5)
    clock.advance(600)
    feed(service, web, 0.6)

    ((key, state),) = service.fleet.states.items()
    assert state.changed_at == first, "a new state starts at its first report, not at 0"
    (row,) = service.reader.rule_states("web01")
    assert (row["state"], row["since"], row["since_first_report"]) == ("OK", first, True)

    page = console(service).get("/hosts/web01").text
    cells = rule_state_row(page, "filesystem_full")
    assert "1970" not in page
    assert "since the first report" in cells
    assert 'datetime="2027-01-15T08:00:00Z"' in cells, "the absolute time is there on hover"
    assert "60.0%" in cells, "the value reads in its unit"

    # States persist: a restart reads the same "since" from the store.
    service.close()
    again = make_service([FAST_FS])
    assert again.fleet.states[key].changed_at == first


def test_a_rule_that_changed_says_when(
    make_service: MakeService, clock: FakeClock, console: Any
) -> None:
    service = make_service([FAST_FS])
    web = Reporter("web01", clock)
    feed(service, web, 0.5)
    clock.advance(3600)
    changed = clock()
    feed(service, web, 0.9)
    clock.advance(180)
    feed(service, web, 0.91)

    (row,) = service.hosts("web01")[0]["problems"]
    assert (row["state"], row["since"], row["since_first_report"]) == ("WARNING", changed, False)
    assert row["unit"] == "ratio" and row["metric"] == "fs_used_ratio"
    client = console(service)
    assert re.search(
        r'state-warning" title="WARNING">filesystem_full 91\.0%</span>', client.get("/").text
    )
    cells = rule_state_row(client.get("/hosts/web01").text, "filesystem_full")
    assert re.search(r'<time datetime="[^"]+" title="[^"]+ UTC">3 min ago</time>', cells), cells
    assert "91.0%" in cells


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_stored_state_that_never_changed_gets_its_hosts_first_report(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A store written before the fix kept such states at changed_at 0 ("since 1970")."""
    from collector.store import postgresql as pg_store
    from collector.store import sqlite as sqlite_store

    def open_store() -> Any:
        if backend == "sqlite":
            return sqlite_store.SQLiteStore(tmp_path / "runwatch.db")
        return pg_store.PostgresStore(dsn)

    dsn = request.getfixturevalue("pg_dsn") if backend == "postgresql" else ""
    # The collector before the fix: every migration up to the one that fixes such states.
    sqlite_step = next(
        k
        for k, steps in sqlite_store.MIGRATIONS.items()
        if sqlite_store._SINCE_FIRST_REPORT in steps
    )
    pg_step = next(i for i, sql in enumerate(pg_store.MIGRATIONS) if "changed_at = 0" in sql)
    with monkeypatch.context() as older:
        older.setattr(
            sqlite_store,
            "MIGRATIONS",
            {k: v for k, v in sqlite_store.MIGRATIONS.items() if k < sqlite_step},
        )
        older.setattr(sqlite_store, "SCHEMA_VERSION", sqlite_step - 1)
        older.setattr(pg_store, "MIGRATIONS", pg_store.MIGRATIONS[:pg_step])
        store = open_store()
        rows = [
            (
                "INSERT INTO hosts (host, first_seen, last_report_at, interval_seconds, "
                "agent_version, last_seq, boot_id) VALUES ('web01', 1700000000, 1700009000, 60, "
                "'t', 1, 'b')"
            ),
            (
                "INSERT INTO rule_states (rule, host, labels_key, severity, call_severity, "
                "changed_at) VALUES ('filesystem_full', 'web01', '{}', 0, 0, 0)"
            ),
            (
                "INSERT INTO rule_states (rule, host, labels_key, severity, call_severity, "
                "changed_at) VALUES ('load_high', 'web01', '{}', 1, 0, 1700005000)"
            ),
        ]
        run_sql(store, backend, rows)
        store.close()
    store = open_store()
    try:
        found = {r.rule: r.state.changed_at for r in store.load_rule_states()}
    finally:
        store.close()
    assert found == {"filesystem_full": 1700000000, "load_high": 1700005000}
    if backend == "sqlite":
        check = sqlite3.connect(tmp_path / "runwatch.db")
        assert check.execute("PRAGMA user_version").fetchone()[0] == sqlite_store.SCHEMA_VERSION
        check.close()


def run_sql(store: Any, backend: str, statements: list[str]) -> None:
    if backend == "sqlite":
        for statement in statements:
            store._db.execute(statement)
    else:
        for statement in statements:
            store._db.execute(statement.encode())
        store._db.commit()


# -- a host's state is its worst open problem ---------------------------------------------------


def host_badges(client: TestClient[Any]) -> tuple[str, str, list[str]]:
    """The host's state on the overview and on its page, and the severities of its calls."""
    overview = client.get("/").text
    on_overview = re.search(
        r'href="/hosts/web01">web01</a></td>\s*<td><span class="badge state-\w+">(\w+)</span>',
        overview,
    )
    page = client.get("/hosts/web01").text
    on_page = re.search(r'id="host-state">(\w+)<', page)
    assert on_overview and on_page
    calls = page.split('id="host-calls"', 1)[1].split("</table>", 1)[0]
    return on_overview[1], on_page[1], re.findall(r'class="badge state-\w+">(\w+)<', calls)


def test_a_flapping_host_reads_as_its_critical_call_everywhere(
    make_service: MakeService, clock: FakeClock, console: Any
) -> None:
    service = make_service([FLAPPING_FS])
    web = Reporter("web01", clock)
    for value in (0.9, 0.5, 0.9, 0.5, 0.97, 0.5, 0.9):
        feed(service, web, value)
        clock.advance(60)
    (call,) = service.calls("open", None)
    (state,) = service.fleet.states.values()
    assert (call.severity, state.severity.name) == ("CRITICAL", "WARNING"), "the mismatch case"

    assert_host_reads(service, console(service), "CRITICAL")
    (problem,) = service.hosts("web01")[0]["problems"]
    assert (problem["state"], problem["severity"], problem["call_state"]) == (
        "WARNING",
        "CRITICAL",
        "CRITICAL",
    )


def test_a_silenced_step_keeps_the_host_at_its_calls_severity(
    make_service: MakeService, clock: FakeClock, console: Any
) -> None:
    service = make_service([FAST_FS])
    web = Reporter("web01", clock)
    feed(service, web, 0.97)
    service.add_silence("erin", host="web01", rule="*", duration=3600, reason="move")
    clock.advance(60)
    feed(service, web, 0.9)  # WARNING now, but the silence leaves the CRITICAL call as it was
    (call,) = service.calls("open", None)
    assert call.severity == "CRITICAL"

    assert_host_reads(service, console(service), "CRITICAL")


def test_a_critical_problem_outweighs_a_check_that_cannot_measure(
    make_service: MakeService, clock: FakeClock, console: Any
) -> None:
    """The overview ranks CRITICAL above UNKNOWN: so does the host's state."""
    load = {"name": "load_high", "metric": "load1", "warning": 4, "critical": 8, "for": "0s",
            "owner": "systems-administration"}  # fmt: skip
    service = make_service([FAST_FS, load])
    web = Reporter("web01", clock)
    now = clock()
    service.ingest(
        "web01",
        web.compose(
            [measurement("load", "load1", 0.5, now), measurement("filesystem", "fs_used_ratio",
             0.97, now, unit="ratio", labels={"mountpoint": "/"})],
            [web.run("load"), web.run("filesystem")],
        ),
    )  # fmt: skip
    clock.advance(60)
    service.ingest(
        "web01",
        web.compose(
            [measurement("filesystem", "fs_used_ratio", 0.97, clock(), unit="ratio",
             labels={"mountpoint": "/"})],
            [web.run("load", error="permission denied"), web.run("filesystem")],
        ),
    )  # fmt: skip
    states = {key[0]: state.severity.name for key, state in service.fleet.states.items()}
    assert states == {"filesystem_full": "CRITICAL", "load_high": "UNKNOWN"}

    assert_host_reads(service, console(service), "CRITICAL")


def test_an_ok_host_without_open_calls_reads_ok(
    make_service: MakeService, clock: FakeClock, console: Any
) -> None:
    service = make_service([FAST_FS])
    web = Reporter("web01", clock)
    feed(service, web, 0.97)
    clock.advance(60)
    feed(service, web, 0.5)
    assert service.calls("open", None) == []
    assert_host_reads(service, console(service), "OK")


def assert_host_reads(service: CollectorService, client: TestClient[Any], expected: str) -> None:
    overview, page, calls = host_badges(client)
    assert (overview, page) == (expected, expected)
    open_severities = [c.severity for c in service.calls("open", None) if c.host == "web01"]
    worst_call = max(open_severities, default="OK", key=lambda name: HOST_RANK[Severity[name]])
    assert HOST_RANK[Severity[worst_call]] <= HOST_RANK[Severity[expected]]
    assert set(open_severities) <= set(calls)
    assert service.hosts("web01")[0]["state"] == expected
    assert service.fleet.worst_by_host().get("web01", Severity.OK).name == expected
    assert service.fleet.worst_of("web01").name == expected
    assert service.hosts()[0]["state"] == expected
    text = service.metrics.render().decode()
    assert f'runwatch_host_state{{host="web01",state="{expected}"}} 1.0' in text


def test_a_call_page_says_where_its_rule_stands_now(
    make_service: MakeService, clock: FakeClock, console: Any
) -> None:
    service = make_service([FLAPPING_FS])
    web = Reporter("web01", clock)
    for value in (0.9, 0.5, 0.9, 0.5, 0.97, 0.5, 0.9):
        feed(service, web, value)
        clock.advance(60)
    (call,) = service.calls("open", None)

    page = console(service).get(f"/calls/{call.id}").text

    now = re.search(r'<p id="call-now">(.*?)</p>', page, re.DOTALL)
    assert now, page
    assert re.fullmatch(
        r'Now: <span class="badge state-warning">WARNING</span> at 90\.0%, changed '
        r'<time datetime="\S+Z" title="\S+ \S+ UTC">1 min ago</time>, flapping\.',
        now[1],
    ), now[1]
    opened = re.search(r"opened (<time [^>]*>[^<]*</time>)", page)
    assert opened and "7 min ago" in opened[1], "the call opened at the first report"
