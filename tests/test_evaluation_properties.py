"""Property-based tests of evaluation: random measurement streams, silences and clock steps.

Through the whole collector (state machine, incident layer, store) on an injected clock:
- never two open calls for one key;
- every call closes once the input returns to OK and stays there;
- a silenced problem never opens or updates a call;
- a flapping rule never opens more than one call.
And the pure state machine alone, over many more steps.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.app import CollectorService
from collector.evaluation.rules import (
    NoteFlapping,
    OpenCall,
    ResolveCall,
    RuleState,
    Severity,
    StepPolicy,
    step,
)
from collector.incidents.calls import fingerprint
from tests.helpers import FS_RULE, FakeClock, Reporter, collector_config

FLAP_WINDOW = 600.0
RULE = {**FS_RULE, "flapping": {"changes": 3, "window": "10m"}}
KEYS = {
    "filesystem_full": fingerprint("web01", "filesystem_full", {"mountpoint": "/"}),
    "host_stale": fingerprint("web01", "host_stale", {}),
}


# The actions a property test takes, one after another.


class Report(NamedTuple):
    after: float
    value: float


class Tick(NamedTuple):
    after: float


class SilenceOn(NamedTuple):
    seconds: float
    rule: str


class SilenceOff(NamedTuple):
    pass


class Burst(NamedTuple):
    """Values a minute apart: a see-saw makes the rule flap."""

    values: tuple[float, ...]


values = st.sampled_from([0.5, 0.82, 0.9, 0.97, float("nan")])
actions = st.lists(
    st.one_of(
        st.builds(Report, after=st.sampled_from([0, 15, 60, 120, 300]), value=values),
        st.builds(Tick, after=st.sampled_from([5, 60, 200, 900])),
        st.builds(
            SilenceOn,
            seconds=st.sampled_from([60, 600, 3600]),
            rule=st.sampled_from(["*", "filesystem_*", "host_stale"]),
        ),
        st.builds(SilenceOff),
        st.builds(Burst, values=st.lists(values, min_size=2, max_size=8).map(tuple)),
    ),
    min_size=1,
    max_size=30,
)


def snapshot(service: CollectorService) -> dict[str, tuple[int, int, int]]:
    """Per incident key: how many calls, call events and resolutions so far."""
    out: dict[str, tuple[int, int, int]] = {}
    for name, key in KEYS.items():
        calls = [c for c in service.calls(None, None, 10_000) if c.fingerprint == key]
        events = [e for c in calls for e in service.store.call_events(c.id)]
        out[name] = (len(calls), len(events), sum(e.kind == "resolved" for e in events))
    return out


def flapping(service: CollectorService) -> bool:
    state = service.fleet.states.get(("filesystem_full", "web01", '{"mountpoint":"/"}'))
    return state is not None and state.flapping


def check_one_open_call_per_key(service: CollectorService) -> None:
    open_keys = Counter(c.fingerprint for c in service.calls("open", None, 10_000))
    assert all(count == 1 for count in open_keys.values()), open_keys
    for state in service.fleet.states.values():
        if state.call_id is not None:
            call = service.store.get_call(state.call_id)
            assert call is not None and call.status == "open", "a state points at its open call"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=actions, for_seconds=st.sampled_from(["0s", "2m"]))
def test_calls_obey_their_invariants(steps: list[object], for_seconds: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clock = FakeClock()
        service = CollectorService(
            collector_config(Path(tmp), [{**RULE, "for": for_seconds}]), clock=clock
        )
        try:
            run(service, clock, steps)
        finally:
            service.close()


def ingest(service: CollectorService, web: Reporter, value: float) -> None:
    if math.isnan(value):  # the check failed
        service.ingest("web01", web.report(error="statvfs timed out"))
    else:
        service.ingest("web01", web.report({"fs_used_ratio": value}))


def run(service: CollectorService, clock: FakeClock, steps: list[object]) -> None:
    web = Reporter("web01", clock)
    service.ingest("web01", web.report({"fs_used_ratio": 0.5}))
    episode_calls: set[int] = set()
    for action in steps:
        before = snapshot(service)
        was_flapping = flapping(service)
        match action:
            case Report(after=after, value=value):
                clock.advance(after)
                ingest(service, web, value)
            case Tick(after=after):
                clock.advance(after)
                service.tick()
            case SilenceOn(seconds=seconds, rule=rule):
                service.add_silence(
                    "prop", host="web*", rule=rule, duration=seconds, reason="property test"
                )
            case SilenceOff():
                for silence in service.store.list_silences(clock()):
                    service.end_silence(silence.id, "prop")
            case Burst(values=burst):
                for value in burst:
                    clock.advance(60)
                    ingest(service, web, value)
                    if flapping(service) != was_flapping:
                        break  # the invariants below are about one step into or out of it
        after = snapshot(service)
        check_one_open_call_per_key(service)
        for name in KEYS:
            if service.calendar.silenced("web01", name, clock()):
                assert after[name] == before[name], f"{name} is silenced, yet its calls moved"
        if flapping(service):
            # One flapping episode, one call (opened when it began, or when a window ended).
            episode_calls.update(
                c.id
                for c in service.calls("open", None, 10_000)
                if c.fingerprint == KEYS["filesystem_full"]
            )
            assert len(episode_calls) <= 1, "a flapping rule opened a second call"
            if was_flapping:
                assert after["filesystem_full"][2] == before["filesystem_full"][2], (
                    "a flapping rule's call resolved while it still flaps"
                )
        else:
            episode_calls.clear()

    # The input returns to OK and stays there (and no window holds calls back).
    for silence in service.store.list_silences(clock()):
        service.end_silence(silence.id, "prop")
    for _ in range(int(FLAP_WINDOW // 60) + 3):
        clock.advance(60)
        service.ingest("web01", web.report({"fs_used_ratio": 0.5}))
        service.tick()
    check_one_open_call_per_key(service)
    assert service.calls("open", None) == [], "every call closes once all is well"


# -- the pure state machine -------------------------------------------------------------------

severities = st.sampled_from(list(Severity))
policies = st.builds(
    StepPolicy,
    hold_for=st.sampled_from([0.0, 60.0, 300.0]),
    flap_changes=st.sampled_from([None, 2, 4]),
    flap_window=st.sampled_from([300.0, 900.0]),
    silenced=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    stream=st.lists(
        st.tuples(st.sampled_from([1.0, 30.0, 120.0, 400.0]), severities, policies),
        min_size=1,
        max_size=60,
    )
)
def test_the_state_machine_keeps_at_most_one_call_and_is_quiet_when_silenced(
    stream: list[tuple[float, Severity, StepPolicy]],
) -> None:
    state, now, next_id, opens_this_flapping = RuleState(), 0.0, 1, 0
    for gap, observed, policy in stream:
        now += gap
        before = state
        state, decisions = step(state, observed, None, now, policy)
        if policy.silenced:
            assert decisions == ()
        for decision in decisions:
            if isinstance(decision, OpenCall):
                assert before.call_id is None, "a call opened beside an open one"
                state = type(state)(
                    **{**_fields(state), "call_id": next_id, "call_severity": decision.severity}
                )
                next_id += 1
                if state.flapping:
                    opens_this_flapping += 1
            elif isinstance(decision, ResolveCall):
                assert not state.flapping, "a flapping rule's call resolved"
                assert not observed.is_problem
            elif isinstance(decision, NoteFlapping):
                assert decision.call_id == before.call_id
        assert sum(isinstance(d, OpenCall) for d in decisions) <= 1
        if state.flapping and state.call_id is None:
            assert policy.silenced, "a flapping rule outside a window has its call"
        assert opens_this_flapping <= 1, "a flapping rule opened a second call"
        if not state.flapping:
            opens_this_flapping = 0


def _fields(state: RuleState) -> dict[str, object]:
    return {name: getattr(state, name) for name in state.__dataclass_fields__}
