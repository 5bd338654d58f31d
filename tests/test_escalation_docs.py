"""The worked example of docs/escalation.md, loaded as written and played through with a
controlled clock: at each time of its timeline, the people the table names (and only they)
receive a message, delivered to a receiver on loopback."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from collector.app import CollectorService
from collector.config import load_collector_config
from collector.notify.delivery import Notifications, build_channels
from tests.fakes.ntfy import HookReceiver
from tests.helpers import FakeClock, Reporter
from tests.helpers.sinks import outbox_worker

PAGE = Path(__file__).resolve().parent.parent / "docs" / "escalation.md"
BERLIN = ZoneInfo("Europe/Berlin")
BASE = {
    "sinks": {"helpdesk": {"type": "builtin"}},
    "rules": [
        {
            "name": "disk_full",
            "metric": "fs_used_ratio",
            "warning": 0.85,
            "critical": 0.95,
            "owner": "ops",
        }
    ],
}


def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def example() -> str:
    found = re.search(r"<!-- example: escalation -->\n```yaml\n(.*?)```", page(), re.S)
    assert found, f"no escalation example in {PAGE.name}"
    return found.group(1)


def timeline() -> list[tuple[str, str, list[str]]]:
    """(HH:MM, what happens, who receives) of each row of the page's timeline."""
    found = re.search(r"<!-- timeline: escalation -->\n(.*?)\n\n", page(), re.S)
    assert found, f"no timeline in {PAGE.name}"
    rows = []
    for line in found.group(1).splitlines()[2:]:
        when, what, who = (cell.strip() for cell in line.strip("|").split("|"))
        rows.append((when, what, [] if who == "nobody" else who.split(", ")))
    return rows


@pytest.fixture
def hook() -> Iterator[HookReceiver]:
    with HookReceiver() as receiver:
        yield receiver


def test_the_worked_example_and_its_timeline(
    tmp_path: Path, clock: FakeClock, hook: HookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("apprise", reason="needs apprise (pip install apprise)")
    address = hook.url.removeprefix("http://")
    for person in ("alice", "bob", "dave"):
        monkeypatch.setenv(f"RUNWATCH_{person.upper()}_NTFY", f"json://{address}/{person}")
    data = {
        **BASE,
        "data_dir": str(tmp_path / "data"),
        **yaml.safe_load(example().replace("hooks.example.org/ops", f"{address}/team")),
    }
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(data))
    service = CollectorService(load_collector_config(path), clock=clock)
    notifier = Notifications(build_channels(service.config.notifications))
    web = Reporter("web01", clock)
    try:
        for when, what, who in timeline():
            hour, minute = map(int, when.split(":"))
            clock.now = datetime(2027, 1, 5, hour, minute, tzinfo=BERLIN).timestamp()
            if "opens" in what:
                service.ingest("web01", web.report({"fs_used_ratio": 0.97}))
            elif "acknowledges" in what:
                (call,) = service.calls("open", "ops")
                service.acknowledge_call(call.id, "bob", via="console")
            elif "resolves" in what:
                service.ingest("web01", web.report({"fs_used_ratio": 0.40}))
            service.tick()
            with outbox_worker(service, {}, clock=clock, notifications=notifier) as worker:
                worker.deliver_due()
            received = sorted(p.strip("/") for p, _, _ in hook.received)
            assert received == sorted(who), f"at {when}: {what}"
            if when == "03:15":
                (bob,) = [json.loads(b) for p, _, b in hook.received if p == "/bob"]
                assert (
                    "Not acknowledged 15 min after it opened: escalated to bob (level 1 of 2)."
                    in bob["message"]
                )
            hook.received.clear()
    finally:
        service.close()
