"""Services (issue 24): states worked out from rule states at each tick, with windows and
dependencies; on /metrics, in the API and in `runwatch services`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from checks.schema import Report
from collector.api.application import create_app
from collector.app import CollectorService
from tests.helpers import FS_RULE, FakeClock, Reporter

MakeService = Callable[..., CollectorService]
FAST_FS = {**FS_RULE, "for": "0s"}  # warning 0.85, critical 0.95, clear 0.80
HTTP_RULE = {
    "name": "http_failing",
    "metric": "http_errors_ratio",
    "critical": 0.5,
    "owner": "computer-operations",
}

# A small organisation: the web shop needs one of its two web servers, and the database.
SERVICES = {
    "database": {
        "owner": "systems-administration",
        "title": "Database",
        "components": [{"name": "database server", "hosts": ["db01"]}],
    },
    "web-shop": {
        "owner": "computer-operations",
        "title": "Web shop",
        "description": "Where customers order.",
        "public": True,
        "components": [
            {"name": "web servers", "hosts": ["web*"], "rules": ["http_failing"], "need": "any"}
        ],
        "depends_on": ["database"],
    },
    "payroll": {
        "owner": "systems-administration",
        "title": "Payroll",
        "components": [{"labels": {"role": "payroll"}}],
    },
}


def labelled(report: Report, **labels: str) -> Report:
    return msgspec.structs.replace(report, labels=labels)


class Fleet:
    """db01, web01, web02 and pay01 (label role=payroll), each reporting its disk and its web
    error ratio."""

    def __init__(self, service: CollectorService, clock: FakeClock) -> None:
        self.service = service
        self.clock = clock
        self.reporters = {h: Reporter(h, clock) for h in ("db01", "web01", "web02", "pay01")}
        self.values: dict[str, tuple[float, float]] = dict.fromkeys(self.reporters, (0.5, 0.0))

    def set(self, host: str, disk: float | None = None, http: float | None = None) -> None:
        old = self.values[host]
        self.values[host] = (old[0] if disk is None else disk, old[1] if http is None else http)
        self.send(host)

    def send(self, host: str) -> None:
        reporter = self.reporters[host]
        disk, http = self.values[host]
        report = reporter.report({"fs_used_ratio": disk, "http_errors_ratio": http})
        if host == "pay01":
            report = labelled(report, role="payroll")
        self.service.ingest(host, report)

    def all_report(self) -> None:
        for host in self.reporters:
            self.send(host)

    def states(self) -> dict[str, str]:
        self.service.tick()
        return {s["service"]: s["state"] for s in self.service.services()}


@pytest.fixture
def fleet(make_service: MakeService, clock: FakeClock) -> Fleet:
    service = make_service([FAST_FS, HTTP_RULE], services=SERVICES)
    fleet = Fleet(service, clock)
    fleet.all_report()
    return fleet


OPERATIONAL = {"database": "operational", "web-shop": "operational", "payroll": "operational"}


def test_all_well_is_operational(fleet: Fleet) -> None:
    assert fleet.states() == OPERATIONAL


def test_one_of_two_web_servers_down_is_degraded_both_an_outage(fleet: Fleet) -> None:
    fleet.set("web01", http=0.9)
    assert fleet.states()["web-shop"] == "degraded"
    fleet.set("web02", http=0.9)
    assert fleet.states()["web-shop"] == "outage"
    fleet.set("web01", http=0.0)
    fleet.set("web02", http=0.0)
    assert fleet.states() == OPERATIONAL


def test_rules_the_component_does_not_name_leave_it_alone(fleet: Fleet) -> None:
    """The web servers' component watches http_failing only: a full disk on both is not the
    web shop's problem (the database watches every rule)."""
    fleet.set("web01", disk=0.99)
    fleet.set("web02", disk=0.99)
    assert fleet.states()["web-shop"] == "operational"
    fleet.set("db01", disk=0.90)
    assert fleet.states() == {**OPERATIONAL, "database": "degraded", "web-shop": "degraded"}


def test_a_dependency_outage_is_an_outage_of_what_rests_on_it(fleet: Fleet) -> None:
    fleet.set("db01", disk=0.99)
    states = fleet.states()
    assert states == {**OPERATIONAL, "database": "outage", "web-shop": "outage"}
    (shop,) = fleet.service.services("web-shop")
    assert shop["depends_on"] == [{"service": "database", "state": "outage"}]
    assert shop["components"][0]["state"] == "operational"


def test_a_silent_host_is_down_in_its_component(fleet: Fleet, clock: FakeClock) -> None:
    """pay01 stops reporting: past 3 intervals its host_stale state makes payroll an outage."""
    clock.advance(4 * 60)
    for host in ("db01", "web01", "web02"):
        fleet.send(host)
    states = fleet.states()
    assert states["payroll"] == "outage"
    (payroll,) = fleet.service.services("payroll")
    (problem,) = payroll["components"][0]["problems"]
    assert (problem["host"], problem["rule"], problem["state"]) == ("pay01", "host_stale", "STALE")


