"""Escalation with a controlled clock: a call nobody acknowledges climbs its group's levels at
the configured times (to the rota's next person, then the lead, then a fallback channel), and an
acknowledgement by any path (console, CLI, help desk, the store itself) or a resolve stops it.
Both stores; a restart keeps the level; a step is taken once, whoever runs it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import add_token
from collector.incidents.calls import CallEvent
from collector.incidents.outbox import RetryPolicy
from collector.notify.delivery import Notifications, build_channels
from collector.notify.escalation import next_on_call
from collector.store.records import OutboxOp
from runwatch.cli import call as call_cli
from runwatch.cli import main
from runwatch.cli.common import CommandError
from tests.fakes.ntfy import HookReceiver
from tests.helpers import FS_RULE, GROUPS, FakeClock, Reporter
from tests.helpers.sinks import outbox_worker

GROUP = "systems-administration"
RULE = {**FS_RULE, "for": "0s"}
# 2027-01-15 08:00 UTC (FakeClock's start): the second week of the rota below, bob's.
PEOPLE = ["alice", "bob", "carol"]
LEVELS = [
    {"next_on_call": True},  # after respond_within (10 min): carol, next in the rota
    {"people": ["dave"], "after": "5m"},  # the group's lead
    {"channels": ["managers"], "after": "15m"},  # the fallback
]
FIRST, SECOND, THIRD = 600.0, 600.0 + 300.0, 600.0 + 300.0 + 900.0


def notifications(url: Callable[[str], str], levels: list[dict[str, Any]]) -> dict[str, Any]:
    phones = {
        f"{p}-phone": {"type": "apprise", "url": url(f"{p}-phone")} for p in [*PEOPLE, "dave"]
    }
    return {
        "channels": {
            "team": {"type": "apprise", "url": url("team")},
            "managers": {"type": "apprise", "url": url("managers")},
            **phones,
        },
        "people": {p: {"channels": [f"{p}-phone"]} for p in [*PEOPLE, "dave"]},
        "rotas": {GROUP: {"people": PEOPLE, "starts": "2027-01-04 09:00"}},
        "rules": [{"groups": [GROUP], "channels": ["team"], "oncall": True}],
        "escalation": {GROUP: levels},
    }


def make(
    make_service: Callable[..., CollectorService],
    url: Callable[[str], str] = lambda name: f"json://127.0.0.1:9/{name}",
    levels: list[dict[str, Any]] | None = None,
) -> CollectorService:
    groups = {**GROUPS, GROUP: {**GROUPS[GROUP], "respond_within": "10m"}}
    return make_service(
        [RULE],
        groups=groups,
        # Stale hosts are the other group's: only the disk's call escalates here.
        staleness={"after_intervals": 3, "owner": "computer-operations"},
        notifications=notifications(url, LEVELS if levels is None else levels),
    )


def open_call(service: CollectorService, clock: FakeClock, host: str = "web01") -> int:
    reporter = Reporter(host, clock)
    service.ingest(host, reporter.report({"fs_used_ratio": 0.97}))
    (call,) = [c for c in service.calls("open", None) if c.host == host]
    return call.id


def told(service: CollectorService, call_id: int | None = None) -> list[tuple[str, str]]:
    """(channel, event) of every queued notification, in order."""
    ops: list[OutboxOp] = sorted(service.store.list_ops(None, 500), key=lambda op: op.id)
    return [
        (op.sink.removeprefix("notify:"), op.payload["event"])
        for op in ops
        if op.sink.startswith("notify:") and call_id in (None, op.call_id)
    ]


def escalated_to(service: CollectorService, call_id: int | None = None) -> list[str]:
    return sorted(c for c, event in told(service, call_id) if event == "escalation")


def at(service: CollectorService, clock: FakeClock, opened: float, seconds: float) -> None:
    """Move the clock to `seconds` after the open and run an evaluation tick."""
    clock.now = opened + seconds
    service.tick()


def test_an_unacknowledged_call_climbs_level_by_level_at_the_right_times(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make(make_service)
    opened = clock()
    call_id = open_call(service, clock)
    assert told(service) == [("team", "open"), ("bob-phone", "open")], "bob is on call"
    assert next_on_call(service.config.notifications, GROUP, clock()) == "carol"
    status = service.escalations.status(service.store.get_call(call_id), clock())
    assert (status.level, status.levels, status.next_at) == (0, 3, opened + FIRST)
    assert status.next_names == ("carol",)

    at(service, clock, opened, FIRST - 1)
    assert escalated_to(service) == [], "not before respond_within"
    at(service, clock, opened, FIRST)
    assert escalated_to(service) == ["bob-phone", "carol-phone", "team"]
    status = service.escalations.status(service.store.get_call(call_id), clock())
    assert (status.level, status.reached_at, status.next_at) == (1, opened + FIRST, opened + SECOND)
    assert status.next_names == ("dave",)

    at(service, clock, opened, SECOND - 1)
    assert len(escalated_to(service)) == 3
    at(service, clock, opened, SECOND)
    assert escalated_to(service).count("dave-phone") == 1
    at(service, clock, opened, THIRD - 1)
    assert "managers" not in escalated_to(service)
    at(service, clock, opened, THIRD)
    assert escalated_to(service).count("managers") == 1
    at(service, clock, opened, THIRD + 86400)
    # Each level: the team, bob (on call) and whoever it reaches; carol, of the rota, once
    # told hears the rest, as the rule's on-call channels do.
    assert len(escalated_to(service)) == 3 + 4 + 4, "the last level is the last"
    status = service.escalations.status(service.store.get_call(call_id), clock())
    assert (status.level, status.next_at) == (3, None)

    history = [e for e in service.store.call_events(call_id) if e.kind == "escalated"]
    assert [e.at for e in history] == [opened + FIRST, opened + SECOND, opened + THIRD]
    assert history[0].text.startswith(
        "Not acknowledged 10 min after it opened: escalated to carol (level 1 of 3)."
    )
    assert "escalated to dave (level 2 of 3)" in history[1].text
    assert "escalated to channel managers (level 3 of 3)" in history[2].text
    audit = [a for a in service.store.list_audit(50) if a.action == "call.escalate"]
    assert sorted((a.at, a.actor, a.target, a.detail, a.via) for a in audit) == [
        (opened + FIRST, "runwatch", f"call {call_id}", "level 1 of 3: carol", "escalation"),
        (opened + SECOND, "runwatch", f"call {call_id}", "level 2 of 3: dave", "escalation"),
        (
            opened + THIRD,
            "runwatch",
            f"call {call_id}",
            "level 3 of 3: channel managers",
            "escalation",
        ),
    ]

    # Everyone the escalation reached hears that it is over.
    service.by_hand.resolve_call(call_id, "carol", "disk cleaned")
    resolves = sorted(c for c, event in told(service) if event == "resolve")
    assert resolves == ["bob-phone", "carol-phone", "dave-phone", "managers", "team"]


def test_each_level_waits_for_its_own_delay_by_default_respond_within(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make(make_service, levels=[{"people": ["dave"]}, {"channels": ["managers"]}])
    opened = clock()
    open_call(service, clock)
    at(service, clock, opened, 600)
    at(service, clock, opened, 1199)
    assert escalated_to(service) == ["bob-phone", "dave-phone", "team"]
    at(service, clock, opened, 1200)
    assert "managers" in escalated_to(service)


def sign_in_and_ack(service: CollectorService, call_id: int) -> None:
    """Acknowledge in the console, as a person does: sign in, open the call, press the button."""
    token = add_token(service.config.operator_tokens_file, "alice")
    with TestClient(create_app(service)) as client:
        client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        page = client.get(f"/calls/{call_id}").text
        assert 'id="call-escalation"' in page
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        answer = client.post(
            f"/calls/{call_id}/acknowledge", data={"csrf": csrf}, follow_redirects=False
        )
        assert answer.status_code == 303


def ack_by_cli(service: CollectorService, call_id: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """`runwatch call ack ID`, its requests sent to the app in process."""
    token = add_token(service.config.operator_tokens_file, "alice")
    with TestClient(create_app(service)) as client:

        def send(url: str, path: str, method: str, token: str, body: Any = None) -> Any:
            answer = client.request(
                method, path, json=body, headers={"Authorization": f"Bearer {token}"}
            )
            if answer.status_code >= 400:
                raise CommandError(f"{path}: HTTP {answer.status_code}")
            return answer.json()

        monkeypatch.setattr(call_cli, "collector_send", send)
        monkeypatch.setenv("RUNWATCH_OPERATOR_TOKEN", token)
        monkeypatch.delenv("RUNWATCH_OPERATOR_TOKEN_FILE", raising=False)
        assert main(["call", "ack", str(call_id)]) == 0


def ack_in_the_store(service: CollectorService, call_id: int) -> None:
    """What every acknowledging path writes, as another replica or a link's POST would."""
    with service.store.transaction():
        service.store.add_call_event(CallEvent(call_id, service.clock(), "acknowledged", "By Al."))


