"""A report's values are stepped through a rule only when the step could change something: a
rule back to OK with nothing open is left alone while its recent changes are still in the
flapping window, yet flapping, recoveries and new breaches are seen as before. On both stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from collector.app import CollectorService
from collector.evaluation import series as series_rules
from tests.helpers import FS_RULE, FakeClock, Reporter

FLAPPY_FS = {**FS_RULE, "for": "0s", "flapping": {"changes": 3, "window": "10m"}}


def steps_counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the rule steps the series rules take."""
    count = [0]
    real = series_rules.step

    def counted(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(series_rules, "step", counted)
    return count


def test_a_recovered_rule_is_not_stepped_by_every_quiet_report(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = make_service([FLAPPY_FS])
    web = Reporter("web01", clock)
    for value in (0.5, 0.97, 0.5):  # a breach and its recovery: two changes in the window
        service.ingest("web01", web.report({"fs_used_ratio": value}))
        clock.advance(60)
    (call,) = service.calls(None, None)
    assert call.status == "resolved"
    steps = steps_counted(monkeypatch)
    for _ in range(5):  # quiet, inside the 10-minute window
        service.ingest("web01", web.report({"fs_used_ratio": 0.5}))
        clock.advance(60)
    assert steps[0] == 0, "nothing a step could change: no step"
    # Two breaches more within the window: the rule flaps, and one call says so.
    for value in (0.97, 0.5, 0.97):
        service.ingest("web01", web.report({"fs_used_ratio": value}))
        clock.advance(60)
    assert steps[0] == 3
    (state,) = [s for k, s in service.fleet.states.items() if k[0] == "filesystem_full"]
    assert state.flapping
    assert len(service.calls("open", None)) == 1


def test_a_quiet_rule_forgets_its_changes_once_they_leave_the_window(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service([FLAPPY_FS])
    web = Reporter("web01", clock)
    for value in (0.5, 0.97, 0.5):
        service.ingest("web01", web.report({"fs_used_ratio": value}))
        clock.advance(60)
    for _ in range(12):  # past the 10-minute window
        service.ingest("web01", web.report({"fs_used_ratio": 0.5}))
        clock.advance(60)
    (state,) = [s for k, s in service.fleet.states.items() if k[0] == "filesystem_full"]
    assert state.changes == (), "stepped once the window let its changes go"
    # Three changes now are not four: no flapping, one call for the new breach.
    for value in (0.97, 0.5, 0.97):
        service.ingest("web01", web.report({"fs_used_ratio": value}))
        clock.advance(60)
    (state,) = [s for k, s in service.fleet.states.items() if k[0] == "filesystem_full"]
    assert not state.flapping