def test_a_component_that_matches_no_host_is_an_outage(
    make_service: MakeService, clock: FakeClock
) -> None:
    services = {
        "mail": {"owner": "systems-administration", "components": [{"hosts": ["mail*"]}]},
    }
    service = make_service([FAST_FS], services=services)
    Fleet(service, clock).all_report()
    service.tick()
    (mail,) = service.services()
    assert mail["state"] == "outage"
    assert mail["components"][0]["members"] == 0


def test_a_window_over_the_problem_is_maintenance(fleet: Fleet) -> None:
    """A silence over db01's disk: the database and the shop that rests on it show
    maintenance, not an outage; when the silence ends, the outage shows."""
    silence = fleet.service.add_silence(
        "alice", host="db01", rule="filesystem_*", duration=3600, reason="new disks"
    )
    fleet.set("db01", disk=0.99)
    assert fleet.states() == {**OPERATIONAL, "database": "maintenance", "web-shop": "maintenance"}
    (database,) = fleet.service.services("database")
    assert database["components"][0]["problems"][0]["planned"] is True
    fleet.service.end_silence(silence.id, "alice")
    assert fleet.states() == {**OPERATIONAL, "database": "outage", "web-shop": "outage"}


def test_a_window_does_not_hide_a_problem_it_does_not_cover(fleet: Fleet) -> None:
    fleet.service.add_silence("alice", host="web01", rule="*", duration=3600, reason="patching")
    fleet.set("web01", http=0.9)
    assert fleet.states()["web-shop"] == "maintenance"
    fleet.set("web02", http=0.9)
    # web02 is down outside any window: one of two serves (web01 only in the window's eyes).
    assert fleet.states()["web-shop"] == "outage"


def test_since_is_the_tick_that_saw_the_state_change(fleet: Fleet, clock: FakeClock) -> None:
    fleet.states()
    began = clock()
    clock.advance(120)
    fleet.all_report()
    fleet.set("web01", http=0.9)
    fleet.states()
    changed = clock()
    clock.advance(60)
    fleet.all_report()
    fleet.states()
    by_name = {s["service"]: s for s in fleet.service.services()}
    assert by_name["web-shop"]["since"] == changed
    assert by_name["database"]["since"] == began


def test_retired_host_leaves_its_component(fleet: Fleet) -> None:
    fleet.set("web02", http=0.9)
    assert fleet.states()["web-shop"] == "degraded"
    fleet.service.retire_host("web02", "alice", "decommissioned")
    assert fleet.states()["web-shop"] == "operational"
    (shop,) = fleet.service.services("web-shop")
    assert shop["components"][0]["members"] == 1


def test_affected_names_the_services_a_rule_on_a_host_bears_on(fleet: Fleet) -> None:
    fleet.states()
    watch = fleet.service.service_watch
    assert watch.affected("db01", "filesystem_full") == ["database", "web-shop"]
    assert watch.affected("web01", "http_failing") == ["web-shop"]
    assert watch.affected("web01", "filesystem_full") == []
    assert watch.affected("pay01", "host_stale") == ["payroll"]


# -- exposed ----------------------------------------------------------------------------------


def service_samples(service: CollectorService) -> dict[tuple[str, str], float]:
    text = service.metrics.render().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("runwatch_service_state{"):
            labels, value = line.rsplit(" ", 1)
            pairs = dict(
                p.split("=", 1) for p in labels[len("runwatch_service_state{") : -1].split(",")
            )
            out[(pairs["service"].strip('"'), pairs["state"].strip('"'))] = float(value)
    return out


def test_metrics_state_set_per_service(fleet: Fleet) -> None:
    fleet.set("web01", http=0.9)
    fleet.states()
    samples = service_samples(fleet.service)
    assert samples[("web-shop", "degraded")] == 1.0
    assert samples[("web-shop", "operational")] == 0.0
    assert samples[("database", "operational")] == 1.0
    assert len(samples) == 3 * 4  # every state of every service, always
    text = fleet.service.metrics.render().decode()
    assert "# TYPE runwatch_service_state gauge" in text
    assert (
        'runwatch_service_info{service="web-shop",title="Web shop",'
        'owner="computer-operations",public="true"} 1.0'
    ) in text


def test_a_measurement_cannot_take_the_service_families_names(
    make_service: MakeService, clock: FakeClock
) -> None:
    """The families are declared without services too, so an agent's `service_state`
    measurement is held back rather than mixed into runwatch_service_state."""
    service = make_service([FAST_FS])
    reporter = Reporter("web01", clock)
    service.ingest("web01", reporter.report({"service_state": 1.0}))
    text = service.metrics.render().decode()
    assert text.count("# TYPE runwatch_service_state gauge") == 1
    assert 'runwatch_service_state{host="web01"' not in text


