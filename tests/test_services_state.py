"""The pure side of services: member health, `need`, windows, dependencies, the membership
index; exact cases worked out by hand, then properties (hypothesis): more failures never make
a service healthier, a window never makes it worse, the index finds what matching each finds."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.evaluation.rules import Severity
from collector.services.config import ComponentConfig, ServiceConfig
from collector.services.model import ServiceModel
from collector.services.state import (
    Health,
    ProblemFact,
    ServiceState,
    Verdict,
    combine,
    evaluate,
    member_health,
    tally,
)

DOWN, DEGRADED, UP = Health.DOWN, Health.DEGRADED, Health.UP


@pytest.mark.parametrize(
    ("rule", "severity", "health"),
    [
        ("disk_full", Severity.OK, UP),
        ("disk_full", Severity.WARNING, DEGRADED),
        ("disk_full", Severity.UNKNOWN, DEGRADED),
        ("disk_full", Severity.CRITICAL, DOWN),
        ("host_stale", Severity.STALE, DOWN),
        ("check_stale", Severity.STALE, DEGRADED),  # one silent check: the host still reports
    ],
)
def test_member_health(rule: str, severity: Severity, health: Health) -> None:
    assert member_health(rule, severity) is health


@pytest.mark.parametrize(
    ("required", "total", "down", "degraded", "health"),
    [
        (None, 3, 0, 0, UP),
        (None, 3, 0, 1, DEGRADED),
        (None, 3, 1, 0, DOWN),  # all needed: one down is an outage
        (1, 2, 1, 0, DEGRADED),  # any of two: one down is degraded
        (1, 2, 2, 0, DOWN),
        (1, 2, 1, 1, DEGRADED),  # the one left is degraded, and serves
        (2, 3, 1, 0, DEGRADED),  # two of three
        (2, 3, 1, 1, DEGRADED),
        (2, 3, 2, 0, DOWN),
        (2, 3, 0, 3, DEGRADED),
        (None, 0, 0, 0, DOWN),  # nothing known serves it
        (1, 0, 0, 0, DOWN),
        (3, 2, 0, 0, DOWN),  # a glob that matches fewer hosts than it needs
    ],
)
def test_combine(
    required: int | None, total: int, down: int, degraded: int, health: Health
) -> None:
    assert combine(required, total, down, degraded) is health


@pytest.mark.parametrize(
    ("live", "overall", "state"),
    [
        (UP, UP, ServiceState.OPERATIONAL),
        (UP, DEGRADED, ServiceState.MAINTENANCE),
        (UP, DOWN, ServiceState.MAINTENANCE),
        (DEGRADED, DEGRADED, ServiceState.DEGRADED),
        (DEGRADED, DOWN, ServiceState.OUTAGE),  # a problem outside the window tipped it
        (DOWN, DOWN, ServiceState.OUTAGE),
    ],
)
def test_verdict_state(live: Health, overall: Health, state: ServiceState) -> None:
    assert Verdict(live, overall).state is state


def component(**fields: Any) -> ComponentConfig:
    return ComponentConfig(**fields)


def service(*components: ComponentConfig, **fields: Any) -> ServiceConfig:
    return ServiceConfig(owner="ops", components=list(components), **fields)


def states(
    model: ServiceModel, hosts: dict[str, dict[str, str]], problems: list[ProblemFact]
) -> dict[str, ServiceState]:
    memberships = {h: model.memberships(h, labels) for h, labels in hosts.items()}
    totals: dict[int, int] = {}
    for ids in memberships.values():
        for i in ids:
            totals[i] = totals.get(i, 0) + 1
    found = evaluate(model, totals, tally(model.by_id, memberships, problems))
    return {name: status.state for name, status in found.items()}


def problem(host: str, severity: Severity, rule: str = "disk_full", planned: bool = False) -> Any:
    return ProblemFact(host, rule, "{}", severity, planned)


TWO_OF_THREE = ServiceModel.build(
    {"files": service(component(hosts=["fs1", "fs2", "fs3"], need=2), title="File shares")}
)
FILE_SERVERS: dict[str, dict[str, str]] = {host: {} for host in ("fs1", "fs2", "fs3")}


@pytest.mark.parametrize(
    ("problems", "state"),
    [
        ([], ServiceState.OPERATIONAL),
        ([problem("fs1", Severity.WARNING)], ServiceState.DEGRADED),
        ([problem("fs1", Severity.CRITICAL)], ServiceState.DEGRADED),
        (
            [problem("fs1", Severity.CRITICAL), problem("fs2", Severity.WARNING)],
            ServiceState.DEGRADED,
        ),
        (
            [problem("fs1", Severity.CRITICAL), problem("fs2", Severity.CRITICAL)],
            ServiceState.OUTAGE,
        ),
        ([problem("fs1", Severity.STALE, "host_stale")], ServiceState.DEGRADED),
        ([problem("fs1", Severity.CRITICAL, planned=True)], ServiceState.MAINTENANCE),
        (
            [problem("fs1", Severity.CRITICAL, planned=True), problem("fs2", Severity.CRITICAL)],
            ServiceState.OUTAGE,
        ),
        (
            [
                problem("fs1", Severity.CRITICAL, planned=True),
                problem("fs2", Severity.CRITICAL, planned=True),
            ],
            ServiceState.MAINTENANCE,
        ),
    ],
)
def test_two_of_three(problems: list[ProblemFact], state: ServiceState) -> None:
    assert states(TWO_OF_THREE, FILE_SERVERS, problems) == {"files": state}


def test_rules_named_by_a_component_are_the_ones_that_count() -> None:
    model = ServiceModel.build(
        {"mail": service(component(hosts=["mx*"], rules=["smtp_down"], need="any"))}
    )
    hosts = {"mx1": {}, "mx2": {}}
    assert states(model, hosts, [problem("mx1", Severity.CRITICAL)]) == {
        "mail": ServiceState.OPERATIONAL
    }
    assert states(model, hosts, [problem("mx1", Severity.CRITICAL, "smtp_down")]) == {
        "mail": ServiceState.DEGRADED
    }
    # A silent host is down whatever rules the component names.
    assert states(
        model,
        hosts,
        [
            problem("mx1", Severity.STALE, "host_stale"),
            problem("mx2", Severity.STALE, "host_stale"),
        ],
    ) == {"mail": ServiceState.OUTAGE}


def test_service_components_and_dependencies() -> None:
    """The intranet is made of the web and search services and needs one of them; the web
    service depends on the database. The database's outage takes the web service down, and
    the intranet only degraded while search serves."""
    model = ServiceModel.build(
        {
            "intranet": service(component(service="web"), component(service="search"), need=1),
            "web": service(component(hosts=["web1"]), depends_on=["database"]),
            "search": service(component(labels={"role": "search"})),
            "database": service(component(hosts=["db1"])),
        }
    )
    hosts = {"web1": {}, "db1": {}, "s1": {"role": "search"}}
    order = [s.name for s in model.services]
    assert order.index("database") < order.index("web") < order.index("intranet")
    assert order.index("search") < order.index("intranet")
    assert states(model, hosts, [problem("db1", Severity.CRITICAL)]) == {
        "database": ServiceState.OUTAGE,
        "web": ServiceState.OUTAGE,
        "search": ServiceState.OPERATIONAL,
        "intranet": ServiceState.DEGRADED,
    }
    assert (
        states(model, hosts, [problem("db1", Severity.CRITICAL), problem("s1", Severity.CRITICAL)])[
            "intranet"
        ]
        is ServiceState.OUTAGE
    )
    assert states(model, hosts, [problem("db1", Severity.CRITICAL, planned=True)]) == {
        "database": ServiceState.MAINTENANCE,
        "web": ServiceState.MAINTENANCE,
        "search": ServiceState.OPERATIONAL,
        "intranet": ServiceState.MAINTENANCE,
    }


def test_membership_by_name_glob_and_label() -> None:
    model = ServiceModel.build(
        {
            "a": service(
                component(hosts=["web01", "web02"]),
                component(hosts=["db*"], labels={"site": "ber*"}),
                component(labels={"role": "mail"}),
                component(labels={"role": "mx*"}),
                component(hosts=["*.lan"]),
            )
        }
    )
    ids = {c.index: c.id for c in model.host_components}
    assert model.memberships("web01", {}) == (ids[1],)
    assert model.memberships("db7", {"site": "berlin"}) == (ids[2],)
    assert model.memberships("db7", {"site": "paris"}) == ()
    assert model.memberships("mail1", {"role": "mail"}) == (ids[3],)
    assert model.memberships("x", {"role": "mx-out"}) == (ids[4],)
    assert model.memberships("db1.lan", {"site": "bern", "role": "mail"}) == (
        ids[2],
        ids[3],
        ids[5],
    )


# -- properties --------------------------------------------------------------------------------

HOSTS = ("web1", "web2", "db1", "db2", "fs1")
PATTERNS = ("web1", "web2", "db1", "web*", "db?", "*1", "fs[0-9]", "*")
RULES = ("disk_full", "http_down", "host_stale", "check_stale")
LABELS = {"web1": {"role": "web"}, "web2": {"role": "web"}, "db1": {"role": "db"}}


@st.composite
def components(draw: st.DrawFn, earlier: list[str]) -> ComponentConfig:
    if earlier and draw(st.integers(0, 3)) == 0:
        return ComponentConfig(service=draw(st.sampled_from(earlier)))
    hosts = draw(st.lists(st.sampled_from(PATTERNS), max_size=3, unique=True))
    labels = {"role": draw(st.sampled_from(("web", "db", "w*")))} if not hosts else {}
    if not hosts and draw(st.booleans()):
        labels = {}
        hosts = ["*"]
    rules = draw(st.lists(st.sampled_from(RULES), max_size=2, unique=True))
    need = draw(st.sampled_from(("all", "any", 1, 2)))
    if isinstance(need, int) and not labels and not any(set(p) & set("*?[") for p in hosts):
        need = min(need, len(hosts))
    return ComponentConfig(hosts=hosts, labels=labels, rules=rules, need=need)


@st.composite
def models(draw: st.DrawFn) -> ServiceModel:
    """Up to five services, each resting only on those before it (so no cycle)."""
    services: dict[str, ServiceConfig] = {}
    for i in range(draw(st.integers(1, 5))):
        earlier = list(services)
        parts = draw(st.lists(components(earlier), min_size=1, max_size=3))
        depends = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        need = draw(st.sampled_from(("all", "any", *range(1, len(parts) + 1))))
        services[f"s{i}"] = ServiceConfig(
            owner="ops", components=parts, depends_on=depends, need=need
        )
    return ServiceModel.build(services)


facts = st.builds(
    ProblemFact,
    host=st.sampled_from(HOSTS),
    rule=st.sampled_from(RULES),
    labels_key=st.sampled_from(("{}", '{"mountpoint":"/"}')),
    severity=st.sampled_from([s for s in Severity if s is not Severity.OK]),
    planned=st.booleans(),
)


def fleet_states(model: ServiceModel, problems: list[ProblemFact]) -> dict[str, ServiceState]:
    return states(model, {h: LABELS.get(h, {}) for h in HOSTS}, problems)


@settings(max_examples=300, deadline=None)
@given(models(), st.lists(facts, max_size=8), st.lists(facts, min_size=1, max_size=4))
def test_more_failures_never_make_a_service_healthier(
    model: ServiceModel, problems: list[ProblemFact], more: list[ProblemFact]
) -> None:
    before = fleet_states(model, problems)
    after = fleet_states(model, problems + more)
    for name, state in before.items():
        assert after[name] >= state, (name, before, after)


@settings(max_examples=300, deadline=None)
@given(models(), st.lists(facts, max_size=8), st.data())
def test_a_window_never_makes_a_service_worse(
    model: ServiceModel, problems: list[ProblemFact], data: st.DataObject
) -> None:
    """Covering a problem by a window (planned) never worsens a state: what is covered never
    counts against a service."""
    if not problems:
        return
    index = data.draw(st.integers(0, len(problems) - 1))
    covered = list(problems)
    covered[index] = ProblemFact(*_fields(problems[index])[:-1], True)
    before = fleet_states(model, problems)
    after = fleet_states(model, covered)
    for name, state in before.items():
        assert after[name] <= state, (name, before, after)


def _fields(fact: ProblemFact) -> tuple[Any, ...]:
    return (fact.host, fact.rule, fact.labels_key, fact.severity, fact.planned)


@settings(max_examples=300, deadline=None)
@given(
    models(),
    st.text(alphabet="webdfs12.lan", min_size=1, max_size=8),
    st.sampled_from([{}, {"role": "web"}, {"role": "db"}, {"role": "wx", "site": "a"}]),
)
def test_the_index_finds_what_matching_every_component_finds(
    model: ServiceModel, host: str, labels: dict[str, str]
) -> None:
    brute = tuple(c.id for c in model.host_components if c.matches(host, labels))
    assert model.memberships(host, labels) == brute
    for c in model.host_components:  # and matching is fnmatch's, case and all
        if c.hosts and not c.labels:
            assert c.matches(host, labels) == any(fnmatch.fnmatchcase(host, p) for p in c.hosts)


# -- the view's index of problem states, which the services pass walks --------------------------

STATE_KEYS = st.tuples(
    st.sampled_from(["disk", "load"]), st.sampled_from(["a", "b"]), st.sampled_from(["{}", "x"])
)
TABLE_OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["set", "del", "pop", "clear"]), STATE_KEYS, st.sampled_from(list(Severity))
    ),
    max_size=60,
)


@given(TABLE_OPERATIONS)
def test_the_problem_keys_are_the_states_not_ok(
    operations: list[tuple[str, tuple[str, str, str], Severity]],
) -> None:
    from collector.evaluation.rules import RuleState
    from collector.view.fleet import StateTable

    table = StateTable()
    for operation, key, severity in operations:
        if operation == "set":
            table[key] = RuleState(severity=severity)
        elif operation == "del" and key in table:
            del table[key]
        elif operation == "pop":
            table.pop(key, None)
        elif operation == "clear":
            table.clear()
        assert sorted(table.problem_keys()) == sorted(
            k for k, state in table.items() if state.severity is not Severity.OK
        )