@pytest.mark.parametrize("path", ["console", "cli", "store", "resolve"])
def test_an_acknowledgement_or_a_resolve_stops_the_climb(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    service = make(make_service)
    opened = clock()
    call_id = open_call(service, clock)
    other = open_call(service, clock, "db01")  # nobody answers for this one
    at(service, clock, opened, FIRST)
    assert len(escalated_to(service, call_id)) == 3
    clock.advance(60)
    if path == "console":
        sign_in_and_ack(service, call_id)
    elif path == "cli":
        ack_by_cli(service, call_id, monkeypatch)
    elif path == "store":
        ack_in_the_store(service, call_id)
    else:
        service.resolve_call(call_id, "alice", "fixed")
    for seconds in (SECOND, THIRD, THIRD + 3600):
        at(service, clock, opened, seconds)
    assert len(escalated_to(service, call_id)) == 3, "no level after the acknowledgement"
    assert len(escalated_to(service, other)) == 11, "the other call climbs on"
    status = service.escalations.status(service.store.get_call(call_id), clock())
    stopped = "resolved" if path == "resolve" else "acknowledged"
    assert (status.level, status.next_at, status.stopped) == (1, None, stopped)


def test_an_acknowledgement_in_the_help_desk_stops_the_climb(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    from collector.incidents.sync import TicketSync
    from tests.test_outbox import PRIORITY, RecordingSink

    service = make(make_service)
    sink = RecordingSink()
    service.incidents._external = {"helpdesk": PRIORITY.__getitem__}
    opened = clock()
    with outbox_worker(service, {"helpdesk": sink}, clock=clock) as worker:
        call_id = open_call(service, clock)
        worker.deliver_due()  # the ticket
        (ticket,) = sink.tickets.values()
        sync = TicketSync(
            worker._store,
            {"helpdesk": sink},
            service.config.groups,
            {"helpdesk": PRIORITY.__getitem__},
            notifications=service.incidents.notifications,
        )
        at(service, clock, opened, FIRST)
        sync.run_once(clock())  # the desk's own escalation: a higher priority, no message
        worker.deliver_due()
        assert ticket["priority"] == "P1"
        assert escalated_to(service) == ["bob-phone", "carol-phone", "team"], "told once"
        ticket["state"] = "open"  # someone took it in the help desk
        clock.advance(60)
        sync.run_once(clock())
        assert service.acknowledged_at(service.store.get_call(call_id)) == clock()
        for seconds in (SECOND, THIRD):
            at(service, clock, opened, seconds)
        assert len(escalated_to(service)) == 3


def test_a_restart_in_the_middle_keeps_the_level(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    first = make(make_service)
    opened = clock()
    call_id = open_call(first, clock)
    at(first, clock, opened, SECOND)  # one tick late for level 1: levels 1 and 2 in turn
    at(first, clock, opened, SECOND + 300)
    assert escalated_to(first).count("dave-phone") == 1
    assert len(escalated_to(first)) == 7
    first.close()

    again = make(make_service)  # the collector after a restart, on the same store
    for seconds in (SECOND + 300, SECOND + 301, SECOND + 300 + 899):
        at(again, clock, opened, seconds)
    assert len(escalated_to(again)) == 7, "no level twice after the restart"
    at(again, clock, opened, SECOND + 300 + 900)  # level 3: 15 min after level 2
    assert escalated_to(again).count("managers") == 1
    kinds = [e.kind for e in again.store.call_events(call_id)]
    assert kinds.count("escalated") == 3


def test_a_step_is_taken_once_whoever_takes_it(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    """Two replicas (on SQLite: two services on one file) read the same call as due; the
    step whose level is written first is the only one told."""
    one, two = make(make_service), make(make_service)
    opened = clock()
    call_id = open_call(one, clock)
    clock.now = opened + FIRST
    (seen_by_two,) = two.store.escalation_candidates([GROUP])
    assert one.escalations is not None and two.escalations is not None
    assert one.escalations.run(clock()) == 1
    assert not two.escalations._step(seen_by_two, 1, clock()), "taken already"
    assert two.escalations.run(clock()) == 0
    assert len(escalated_to(one, call_id)) == 3


def test_two_replicas_ticking_tell_each_level_once(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    """On PostgreSQL the replica holding the evaluation lead takes the steps; on SQLite two
    services on one file both try, and the level written first wins."""
    one, two = make(make_service), make(make_service)
    opened = clock()
    call_id = open_call(one, clock)
    for seconds in (FIRST, SECOND, THIRD):
        clock.now = opened + seconds
        two.tick()
        one.tick()
    assert len(escalated_to(one, call_id)) == 11
    kinds = [e.kind for e in one.store.call_events(call_id)]
    assert kinds.count("escalated") == 3


def test_a_reopened_call_climbs_again_from_its_reopening(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make(make_service, levels=[{"people": ["dave"]}])
    opened = clock()
    reporter = Reporter("web01", clock)
    service.ingest("web01", reporter.report({"fs_used_ratio": 0.97}))
    at(service, clock, opened, FIRST)
    assert escalated_to(service).count("dave-phone") == 1
    service.ingest("web01", reporter.report({"fs_used_ratio": 0.5}))  # resolved
    clock.advance(60)
    service.ingest("web01", reporter.report({"fs_used_ratio": 0.97}))  # back within 1 h
    reopened = clock()
    (call,) = service.calls("open", GROUP)
    assert call.reopened == 1
    at(service, clock, reopened, FIRST - 1)
    assert escalated_to(service).count("dave-phone") == 1
    at(service, clock, reopened, FIRST)
    assert escalated_to(service).count("dave-phone") == 2


@pytest.fixture
def hook() -> Iterator[HookReceiver]:
    with HookReceiver() as receiver:
        yield receiver


def test_each_level_reaches_its_people_on_loopback_receivers(
    make_service: Callable[..., CollectorService], clock: FakeClock, hook: HookReceiver
) -> None:
    pytest.importorskip("apprise", reason="needs apprise (pip install apprise)")
    port = int(hook.url.rpartition(":")[2])
    service = make(make_service, url=lambda name: f"json://127.0.0.1:{port}/{name}")
    opened = clock()
    open_call(service, clock)
    notifier = Notifications(
        build_channels(service.config.notifications), console_url="https://rw.example.org"
    )
    policy = RetryPolicy(base_seconds=10, max_seconds=60)

    def deliver() -> list[tuple[str, dict[str, Any]]]:
        with outbox_worker(
            service, {}, clock=clock, policy=policy, notifications=notifier
        ) as worker:
            worker.deliver_due()
        got = [(path.strip("/"), json.loads(body)) for path, _, body in hook.received]
        hook.received.clear()
        return got

    assert sorted(p for p, _ in deliver()) == ["bob-phone", "team"]
    at(service, clock, opened, FIRST)
    first = dict(deliver())
    assert sorted(first) == ["bob-phone", "carol-phone", "team"]
    assert first["carol-phone"]["title"].endswith("CRITICAL, not acknowledged: escalated")
    assert "escalated to carol (level 1 of 3)" in first["carol-phone"]["message"]
    at(service, clock, opened, SECOND)
    assert "dave-phone" in dict(deliver())
    at(service, clock, opened, THIRD)
    third = dict(deliver())
    assert "managers" in third
    assert "https://rw.example.org/calls/" in third["managers"]["message"]


def test_the_console_shows_the_level_the_next_step_and_who_is_on_call(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make(make_service)
    opened = clock()
    call_id = open_call(service, clock)
    token = add_token(service.config.operator_tokens_file, "alice")
    with TestClient(create_app(service)) as client:
        client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        overview = client.get("/").text
        assert 'id="oncall"' in overview
        assert f"{GROUP}: <strong>bob</strong> until" in overview
        page = client.get(f"/calls/{call_id}").text
        assert "Escalation: not escalated (of 3 levels); next: level 1 to carol" in page
        assert "in 10 min</time>, unless acknowledged before" in page
        at(service, clock, opened, FIRST)
        page = client.get(f"/calls/{call_id}").text
        assert "Escalation: level <strong>1</strong> of 3, reached" in page
        assert "next: level 2 to dave" in page and "in 5 min" in page
        assert ">escalated<" in page, "the step is in the call's history"
        for seconds in (SECOND, THIRD):
            at(service, clock, opened, seconds)
        assert "level <strong>3</strong> of 3" in client.get(f"/calls/{call_id}").text
        assert "the last level" in client.get(f"/calls/{call_id}").text
        answer = client.get(
            f"/api/v1/calls/{call_id}", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert answer["escalation"] == {
            "level": 3,
            "levels": 3,
            "reached_at": opened + THIRD,
            "next_at": None,
            "next_names": [],
            "stopped": "",
        }


@pytest.mark.parametrize(
    ("levels", "path", "words"),
    [
        pytest.param(
            {"nobody": [{"people": ["dave"]}]},
            "notifications -> escalation -> nobody",
            "unknown group 'nobody'",
            id="unknown group",
        ),
        pytest.param(
            {GROUP: [{"people": ["dave"]}, {"people": ["erin"]}]},
            f"notifications -> escalation -> {GROUP} -> 2 -> people",
            "unknown person 'erin'",
            id="unknown person",
        ),
        pytest.param(
            {GROUP: [{"channels": ["sms"]}]},
            f"notifications -> escalation -> {GROUP} -> 1 -> channels",
            "unknown channel 'sms'",
            id="unknown channel",
        ),
        pytest.param(
            {"computer-operations": [{"next_on_call": True}]},
            "notifications -> escalation -> computer-operations -> 1 -> next_on_call",
            "has no rota",
            id="next on call without a rota",
        ),
        pytest.param(
            {GROUP: [{"after": "5m"}]},
            f"notifications -> escalation -> {GROUP} -> 1 -> people",
            "name who is told",
            id="a level that tells nobody",
        ),
        pytest.param(
            {GROUP: [{"people": ["dave"], "after": "soon"}]},
            f"notifications -> escalation -> {GROUP} -> 1 -> after",
            "duration",
            id="a delay that is no duration",
        ),
        pytest.param(
            {GROUP: [{"people": ["dave"], "wait": "5m"}]},
            f"notifications -> escalation -> {GROUP} -> 1 -> wait",
            "unknown",
            id="an unknown key",
        ),
        pytest.param(
            {GROUP: []},
            f"notifications -> escalation -> {GROUP}",
            "",
            id="no level",
        ),
    ],
)
def test_escalation_mistakes_are_refused_at_load_naming_their_key(
    tmp_path: Any, levels: dict[str, Any], path: str, words: str
) -> None:
    from checks.settings import ConfigError
    from tests.helpers import collector_config

    section = notifications(lambda name: f"json://127.0.0.1:9/{name}", [])
    section["escalation"] = levels
    with pytest.raises(ConfigError) as caught:
        collector_config(tmp_path, [RULE], notifications=section)
    assert caught.value.path == path
    assert words in caught.value.message


def test_steps_come_in_slices_between_which_reports_are_served(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make(make_service, levels=[{"people": ["dave"]}])
    opened = clock()
    hosts = ["web01", "web02", "db01"]
    for host in hosts:
        open_call(service, clock, host)
    clock.now = opened + FIRST
    assert service.escalations is not None
    taken = [0]
    slices = list(service.escalations.steps(clock(), 0.0, taken))
    assert taken == [3] and len(slices) == 3, "one step, then a slice's end"
    assert escalated_to(service).count("dave-phone") == 3


def test_the_link_in_an_escalation_message_stops_the_climb(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    """The person the first level reached presses the button behind the link in that message:
    the call is acknowledged in their name and climbs no more."""
    base = "http://testserver.local"
    groups = {**GROUPS, GROUP: {**GROUPS[GROUP], "respond_within": "10m"}}
    service = make_service(
        [RULE],
        groups=groups,
        staleness={"after_intervals": 3, "owner": "computer-operations"},
        external_url=base,
        notifications=notifications(lambda name: f"json://127.0.0.1:9/{name}", LEVELS),
    )
    opened = clock()
    call_id = open_call(service, clock)
    at(service, clock, opened, FIRST)
    ops = sorted(service.store.list_ops(None, 500), key=lambda op: op.id)
    (message,) = [
        op for op in ops if op.sink == "notify:carol-phone" and op.payload["event"] == "escalation"
    ]
    # The link delivery puts in that message (notify/delivery.py), for its channel.
    links = service.ack_links
    assert links is not None
    found = re.search(
        re.escape(base) + r"(/ack/[\w.-]+)", links.url_for(message.payload, "carol-phone")
    )
    assert found, message.payload
    with TestClient(create_app(service)) as client:
        page = client.get(found.group(1))
        assert page.status_code == 200 and "carol" in page.text
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        done = client.post(found.group(1), data={"csrf": csrf}, headers={"Origin": base})
        assert done.status_code == 200, done.text
    for seconds in (SECOND, THIRD, THIRD + 3600):
        at(service, clock, opened, seconds)
    assert len(escalated_to(service, call_id)) == 3, "no level after the link's acknowledgement"
    status = service.escalations.status(service.store.get_call(call_id), clock())
    assert (status.level, status.stopped) == (1, "acknowledged")
    (text,) = [e.text for e in service.store.call_events(call_id) if e.kind == "acknowledged"]
    assert "carol" in text
