"""Service-level calls (issue 24): an outage of a service opens one call for its owner group,
linked both ways to the calls of its causes, brought up to date as they change and resolved
when the service is operational again; exactly one per outage across restarts and replicas,
none for a service in maintenance. On both stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from checks.settings import ConfigError
from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import add_token
from collector.incidents.calls import Call
from tests.helpers import FakeClock
from tests.helpers.config import collector_config
from tests.test_services import FAST_FS, HTTP_RULE, Fleet, MakeService

SERVICES: dict[str, Any] = {
    "database": {
        "owner": "systems-administration",
        "title": "Database",
        "components": [{"name": "database server", "hosts": ["db01"]}],
    },
    "web-shop": {
        "owner": "systems-administration",
        "title": "Web shop",
        "description": "Where customers order.",
        "components": [
            {"name": "web servers", "hosts": ["web*"], "rules": ["http_failing"], "need": "any"}
        ],
        "depends_on": ["database"],
    },
    "payroll": {
        "owner": "systems-administration",
        "title": "Payroll",
        "components": [{"labels": {"role": "payroll"}}],
        "call": "degraded",
    },
}


@pytest.fixture
def fleet(make_service: MakeService, clock: FakeClock) -> Fleet:
    service = make_service([FAST_FS, HTTP_RULE], services=SERVICES)
    fleet = Fleet(service, clock)
    fleet.all_report()
    fleet.states()
    return fleet


def service_calls(service: CollectorService, status: str | None = "open") -> dict[str, Call]:
    """The service-level calls, by service."""
    found = [c for c in service.store.list_calls(status, None, 1000) if c.rule == "service_level"]
    by_service = {c.labels["service"]: c for c in found}
    assert len(by_service) == len(found), "one call per service"
    return by_service


def call_of(service: CollectorService, host: str, rule: str) -> Call:
    (call,) = [c for c in service.calls("open", None) if c.host == host and c.rule == rule]
    return call


def events(service: CollectorService, call_id: int) -> list[tuple[str, str]]:
    return [(e.kind, e.text) for e in service.store.call_events(call_id)]


def test_an_outage_opens_one_call_for_the_owner_naming_its_causes(fleet: Fleet) -> None:
    fleet.set("db01", disk=0.99)
    disk = call_of(fleet.service, "db01", "filesystem_full")
    fleet.states()
    calls = service_calls(fleet.service)
    assert sorted(calls) == ["database", "web-shop"]  # the shop rests on the database
    database, shop = calls["database"], calls["web-shop"]
    assert (database.group, database.host, database.severity) == (
        "systems-administration",
        "*",
        "CRITICAL",
    )
    assert database.summary == "Database: outage"
    assert database.services == ["database"]
    assert database.description.splitlines()[0] == (
        f"Database: outage — caused by: db01 filesystem_full {{mountpoint=/}} CRITICAL "
        f"(call #{disk.id})"
    )
    assert f"- db01 filesystem_full {{mountpoint=/}} CRITICAL (call #{disk.id})" in (
        database.description.splitlines()
    )
    assert shop.description.splitlines()[0] == (
        f"Web shop: outage — caused by: service Database: outage (call #{database.id})"
    )
    assert "For users:   Where customers order." in shop.description.splitlines()

    # Linked both ways: in the store, and the cause's call says so in its history (its ticket).
    store = fleet.service.store
    assert store.service_call_parts(database.id) == [disk.id]
    assert store.service_call_parts(shop.id) == [database.id]
    assert store.service_calls_of(disk.id) == [database.id]
    kind, text = events(fleet.service, disk.id)[-1]
    assert kind == "comment"
    assert text.startswith(
        f"Database: outage. This problem is one of its causes: service call #{database.id}"
    )


def test_the_same_state_at_the_next_ticks_adds_nothing(fleet: Fleet, clock: FakeClock) -> None:
    fleet.set("db01", disk=0.99)
    fleet.states()
    database = service_calls(fleet.service)["database"]
    before = events(fleet.service, database.id)
    for _ in range(3):
        clock.advance(60)
        fleet.all_report()
        fleet.states()
    assert events(fleet.service, database.id) == before
    assert service_calls(fleet.service)["database"].id == database.id


def test_degraded_opens_no_call_by_default_and_the_call_follows_the_state(
    fleet: Fleet, clock: FakeClock
) -> None:
    fleet.set("web01", http=0.9)
    fleet.states()
    assert service_calls(fleet.service) == {}  # degraded: the web shop's call is `outage`

    fleet.set("web02", http=0.9)
    fleet.states()
    shop = service_calls(fleet.service)["web-shop"]
    web01 = call_of(fleet.service, "web01", "http_failing")
    web02 = call_of(fleet.service, "web02", "http_failing")
    assert shop.description.splitlines()[0] == (
        "Web shop: outage — caused by: "
        f"web01 http_failing {{mountpoint=/}} CRITICAL (call #{web01.id}), "
        f"web02 http_failing {{mountpoint=/}} CRITICAL (call #{web02.id})"
    )

    clock.advance(60)
    fleet.set("web02", http=0.0)  # one of two serves again: degraded, the call stays open
    fleet.states()
    shop = service_calls(fleet.service)["web-shop"]
    assert (shop.summary, shop.severity, shop.status) == ("Web shop: degraded", "WARNING", "open")
    kind, text = events(fleet.service, shop.id)[-1]
    assert kind == "severity"
    assert text.startswith(
        f"Web shop: degraded — caused by: web01 http_failing {{mountpoint=/}} CRITICAL "
        f"(call #{web01.id}). Severity changed from CRITICAL to WARNING"
    )

    clock.advance(60)
    fleet.set("web01", http=0.0)
    fleet.states()
    assert service_calls(fleet.service) == {}
    resolved = fleet.service.store.get_call(shop.id)
    assert resolved is not None and resolved.status == "resolved"
    assert resolved.summary == "Web shop: operational"
    assert resolved.description.startswith(
        "Web shop: operational\n\nRecovered:   Web shop is operational again at "
    )
    kind, text = events(fleet.service, shop.id)[-1]
    assert kind == "resolved" and "after 2 min" in text
    assert fleet.service.store.service_call_parts(shop.id) == [web01.id, web02.id]


def test_new_causes_are_linked_and_told_as_they_come(fleet: Fleet) -> None:
    fleet.set("web01", http=0.9)
    fleet.set("web02", http=0.9)
    fleet.states()
    shop = service_calls(fleet.service)["web-shop"]
    fleet.set("db01", disk=0.99)
    disk = call_of(fleet.service, "db01", "filesystem_full")
    fleet.states()
    database = service_calls(fleet.service)["database"]
    kind, text = events(fleet.service, shop.id)[-1]
    assert kind == "comment"
    assert text.endswith(f"service Database: outage (call #{database.id})")
    assert fleet.service.store.service_call_parts(shop.id)[-1] == database.id
    assert fleet.service.store.service_calls_of(disk.id) == [database.id]


def test_call_degraded_opens_at_degraded_and_never_opens_none(
    make_service: MakeService, clock: FakeClock
) -> None:
    services = {**SERVICES, "database": {**SERVICES["database"], "call": "never"}}
    service = make_service([FAST_FS, HTTP_RULE], services=services)
    fleet = Fleet(service, clock)
    fleet.all_report()
    fleet.set("pay01", disk=0.90)  # WARNING: payroll degraded, and its call is `degraded`
    fleet.set("db01", disk=0.99)
    fleet.states()
    calls = service_calls(service)
    assert sorted(calls) == ["payroll", "web-shop"]  # the database: never
    assert calls["payroll"].summary == "Payroll: degraded"
    assert calls["payroll"].severity == "WARNING"


def test_a_window_over_the_outage_opens_no_call(fleet: Fleet) -> None:
    fleet.service.add_silence(
        "alice", host="db01", rule="filesystem_*", duration=3600, reason="new disks"
    )
    fleet.set("db01", disk=0.99)
    assert fleet.states()["database"] == "maintenance"
    assert service_calls(fleet.service) == {}


def test_a_recurrence_within_reopen_within_reopens_the_same_call(
    fleet: Fleet, clock: FakeClock
) -> None:
    fleet.set("db01", disk=0.99)
    fleet.states()
    first = service_calls(fleet.service)["database"]
    clock.advance(60)
    fleet.set("db01", disk=0.5)
    fleet.states()
    assert service_calls(fleet.service) == {}
    clock.advance(600)
    fleet.all_report()
    fleet.set("db01", disk=0.99)
    fleet.states()
    again = service_calls(fleet.service)["database"]
    assert again.id == first.id and again.reopened == 1
    kind, text = events(fleet.service, again.id)[-1]
    assert kind == "reopened" and "Out again within 1 h" in text
    assert len(service_calls(fleet.service, None)) == 2  # the database's and the shop's


def test_one_call_across_a_restart(make_service: MakeService, clock: FakeClock) -> None:
    first = make_service([FAST_FS, HTTP_RULE], services=SERVICES)
    fleet = Fleet(first, clock)
    fleet.all_report()
    fleet.set("db01", disk=0.99)
    fleet.states()
    before = service_calls(first)
    first.close()
    clock.advance(60)
    again = make_service([FAST_FS, HTTP_RULE], services=SERVICES)
    fleet.service = again
    fleet.all_report()
    fleet.states()
    assert {k: c.id for k, c in service_calls(again).items()} == {
        k: c.id for k, c in before.items()
    }
    assert len(service_calls(again, None)) == 2
    kinds = [k for k, _ in events(again, before["database"].id)]
    assert kinds.count("opened") == 1


def test_a_service_no_longer_configured_has_its_call_resolved(
    make_service: MakeService, clock: FakeClock
) -> None:
    first = make_service([FAST_FS, HTTP_RULE], services=SERVICES)
    fleet = Fleet(first, clock)
    fleet.all_report()
    fleet.set("db01", disk=0.99)
    fleet.states()
    shop = service_calls(first)["web-shop"]
    first.close()
    fewer = {k: v for k, v in SERVICES.items() if k != "web-shop"}
    again = make_service([FAST_FS, HTTP_RULE], services=fewer)
    fleet.service = again
    fleet.all_report()
    fleet.states()
    assert sorted(service_calls(again)) == ["database"]
    kind, text = events(again, shop.id)[-1]
    assert (kind, text) == ("resolved", "Web shop is no longer a configured service.")


def test_the_owner_groups_comment_policy_leaves_it_open_once_told(
    make_service: MakeService, clock: FakeClock
) -> None:
    services = {**SERVICES, "database": {**SERVICES["database"], "owner": "computer-operations"}}
    service = make_service([FAST_FS, HTTP_RULE], services=services)
    fleet = Fleet(service, clock)
    fleet.all_report()
    fleet.set("db01", disk=0.99)
    fleet.states()
    database = service_calls(service)["database"]
    fleet.set("db01", disk=0.5)
    fleet.states()
    fleet.states()
    still = service_calls(service)["database"]
    assert still.id == database.id and still.summary == "Database: operational"
    told = [t for k, t in events(service, database.id) if "Left open" in t]
    assert len(told) == 1
    fleet.set("db01", disk=0.99)
    fleet.states()
    assert service_calls(service)["database"].summary == "Database: outage"


def test_two_replicas_on_one_database_open_one_call(
    pg_dsn: str, tmp_path: Path, clock: FakeClock
) -> None:
    config = collector_config(
        tmp_path,
        [FAST_FS, HTTP_RULE],
        services=SERVICES,
        store={"backend": "postgresql", "dsn": pg_dsn},
    )
    replicas = [CollectorService(config, clock=clock) for _ in range(2)]
    try:
        fleets = [Fleet(r, clock) for r in replicas]
        fleets[0].all_report()
        fleets[1].all_report()
        fleets[0].set("db01", disk=0.99)
        for _ in range(2):
            for f in fleets:
                f.service.tick()
        for replica in replicas:
            assert sorted(service_calls(replica)) == ["database", "web-shop"]
            assert len(service_calls(replica, None)) == 2
    finally:
        for replica in replicas:
            replica.close()


def test_console_pages_link_the_service_call_and_its_causes(fleet: Fleet) -> None:
    fleet.set("db01", disk=0.99)
    disk = call_of(fleet.service, "db01", "filesystem_full")
    fleet.states()
    database = service_calls(fleet.service)["database"]
    shop = service_calls(fleet.service)["web-shop"]
    token = add_token(fleet.service.config.operator_tokens_file, "rob")
    with TestClient(app=create_app(fleet.service)) as client:
        client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        part = client.get(f"/calls/{disk.id}").text
        whole = client.get(f"/calls/{database.id}").text
        shown = client.get(f"/api/v1/calls/{database.id}").json()
    assert f'<a href="/calls/{database.id}">#{database.id} Database: outage</a>' in part
    assert f'<a href="/calls/{disk.id}">#{disk.id}' in whole
    assert shown["service_parts"] == [disk.id]
    assert shown["service_calls"] == [shop.id]  # the shop rests on the database


def test_a_call_level_that_is_not_known_is_refused(tmp_path: Path) -> None:
    bad = {**SERVICES, "payroll": {**SERVICES["payroll"], "call": "sometimes"}}
    with pytest.raises(ConfigError) as refused:
        collector_config(tmp_path, [FAST_FS, HTTP_RULE], services=bad)
    assert refused.value.path == "services -> payroll -> call"


def test_the_first_line_names_ten_causes_and_counts_the_rest() -> None:
    from collector.incidents.service_calls import Cause, headline
    from collector.services.state import ServiceState

    found = [Cause(f"web{i:02d} http_failing CRITICAL", 100 + i) for i in range(12)]
    found.append(Cause("service Database: outage", None))
    line = headline("Web shop", ServiceState.OUTAGE, found)
    assert line.startswith(
        "Web shop: outage — caused by: web00 http_failing CRITICAL (call #100), "
    )
    assert line.endswith("web09 http_failing CRITICAL (call #109), and 3 more")
    assert headline("Web shop", ServiceState.DEGRADED, []) == "Web shop: degraded"
