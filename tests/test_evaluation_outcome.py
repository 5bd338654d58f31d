"""Evaluation decides and the incidents stage writes: a pass returns its decisions, touches no
store and no call, and a state that opens a call learns the call's id from the writer."""

from __future__ import annotations

from collections.abc import Callable

from collector.app import CollectorService
from collector.config import STALE_RULE
from collector.evaluation.evaluator import RuleEvaluator
from collector.evaluation.outcome import Decision, Outcome, Settled
from collector.evaluation.rules import OpenCall, Severity
from tests.helpers import FS_RULE, FakeClock, Reporter


class RecordingWriter:
    """A writer that opens every call as number 41 and writes nothing."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.saved: list[Settled] = []

    def apply(self, outcome: Outcome) -> list[int | None]:
        self.outcomes.append(outcome)
        return [41 for c in outcome.calls if isinstance(c, Decision)]

    def save(self, settled: Settled) -> None:
        self.saved.append(settled)

    def prune_history(self, before: float) -> None:
        raise AssertionError("no forecast rule: no history to prune")

    def prune_steps(self, before: float, after: str, hosts: int) -> str | None:
        return None


def web01_reported_once(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> CollectorService:
    """A collector with the filesystem rule (no delay) that heard from web01 once, at 50%."""
    service = make_service([{**FS_RULE, "for": "0s"}])
    reporter = Reporter("web01", clock)
    service.ingest(reporter.host, reporter.report({"fs_used_ratio": 0.5}))
    return service


def test_a_silent_host_opens_its_call_through_the_writer_and_learns_its_id(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = web01_reported_once(make_service, clock)
    writer = RecordingWriter()
    evaluator = RuleEvaluator(service.config, service.fleet, writer, calendar=service.calendar)
    clock.advance(1000)

    outcome = evaluator.decide_host("web01", clock.now)

    [decision] = outcome.calls
    assert isinstance(decision, Decision)
    assert isinstance(decision.decision, OpenCall)
    assert decision.key == (STALE_RULE, "web01", "{}")
    assert decision.problem.severity == "STALE"
    assert service.calls(None, None) == [], "deciding opens no call"
    key = (STALE_RULE, "web01", "{}")
    assert key not in service.fleet.states, "the state waits for its call's id"

    settled = evaluator.settle(writer.apply(outcome))
    state = service.fleet.states[key]
    assert (state.severity, state.call_id, state.call_severity) == (
        Severity.STALE,
        41,
        Severity.STALE,
    )
    assert [r.state.call_id for r in settled.states] == [41]
    assert [c.severity for c in settled.changes] == [int(Severity.STALE)]
    assert service.calls(None, None) == [], "the writer alone opens calls"


def test_a_held_back_call_leaves_the_state_without_one(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = web01_reported_once(make_service, clock)
    evaluator = RuleEvaluator(
        service.config, service.fleet, RecordingWriter(), calendar=service.calendar
    )
    clock.advance(1000)
    evaluator.decide_host("web01", clock.now)

    evaluator.settle([None])  # e.g. held back by a storm

    state = service.fleet.states[(STALE_RULE, "web01", "{}")]
    assert (state.severity, state.call_id, state.call_severity) == (
        Severity.STALE,
        None,
        Severity.OK,
    )
