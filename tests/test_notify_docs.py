"""The examples of docs/notifications.md, loaded as written and sent through for real: the e-mail
one to postfix and dovecot on loopback, ntfy's to the ntfy stand-in, json:// to a local receiver.
Only the addresses of the servers are swapped for the loopback ones."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from collector.app import CollectorService
from collector.config import load_collector_config
from collector.notify.delivery import Notifications, build_channels
from tests import mailserver
from tests.fakes.ntfy import HookReceiver, NtfyServer
from tests.helpers import RUNWATCH, FakeClock, Reporter
from tests.helpers.sinks import outbox_worker
from tests.procs import Processes

PAGE = Path(__file__).resolve().parent.parent / "docs" / "notifications.md"
BASE = {
    "sinks": {"register": {"type": "builtin"}},
    "groups": {"ops": {"sink": "register", "assign": "Operations"}},
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


def example(name: str) -> str:
    """The YAML block after `<!-- example: name -->` in the page."""
    text = PAGE.read_text(encoding="utf-8")
    found = re.search(rf"<!-- example: {name} -->\n```yaml\n(.*?)```", text, re.S)
    assert found, f"no example {name!r} in {PAGE.name}"
    return found.group(1)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[CollectorService]]:
    made: list[CollectorService] = []
    yield made
    for service in made:
        service.close()


def collector(
    tmp_path: Path, made: list[CollectorService], text: str, clock: FakeClock
) -> CollectorService:
    data = {**BASE, "data_dir": str(tmp_path / "data"), **yaml.safe_load(text)}
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(data))
    service = CollectorService(load_collector_config(path), clock=clock)
    made.append(service)
    return service


def critical_then_resolved(service: CollectorService, clock: FakeClock) -> int:
    web = Reporter("web01", clock)
    service.ingest("web01", web.report({"fs_used_ratio": 0.97}))
    clock.advance(300)
    service.ingest("web01", web.report({"fs_used_ratio": 0.40}))
    notifications = Notifications(build_channels(service.config.notifications))
    with outbox_worker(service, {}, clock=clock, notifications=notifications) as worker:
        return worker.deliver_due()


@pytest.mark.skipif(bool(mailserver.missing()), reason=str(mailserver.missing()))
def test_the_email_example(
    tmp_path: Path, services: list[CollectorService], clock: FakeClock, processes: Processes
) -> None:
    mail = mailserver.start_mail_system(processes, ["ops", "runwatch"])
    try:
        (tmp_path / "secrets").mkdir()
        (tmp_path / "secrets" / "smtp.password").write_text(mailserver.PASSWORD + "\n")
        data: dict[str, Any] = yaml.safe_load(example("email"))
        smtp = data["notifications"]["channels"]["ops-mail"]["smtp"]
        assert (smtp["host"], smtp["port"], smtp["security"]) == (
            "mail.example.org",
            587,
            "starttls",
        )
        smtp.update(host="127.0.0.1", port=mail.smtp_port, ca_file=str(mail.ca_file))
        service = collector(tmp_path, services, yaml.safe_dump(data), clock)
        assert critical_then_resolved(service, clock) == 2
        box = mailserver.Mailbox(mail, "ops")
        opened, resolved = box.wait_for(2)
        box.close()
        assert str(opened["From"]) == "runwatch <runwatch@example.org>"
        assert resolved["In-Reply-To"] == opened["Message-ID"]
        assert opened["Message-ID"].endswith("@example.org>")
        assert "sasl_username=runwatch" in mail.log()
    finally:
        mail.close()


def test_the_ntfy_example(
    tmp_path: Path,
    services: list[CollectorService],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = "tk_docsdocsdocsdocsdocsdocsdoc"
    with NtfyServer(token=token) as ntfy:
        port = ntfy.url.rpartition(":")[2]
        monkeypatch.setenv("RUNWATCH_NTFY_URL", f"ntfy://{token}@127.0.0.1:{port}/ops")
        service = collector(tmp_path, services, example("ntfy"), clock)
        assert critical_then_resolved(service, clock) == 2
        assert [m["topic"] for m in ntfy.messages] == ["ops", "ops"]
        assert ntfy.messages[1]["title"].endswith("RESOLVED (was CRITICAL)")


def test_the_json_example(
    tmp_path: Path, services: list[CollectorService], clock: FakeClock
) -> None:
    with HookReceiver() as hook:
        text = example("json").replace("hooks.example.org", hook.url.removeprefix("http://"))
        service = collector(tmp_path, services, text, clock)
        assert critical_then_resolved(service, clock) == 2
        bodies = [json.loads(body) for path, _, body in hook.received if path == "/runwatch"]
        assert [b["type"] for b in bodies] == ["failure", "success"]
        assert all({"title", "message", "type"} <= set(b) for b in bodies)


def test_the_quiet_hours_example(
    tmp_path: Path, services: list[CollectorService], clock: FakeClock
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "smtp.password").write_text("example-password\n")
    berlin = ZoneInfo("Europe/Berlin")
    clock.now = datetime(2027, 1, 15, 23, 10, tzinfo=berlin).timestamp()
    service = collector(tmp_path, services, example("quiet-hours"), clock)
    web = Reporter("web01", clock)
    service.ingest("web01", web.report({"fs_used_ratio": 0.90}))  # WARNING at 23:10
    (held,) = service.store.list_ops("pending", 10)
    assert held.next_attempt_at == datetime(2027, 1, 16, 7, 30, tzinfo=berlin).timestamp()
    clock.now = datetime(2027, 1, 16, 3, 0, tzinfo=berlin).timestamp()
    service.ingest("web01", web.report({"fs_used_ratio": 0.97}))  # CRITICAL at 03:00
    due = service.store.due_ops(clock(), 10)
    assert [op.payload["event"] for op in due] == ["open"], "the WARNING first, then the rest"
    assert all(op.next_attempt_at == clock() for op in service.store.list_ops("pending", 10))


def test_the_rota_example_and_its_oncall_show(
    tmp_path: Path,
    services: list[CollectorService],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for person in ("ALICE", "BOB", "CAROL"):
        monkeypatch.setenv(f"RUNWATCH_{person}_NTFY", f"ntfy://127.0.0.1:9/{person.lower()}")
    berlin = ZoneInfo("Europe/Berlin")
    clock.now = datetime(2027, 1, 13, 15, 0, tzinfo=berlin).timestamp()  # bob's Wednesday
    service = collector(tmp_path, services, example("rota"), clock)
    web = Reporter("web01", clock)
    service.ingest("web01", web.report({"fs_used_ratio": 0.90}))
    clock.now = datetime(2027, 1, 14, 10, 0, tzinfo=berlin).timestamp()  # carol stands in
    service.ingest("web01", web.report({"fs_used_ratio": 0.40}))
    ops = sorted(service.store.list_ops(None, 20), key=lambda op: op.id)
    assert [(op.payload["event"], op.sink) for op in ops] == [
        ("open", "notify:team"),
        ("open", "notify:bob-phone"),
        ("resolve", "notify:team"),
        ("resolve", "notify:bob-phone"),
        ("resolve", "notify:carol-phone"),
    ]
    # The command and its output, as the page shows them.
    page = PAGE.read_text(encoding="utf-8")
    shown = re.search(r"```console\n\$ (runwatch oncall show .*?)\n(.*?)```", page, re.S)
    assert shown
    argv = shlex.split(shown.group(1))
    argv[argv.index("--config") + 1] = str(tmp_path / "collector.yaml")
    result = subprocess.run(
        [RUNWATCH, *argv[1:]], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown.group(2)


def test_the_ack_links_example(
    tmp_path: Path, services: list[CollectorService], clock: FakeClock
) -> None:
    """The example's key file and expiry apply, and the message to alice's phone carries a
    link in her name that works for 12 hours."""
    (tmp_path / "secrets").mkdir()
    key = "k" * 64
    (tmp_path / "secrets" / "ack-links.key").write_text(key + "\n")
    service = collector(tmp_path, services, example("ack-links"), clock)
    links = service.ack_links
    assert links is not None and links.expire_after == 12 * 3600
    service.ingest("web01", Reporter("web01", clock).report({"fs_used_ratio": 0.97}))
    (op,) = service.store.list_ops("pending", 10)
    notifications = Notifications(
        build_channels(service.config.notifications),
        console_url="https://runwatch.example.org",
        ack_links=links,
    )
    body = notifications.message(op, service.store).body
    found = re.search(r"Acknowledge: https://runwatch\.example\.org/ack/(\S+)", body)
    assert found, body
    from collector.notify.ack import AckLinkKeys

    link = AckLinkKeys([key.encode()]).read(found.group(1), clock())
    assert (link.recipient, link.expires_at) == ("alice", clock() + 12 * 3600)
    assert not (service.config.data_dir / "ack-links.secret").exists()
