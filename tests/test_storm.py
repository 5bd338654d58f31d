"""Storm control: a switch fails and 200 hosts go STALE. The help desk gets 20 calls and one
umbrella call listing the rest, never 200 calls; every host is still watched."""

from __future__ import annotations

from collections.abc import Callable

from collector.app import CollectorService
from tests.helpers import FS_RULE, FakeClock, Reporter

MakeService = Callable[..., CollectorService]


def test_two_hundred_stale_hosts_make_twenty_calls_and_one_umbrella(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([FS_RULE], storm={"max_calls": 20, "window": "5m"})
    hosts = [Reporter(f"web{i:03d}", clock) for i in range(200)]
    for host in hosts:
        service.ingest(host.host, host.report({"fs_used_ratio": 0.5}))
    clock.advance(200)  # the switch is down: nothing arrives for 3+ intervals
    service.tick()

    open_calls = service.calls("open", None)
    umbrellas = [c for c in open_calls if c.rule == "call_storm"]
    singles = [c for c in open_calls if c.rule == "host_stale"]
    assert len(singles) == 20
    (umbrella,) = umbrellas
    assert umbrella.group == "systems-administration"
    assert umbrella.summary.startswith("[storm] 180 problem(s)")
    assert umbrella.description.count("\n- ") == 180
    assert (
        service.registry.get_sample_value(
            "runwatch_calls_suppressed_total", {"group": "systems-administration"}
        )
        == 180
    )
    # Per-host state is kept for all 200.
    assert sum(1 for h in service.hosts() if h["state"] == "STALE") == 200

    # The switch comes back: every call resolves, the umbrella with the last of its members.
    for host in hosts:
        service.ingest(host.host, host.report({"fs_used_ratio": 0.5}))
    assert service.calls("open", None) == []
    assert service.store.get_call(umbrella.id).status == "resolved"


def test_new_problems_open_calls_again_once_the_window_has_passed(
    make_service: MakeService, clock: FakeClock
) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}], storm={"max_calls": 2, "window": "5m"})
    for i in range(3):
        host = Reporter(f"db{i}", clock)
        service.ingest(host.host, host.report({"fs_used_ratio": 0.97}))
    assert [c.rule for c in service.calls("open", None)].count("call_storm") == 1
    clock.advance(301)
    late = Reporter("db9", clock)
    service.ingest(late.host, late.report({"fs_used_ratio": 0.97}))
    assert any(c.host == "db9" and c.rule == "filesystem_full" for c in service.calls("open", None))
