"""Services in the report, as properties (hypothesis) and through the whole pipeline: windows
never lower a service's availability, and a dependency's outage is its dependants' outage."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.app import CollectorService
from collector.config import SERVICE_RULE
from collector.evaluation.rules import Severity
from collector.service_levels import build_report, parse_period
from collector.services.config import ComponentConfig, ServiceConfig
from collector.services.model import ServiceModel
from collector.services.state import ProblemFact, ServiceState
from collector.store.sqlite import SQLiteStore
from tests.helpers import FakeClock, collector_config
from tests.test_services import FAST_FS, HTTP_RULE, SERVICES, Fleet
from tests.test_services_state import facts, fleet_states, models

MINUTE = 60.0
PERIOD = parse_period("2027-01")


def _report_services(
    config: Any, model: ServiceModel, changes: list[tuple[str, float, int]], folder: Path
) -> dict[str, Any]:
    """The report's services from a store holding `changes` and nothing else."""
    store = SQLiteStore(folder / "runwatch.db")
    try:
        store.add_service_changes(changes)
        wanted = {s.name: _config_of(s) for s in model.services}
        report = build_report(store, msgspec.structs.replace(config, services=wanted), PERIOD)
        return {s.service: s for s in report.services}
    finally:
        store.close()


def _config_of(service: Any) -> ServiceConfig:
    """A stand-in config for a built service: the report reads its name, title and owner."""
    return ServiceConfig(owner="ops", components=[], title=service.title)  # type: ignore[arg-type]


def _changes(
    model: ServiceModel, timeline: list[tuple[float, list[ProblemFact]]]
) -> list[tuple[str, float, int]]:
    """The state changes the collector would store for this run of problems: each service's
    state at each step, stored when it differs from the last."""
    out: list[tuple[str, float, int]] = []
    known: dict[str, ServiceState] = {}
    for at, problems in timeline:
        for name, state in sorted(fleet_states(model, problems).items()):
            if known.get(name) is not state:
                known[name] = state
                out.append((name, at, int(state)))
    return out


step = st.tuples(
    st.integers(1, 24 * 60),  # minutes the step lasts
    st.lists(st.tuples(facts, st.booleans()), max_size=6),  # each problem: covered too?
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(models(), st.lists(step, min_size=1, max_size=8))
def test_windows_never_lower_a_services_reported_availability(
    tmp_path: Path, model: ServiceModel, steps: list[tuple[int, list[tuple[ProblemFact, bool]]]]
) -> None:
    """The same month twice: once as it was, once with silences or maintenance windows over
    some problems. With the windows, no service's reported availability is lower, and no
    service has more outage."""
    config = collector_config(tmp_path)
    plain: list[tuple[float, list[ProblemFact]]] = []
    covered: list[tuple[float, list[ProblemFact]]] = []
    at = PERIOD.start
    for minutes, problems in steps:
        plain.append((at, [p for p, _ in problems]))
        covered.append((at, [_covered(p) if c else p for p, c in problems]))
        at += minutes * MINUTE
    # The month ends all well, so each run is the same length.
    plain.append((at, []))
    covered.append((at, []))
    with (
        tempfile.TemporaryDirectory(dir=tmp_path) as one,
        tempfile.TemporaryDirectory(dir=tmp_path) as two,
    ):
        before = _report_services(config, model, _changes(model, plain), Path(one))
        after = _report_services(config, model, _changes(model, covered), Path(two))
    for name, was in before.items():
        now = after[name]
        assert now.counted_seconds == was.counted_seconds, name
        assert now.outage_seconds <= was.outage_seconds, name
        assert now.down_seconds <= was.down_seconds, name
        assert now.availability is not None and was.availability is not None
        assert now.availability >= was.availability, (name, was, now)


def test_a_window_over_a_degraded_stretch_keeps_availability(tmp_path: Path) -> None:
    """The case a random search finds only rarely: a month with an hour of outage, and a window
    over two hours that were merely degraded. Left out of the counted time, the window would
    lower availability (up and counted both less 2 h, down the same); counted as up, it
    changes nothing: 1 - 1 h / 744 h (January) either way."""
    config = collector_config(tmp_path)
    web = ServiceConfig(owner="ops", components=[ComponentConfig(hosts=["web1"])])
    model = ServiceModel.build({"web": web})
    down = ProblemFact("web1", "disk_full", "{}", Severity.CRITICAL, False)
    degraded = ProblemFact("web1", "disk_full", "{}", Severity.WARNING, False)
    hour = 3600.0
    plain = [
        (PERIOD.start, []),
        (PERIOD.start + 5 * hour, [down]),
        (PERIOD.start + 6 * hour, [degraded]),
        (PERIOD.start + 8 * hour, []),
    ]
    covered = [*plain[:2], (PERIOD.start + 6 * hour, [_covered(degraded)]), plain[3]]
    with (
        tempfile.TemporaryDirectory(dir=tmp_path) as one,
        tempfile.TemporaryDirectory(dir=tmp_path) as two,
    ):
        before = _report_services(config, model, _changes(model, plain), Path(one))["web"]
        after = _report_services(config, model, _changes(model, covered), Path(two))["web"]
    assert (before.degraded_seconds, after.maintenance_seconds) == (2 * hour, 2 * hour)
    assert before.counted_seconds == after.counted_seconds == 744 * hour
    assert before.availability == pytest.approx(1 - 1 / 744, rel=1e-12)
    assert after.availability == before.availability


def _covered(problem: ProblemFact) -> ProblemFact:
    return ProblemFact(problem.host, problem.rule, problem.labels_key, problem.severity, True)


# -- through the pipeline: rule states, the tick's service states, the store, the report -------


def test_a_database_outage_is_the_shops_outage_in_the_report(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    """db01's disk fills for 10 of 30 minutes: the database is out, and so is the web shop,
    which depends on it; payroll, which does not, is untouched. The call names both."""
    service = make_service([FAST_FS, HTTP_RULE], services=SERVICES)
    fleet = Fleet(service, clock)
    began = clock()
    fleet.all_report()
    service.tick()
    for minute in range(1, 31):
        clock.advance(MINUTE)
        if minute in (10, 20):
            fleet.values["db01"] = (0.99 if minute == 10 else 0.5, 0.0)
        fleet.all_report()
        service.tick()
    period = parse_period("2027-01")
    assert period.start < began < period.end
    report = build_report(service.store, service.config, period, as_of=clock())
    levels = {s.service: s for s in report.services}
    # Known from the first tick (began) to now: 30 min = 1800 s; out 10 min = 600 s.
    for name in ("database", "web-shop"):
        assert levels[name].counted_seconds == 1800.0
        assert levels[name].outage_seconds == 600.0
        assert levels[name].availability == pytest.approx(1 - 600 / 1800, rel=1e-12)
        assert levels[name].levels.calls == 1
    assert levels["payroll"].availability == 1.0 and levels["payroll"].levels.calls == 0
    (call,) = [
        c for c in service.store.calls_opened_between(began, clock() + 1) if c.rule != SERVICE_RULE
    ]
    assert call.host == "db01" and sorted(call.services) == ["database", "web-shop"]