def test_api_lists_services_and_one_service(fleet: Fleet) -> None:
    fleet.set("web01", http=0.9)
    fleet.states()
    with TestClient(app=create_app(fleet.service)) as client:
        listing = client.get("/api/v1/services").json()
        one = client.get("/api/v1/services/web-shop")
        missing = client.get("/api/v1/services/nope")
    assert [s["service"] for s in listing] == ["database", "payroll", "web-shop"]
    assert one.status_code == 200
    shop = one.json()
    assert shop["title"] == "Web shop" and shop["public"] is True
    assert shop["owner"] == "computer-operations"
    assert shop["description"] == "Where customers order."
    assert shop["state"] == "degraded"
    component = shop["components"][0]
    assert component | {"problems": None} == {
        "index": 1,
        "name": "web servers",
        "service": None,
        "need": 1,
        "state": "degraded",
        "members": 2,
        "down": 1,
        "degraded": 0,
        "problems": None,
    }
    assert component["problems"] == [
        {
            "host": "web01",
            "rule": "http_failing",
            "labels": {"mountpoint": "/"},
            "state": "CRITICAL",
            "planned": False,
        }
    ]
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


def test_services_before_the_first_tick_are_worked_out_on_demand(fleet: Fleet) -> None:
    assert fleet.service.service_watch.evaluated_at is None
    assert {s["service"]: s["state"] for s in fleet.service.services()} == OPERATIONAL


def services_json(service: CollectorService) -> list[dict[str, Any]]:
    return json.loads(json.dumps(service.services()))


# -- calls carry their services -----------------------------------------------------------------


def open_call(service: CollectorService, host: str, rule: str) -> Any:
    (call,) = [c for c in service.calls("open", None) if c.host == host and c.rule == rule]
    return call


def test_a_call_names_the_services_it_affects_and_says_so_first(fleet: Fleet) -> None:
    """The state is the one the problem brings, even before the next tick sees it."""
    fleet.states()
    fleet.set("web01", http=0.9)
    web = open_call(fleet.service, "web01", "http_failing")
    assert web.services == ["web-shop"]
    assert web.description.startswith("Web shop: degraded\n\nHost:        web01\n")

    fleet.set("db01", disk=0.99)
    db = open_call(fleet.service, "db01", "filesystem_full")
    assert db.services == ["database", "web-shop"]
    assert db.description.startswith("Database: outage\nWeb shop: outage\n\n")

    with TestClient(app=create_app(fleet.service)) as client:
        shown = client.get(f"/api/v1/calls/{db.id}").json()
    assert shown["services"] == ["database", "web-shop"]


def test_a_call_of_no_service_says_nothing_of_services(fleet: Fleet) -> None:
    fleet.set("web01", disk=0.99)  # the web servers' component does not watch the disk
    call = open_call(fleet.service, "web01", "filesystem_full")
    assert call.services == []
    assert call.description.startswith("Host:        web01\n")


def test_a_resolved_call_keeps_its_services_and_says_how_they_are(fleet: Fleet) -> None:
    """Even when the call opens before any tick has worked the services out."""
    fleet.set("db01", disk=0.99)
    call = open_call(fleet.service, "db01", "filesystem_full")
    assert call.services == ["database", "web-shop"]
    fleet.states()
    fleet.set("db01", disk=0.5)
    resolved = fleet.service.store.get_call(call.id)
    assert resolved is not None and resolved.status == "resolved"
    assert resolved.services == ["database", "web-shop"]
    assert resolved.description.startswith(
        "Database: operational\nWeb shop: operational\n\nRecovered:"
    )


def test_no_services_configured_leaves_calls_as_they_were(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FAST_FS])
    reporter = Reporter("web01", clock)
    service.ingest("web01", reporter.report({"fs_used_ratio": 0.99}))
    (call,) = service.calls("open", None)
    assert call.services == []
    assert call.description.startswith("Host:        web01\n")


# -- each service's state changes are stored -----------------------------------------------------


def test_state_changes_are_stored_once_each(fleet: Fleet, clock: FakeClock) -> None:
    began = clock()
    fleet.states()
    fleet.states()  # nothing changed: nothing more stored
    clock.advance(60)
    fleet.all_report()
    fleet.set("web01", http=0.9)
    fleet.states()
    store = fleet.service.store
    assert store.service_changes(0, clock() + 1) == [
        ("database", began, 0),
        ("payroll", began, 0),
        ("web-shop", began, 0),
        ("web-shop", clock(), 2),
    ]
    assert store.last_service_states() == {
        "database": (began, 0),
        "payroll": (began, 0),
        "web-shop": (clock(), 2),
    }
    assert store.last_service_states(before=clock())["web-shop"] == (began, 0)


def test_a_state_that_holds_across_a_restart_keeps_its_since(
    make_service: MakeService, clock: FakeClock
) -> None:
    first = make_service([FAST_FS, HTTP_RULE], services=SERVICES)
    fleet = Fleet(first, clock)
    fleet.all_report()
    fleet.set("web01", http=0.9)
    began = clock()
    fleet.states()
    first.close()
    clock.advance(120)
    again = make_service([FAST_FS, HTTP_RULE], services=SERVICES)
    fleet.service = again
    fleet.all_report()
    again.tick()
    by_name = {s["service"]: s for s in again.services()}
    assert by_name["web-shop"]["state"] == "degraded"
    assert by_name["web-shop"]["since"] == began
    assert [c for c in again.store.service_changes(0, clock() + 1) if c[0] == "web-shop"] == [
        ("web-shop", began, 2)
    ]
