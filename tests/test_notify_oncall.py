"""On-call rotas: a weekly rotation per run group with overrides for holidays and swaps,
`runwatch oncall show`, and notification rules that reach whoever is on call."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from checks.settings import ConfigError
from collector.app import CollectorService
from collector.config import collector_config_from_dict, load_collector_config
from collector.notify.oncall import on_call
from tests.helpers import FS_RULE, RUNWATCH, FakeClock, Reporter

BERLIN = ZoneInfo("Europe/Berlin")
CHANNELS = {
    name: {"type": "apprise", "url": f"json://127.0.0.1:9/{name}"}
    for name in ("alice-phone", "alice-mail", "bob-phone", "carol-phone", "team")
}
PEOPLE = {
    "alice": {"channels": ["alice-phone", "alice-mail"]},
    "bob": {"channels": ["bob-phone"]},
    "carol": {"channels": ["carol-phone"]},
}
ROTA = {
    "people": ["alice", "bob", "carol"],
    "starts": "2027-03-15 09:00",  # a Monday; the clocks go forward on 28 March
    "timezone": "Europe/Berlin",
    "overrides": [
        {
            "start": "2027-03-24 18:00",
            "end": "2027-03-26 09:00",
            "person": "carol",
            "reason": "swap with bob",
        },
    ],
}


def notify(rota: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    return {
        "channels": CHANNELS,
        "people": PEOPLE,
        "rotas": {"systems-administration": rota or ROTA},
        **more,
    }


def config(tmp_path: Path, **more: Any) -> Any:
    return collector_config_from_dict(
        {
            "data_dir": str(tmp_path),
            "sinks": {"helpdesk": {"type": "builtin"}},
            "groups": {
                "systems-administration": {"sink": "helpdesk", "assign": "Sysadmins"},
                "computer-operations": {"sink": "helpdesk", "assign": "Operators"},
            },
            "notifications": notify(**more),
        }
    )


def berlin(day: int, hour: int, minute: int = 0, month: int = 3) -> float:
    return datetime(2027, month, day, hour, minute, tzinfo=BERLIN).timestamp()


@pytest.mark.parametrize(
    ("at", "person", "since", "until"),
    [
        (berlin(15, 9), "alice", berlin(15, 9), berlin(22, 9)),
        (berlin(22, 8, 59), "alice", berlin(15, 9), berlin(22, 9)),
        (berlin(22, 9), "bob", berlin(22, 9), berlin(24, 18)),  # cut short by the swap
        (berlin(26, 9), "bob", berlin(26, 9), berlin(29, 9)),  # back after it
        # Across the change to summer time the handover stays at 09:00 local (a 167 h week).
        (berlin(29, 9), "carol", berlin(29, 9), berlin(5, 9, month=4)),
        (berlin(5, 9, month=4), "alice", berlin(5, 9, month=4), berlin(12, 9, month=4)),
        (berlin(14, 12), "carol", berlin(8, 9), berlin(15, 9)),  # before `starts`: backwards
    ],
)
def test_the_weekly_rotation(
    tmp_path: Path, at: float, person: str, since: float, until: float
) -> None:
    duty = on_call(config(tmp_path).notifications, "systems-administration", at)
    assert duty is not None
    assert (duty.person, duty.since, duty.until) == (person, since, until)
    assert duty.reason == ""


def test_an_override_wins_while_it_lasts(tmp_path: Path) -> None:
    notifications = config(tmp_path).notifications
    duty = on_call(notifications, "systems-administration", berlin(25, 3))
    assert duty is not None
    assert (duty.person, duty.reason) == ("carol", "swap with bob")
    assert (duty.since, duty.until) == (berlin(24, 18), berlin(26, 9))
    assert duty.channels == ("carol-phone",)
    assert on_call(notifications, "computer-operations", berlin(25, 3)) is None, "no rota"


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (
            {"rota": {**ROTA, "people": ["alice", "dave"]}},
            "rotas -> systems-administration -> people",
            "unknown person 'dave'",
        ),
        (
            {
                "rota": {
                    **ROTA,
                    "overrides": [
                        {"start": "2027-03-24 18:00", "end": "2027-03-24 09:00", "person": "bob"}
                    ],
                }
            },
            "rotas -> systems-administration -> overrides",
            "ends first",
        ),
        (
            {"rota": {**ROTA, "timezone": "Berlin"}},
            "rotas -> systems-administration -> timezone",
            "unknown time zone",
        ),
        (
            {"rota": {**ROTA, "starts": "next monday"}},
            "rotas -> systems-administration -> starts",
            "",
        ),
        (
            {"rules": [{"oncall": True, "groups": ["computer-operations"]}]},
            "rules -> 1 -> groups",
            "has no rota",
        ),
        (
            {"rules": [{"groups": ["computer-operations"]}]},
            "rules -> 1 -> channels",
            "oncall: true",
        ),
    ],
)
def test_rota_mistakes_name_their_key(
    tmp_path: Path, change: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, **change)
    assert caught.value.path == f"notifications -> {path}", caught.value
    assert words in caught.value.message


def test_a_person_needs_known_channels(tmp_path: Path) -> None:
    data: dict[str, Any] = {
        "data_dir": str(tmp_path),
        "sinks": {"helpdesk": {"type": "builtin"}},
        "groups": {"ops": {"sink": "helpdesk", "assign": "Ops"}},
        "notifications": {"people": {"eve": {"channels": ["eve-pager"]}}},
    }
    with pytest.raises(ConfigError) as caught:
        collector_config_from_dict(data)
    assert caught.value.path == "notifications -> people -> eve -> channels"


def test_notifications_reach_whoever_is_on_call(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service(
        [{**FS_RULE, "for": "0s"}],
        notifications=notify(rules=[{"channels": ["team"], "oncall": True}]),
    )
    clock.now = berlin(23, 14)  # bob's week
    web = Reporter("web01", clock)
    service.ingest("web01", web.report({"fs_used_ratio": 0.97}))
    clock.now = berlin(25, 3)  # carol stands in for bob
    service.ingest("web01", web.report({"fs_used_ratio": 0.50}))
    ops = sorted(service.store.list_ops(None, 20), key=lambda op: op.id)
    told = [(op.payload["event"], op.sink.removeprefix("notify:")) for op in ops]
    assert told == [
        ("open", "team"),
        ("open", "bob-phone"),
        ("resolve", "team"),
        ("resolve", "bob-phone"),  # bob heard of the call: he hears it is over
        ("resolve", "carol-phone"),
    ]
    assert {op.payload["oncall"] for op in ops} == {"bob", "carol"}
    from collector.notify.message import render

    assert render(ops[0].payload).body.rstrip().endswith("on call: bob")


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "data"),
                "sinks": {"helpdesk": {"type": "builtin"}},
                "groups": {
                    "systems-administration": {"sink": "helpdesk", "assign": "Sysadmins"},
                    "computer-operations": {"sink": "helpdesk", "assign": "Operators"},
                },
                "notifications": {
                    **notify(),
                    "rotas": {
                        "systems-administration": ROTA,
                        "computer-operations": {**ROTA, "people": ["carol"], "overrides": []},
                    },
                },
            }
        )
    )
    load_collector_config(path)
    return path


def oncall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUNWATCH, "oncall", "show", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_oncall_show_at_a_time(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    shown = oncall("--config", str(path), "--at", "2027-03-25 03:00")
    assert shown.returncode == 0, shown.stderr
    header, operations, systems = shown.stdout.splitlines()
    assert header.split() == ["GROUP", "ON", "CALL", "SINCE", "UNTIL", "CHANNELS"]
    assert operations == (
        "computer-operations     carol    2027-03-22 09:00 CET  2027-03-29 09:00 CEST  carol-phone"
    )
    assert systems == (
        "systems-administration  carol    2027-03-24 18:00 CET  "
        "2027-03-26 09:00 CET   carol-phone (swap with bob)"
    )
    as_json = json.loads(
        oncall(
            "--config",
            str(path),
            "--group",
            "systems-administration",
            "--at",
            "2027-03-29T07:00Z",
            "--json",
        ).stdout
    )
    assert as_json == [
        {
            "group": "systems-administration",
            "person": "carol",
            "since": "2027-03-29 09:00 CEST",
            "until": "2027-04-05 09:00 CEST",
            "channels": ["carol-phone"],
            "reason": "",
            "timezone": "Europe/Berlin",
        }
    ]


def test_oncall_show_refuses_a_group_without_rota_and_a_bad_time(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    unknown = oncall("--config", str(path), "--group", "dba")
    assert unknown.returncode != 0
    assert "group 'dba' has no rota" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    bad = oncall("--config", str(path), "--at", "tomorrow")
    assert bad.returncode != 0 and "--at 'tomorrow'" in bad.stderr
    now = oncall("--config", str(path))
    assert now.returncode == 0 and now.stdout.startswith("GROUP")


def test_the_call_page_says_who_is_on_call(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    from litestar.testing import TestClient

    from collector.api.application import create_app
    from collector.auth import add_token

    service = make_service(
        [{**FS_RULE, "for": "0s"}],
        notifications=notify(rules=[{"channels": ["team"], "oncall": True}]),
    )
    clock.now = berlin(25, 3)  # carol stands in for bob
    service.ingest("web01", Reporter("web01", clock).report({"fs_used_ratio": 0.97}))
    (call,) = service.calls("open", None)
    token = add_token(service.config.operator_tokens_file, "alice")
    with TestClient(create_app(service)) as client:
        signed = client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        assert signed.status_code == 303
        page = client.get(f"/calls/{call.id}").text
        # Until when: relative on the page, the absolute UTC time in the <time> element.
        assert (
            '<p id="call-oncall">On call for systems-administration: <strong>carol</strong> '
            'until <time datetime="2027-03-26T08:00:00Z" title="2027-03-26 08:00:00 UTC">'
        ) in page
        assert "(swap with bob).</p>" in page
        clock.now = berlin(29, 10)  # a new week, and a new session: the old one expired
        client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        assert (
            '<strong>carol</strong> until <time datetime="2027-04-05T07:00:00Z"'
            in client.get(f"/calls/{call.id}").text
        )
    service.config = config_without_rotas(service)
    with TestClient(create_app(service)) as client:
        client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        assert 'id="call-oncall"' not in client.get(f"/calls/{call.id}").text


def config_without_rotas(service: CollectorService) -> Any:
    import msgspec

    notifications = msgspec.structs.replace(service.config.notifications, rotas={}, rules=[])
    return msgspec.structs.replace(service.config, notifications=notifications)
