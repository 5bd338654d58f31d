"""Notifications by e-mail against a real mail system: postfix on loopback delivering to
mailboxes that dovecot serves over IMAP. The tests read the mailbox as a person's client would:
one thread per call, with its updates and its resolution in it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.app import CollectorService
from collector.incidents.outbox import RetryPolicy
from collector.notify.delivery import Notifications, build_channels
from tests import mailserver
from tests.helpers import FS_RULE, FakeClock, Reporter
from tests.helpers.sinks import outbox_worker
from tests.procs import Processes

pytestmark = pytest.mark.skipif(bool(mailserver.missing()), reason=str(mailserver.missing()))

CONSOLE = "https://runwatch.example.org"
RULE = {**FS_RULE, "for": "0s"}


@pytest.fixture(scope="module")
def mail_system() -> Iterator[mailserver.MailSystem]:
    processes = Processes()
    system = mailserver.start_mail_system(processes, ["ops", "dba"])
    try:
        yield system
    finally:
        system.close()
        processes.stop_all()


@pytest.fixture
def ops_box(mail_system: mailserver.MailSystem) -> Iterator[mailserver.Mailbox]:
    if not mail_system.smtp_up():
        mail_system.start_smtp()
    box = mailserver.Mailbox(mail_system, "ops")
    box.clear()
    yield box
    box.clear()
    box.close()


def email_channel(system: mailserver.MailSystem, **smtp: Any) -> dict[str, Any]:
    return {
        "type": "email",
        "smtp": {"host": "127.0.0.1", "port": system.smtp_port, "security": "none", **smtp},
        "from": "runwatch <runwatch@runwatch.test>",
        "to": ["ops@example.org"],
    }


def notifying(
    make_service: Callable[..., CollectorService], channel: dict[str, Any], **rule: Any
) -> CollectorService:
    return make_service(
        [RULE],
        external_url=CONSOLE,
        dashboard_url="https://grafana.example.org/d/hosts?var-host={{ host }}",
        notifications={
            "channels": {"ops-mail": channel},
            "rules": [{"groups": ["systems-administration"], "channels": ["ops-mail"], **rule}],
        },
    )


def feed(service: CollectorService, reporter: Reporter, value: float) -> None:
    service.ingest(reporter.host, reporter.report({"fs_used_ratio": value}))


def worker_for(service: CollectorService, clock: FakeClock) -> Any:
    notifications = Notifications(build_channels(service.config.notifications), console_url=CONSOLE)
    policy = RetryPolicy(base_seconds=10, max_seconds=60)
    return outbox_worker(service, {}, clock=clock, policy=policy, notifications=notifications)


def test_one_thread_per_call_with_its_updates_and_resolution(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    mail_system: mailserver.MailSystem,
    ops_box: mailserver.Mailbox,
) -> None:
    service = notifying(make_service, email_channel(mail_system))
    web, db = Reporter("web01", clock), Reporter("db01", clock)
    feed(service, web, 0.90)  # WARNING: web01's call opens
    feed(service, db, 0.97)  # CRITICAL: db01's call opens
    clock.advance(60)
    feed(service, web, 0.97)  # web01 becomes CRITICAL
    clock.advance(60)
    feed(service, web, 0.50)  # web01 recovers
    with worker_for(service, clock) as worker:
        assert worker.deliver_due() == 4
    mails = ops_box.wait_for(4)
    assert len(mails) == 4, mail_system.log()[-3000:]
    by_subject = {str(m["Subject"]): m for m in mails}
    web_call, db_call = (
        c.id for c in sorted(service.calls(None, None), key=lambda c: c.host != "web01")
    )
    opened = by_subject[f"[runwatch #{web_call}] web01 filesystem_full {{mountpoint=/}}: WARNING"]
    severity = by_subject[
        f"Re: [runwatch #{web_call}] web01 filesystem_full {{mountpoint=/}}: WARNING -> CRITICAL"
    ]
    thread = f"[runwatch #{web_call}] web01 filesystem_full {{mountpoint=/}}"
    resolved = by_subject[f"Re: {thread}: RESOLVED (was CRITICAL)"]
    root = opened["Message-ID"]
    assert re.fullmatch(rf"<runwatch-call-{web_call}-[0-9a-f]{{16}}@runwatch\.test>", root)
    for reply in (severity, resolved):
        assert reply["In-Reply-To"] == root
        assert reply["References"] == root
        assert reply["Message-ID"] != root
    assert "In-Reply-To" not in opened
    # The ticket's facts in human units, and the links.
    body = opened.get_content()
    assert "90.0%" in body and ">= 85.0%" in body, body
    assert f"Console:   {CONSOLE}/calls/{web_call}" in body
    assert "Dashboard: https://grafana.example.org/d/hosts?var-host=web01" in body
    assert "Recovered:" in resolved.get_content()
    assert opened["Auto-Submitted"] == "auto-generated"
    # The server agrees: two threads, web01's holding its three mails.
    threads = sorted(ops_box.threads(), key=len)
    assert [len(t) for t in threads] == [1, 3], threads
    assert f"[runwatch #{db_call}] db01" in str(mails[threads[0][0] - 1]["Subject"])


def test_a_mail_sent_again_is_the_same_message(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    mail_system: mailserver.MailSystem,
    ops_box: mailserver.Mailbox,
) -> None:
    """What a retry after a crash sends: the same Message-ID, Date and text, so a mail store
    that drops duplicates by Message-ID keeps one."""
    service = notifying(make_service, email_channel(mail_system))
    feed(service, Reporter("web01", clock), 0.97)
    (op,) = service.store.list_ops("pending", 10)
    notifications = Notifications(build_channels(service.config.notifications), console_url=CONSOLE)
    clock.advance(3600)  # the retry comes later: the mail still says when it happened
    notifications.deliver(op, service.store)
    notifications.deliver(op, service.store)
    first, second = ops_box.wait_for(2)
    for header in ("Message-ID", "Date", "Subject"):
        assert first[header] == second[header]
    assert first.get_content() == second.get_content()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_and_authentication(  # noqa: PLR0917 - pytest fixtures
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    mail_system: mailserver.MailSystem,
    ops_box: mailserver.Mailbox,
    tmp_path: Path,
    security: str,
) -> None:
    password = tmp_path / "smtp.password"
    password.write_text(mailserver.PASSWORD + "\n")
    port = mail_system.smtp_port if security == "starttls" else mail_system.smtps_port
    channel = email_channel(
        mail_system,
        port=port,
        security=security,
        username="ops",
        password={"file": str(password)},
        ca_file=str(mail_system.ca_file),
    )
    service = notifying(make_service, channel)
    feed(service, Reporter("web01", clock), 0.97)
    with worker_for(service, clock) as worker:
        assert worker.deliver_due() == 1
    (mail,) = ops_box.wait_for(1)
    assert "CRITICAL" in str(mail["Subject"])
    log = mail_system.log()
    assert "sasl_method=PLAIN, sasl_username=ops" in log or "sasl_username=ops" in log, log[-2000:]


def test_a_wrong_password_is_a_dead_letter_that_never_shows_the_secret(  # noqa: PLR0917 - pytest fixtures
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    mail_system: mailserver.MailSystem,
    ops_box: mailserver.Mailbox,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "not-the-password-7c1f"
    monkeypatch.setenv("RUNWATCH_TEST_SMTP_PASSWORD", wrong)
    channel = email_channel(
        mail_system,
        security="starttls",
        username="ops",
        password={"env": "RUNWATCH_TEST_SMTP_PASSWORD"},
        ca_file=str(mail_system.ca_file),
    )
    service = notifying(make_service, channel)
    feed(service, Reporter("web01", clock), 0.97)
    with worker_for(service, clock) as worker:
        assert worker.deliver_due() == 0
    (dead,) = service.store.list_ops("dead", 10)
    assert dead.sink == "notify:ops-mail"
    assert "535" in (dead.last_error or ""), dead.last_error
    assert wrong not in (dead.last_error or "")
    assert wrong not in caplog.text
    assert ops_box.messages() == []


def test_a_mail_server_down_is_retried_and_the_mail_arrives_once(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    mail_system: mailserver.MailSystem,
    ops_box: mailserver.Mailbox,
) -> None:
    service = notifying(make_service, email_channel(mail_system))
    web = Reporter("web01", clock)
    feed(service, web, 0.97)
    mail_system.stop_smtp()
    try:
        with worker_for(service, clock) as worker:
            assert worker.deliver_due() == 0
            (waiting,) = service.store.list_ops("pending", 10)
            assert waiting.attempts == 1 and "ConnectionRefusedError" in (waiting.last_error or "")
            feed(service, web, 0.50)  # the resolve waits behind the open, in order
            clock.advance(120)
            assert worker.deliver_due() == 0, "still down"
            mail_system.start_smtp()
            clock.advance(120)
            assert worker.deliver_due() == 2
    finally:
        if not mail_system.smtp_up():
            mail_system.start_smtp()
    # Sent in order, but the mail server may hand the two over in either order.
    opened, resolved = sorted(ops_box.wait_for(2), key=lambda m: m["In-Reply-To"] is not None)
    assert "WARNING" not in str(opened["Subject"]) and "CRITICAL" in str(opened["Subject"])
    assert resolved["In-Reply-To"] == opened["Message-ID"]
    assert len(ops_box.wait_for(3, timeout=2)) == 2, "each mail once"


def test_the_self_check_logs_in_and_sends_nothing(
    mail_system: mailserver.MailSystem,
    ops_box: mailserver.Mailbox,
    tmp_path: Path,
) -> None:
    from checks.settings import convert
    from collector.notify.config import EmailChannelConfig
    from collector.notify.mail import EmailChannel

    password = tmp_path / "smtp.password"

    def channel(**smtp: Any) -> EmailChannel:
        settings = {
            "security": "starttls",
            "username": "ops",
            "password": {"file": str(password)},
            "ca_file": str(mail_system.ca_file),
            **smtp,
        }
        data = email_channel(mail_system, **settings)
        data.pop("type")
        return EmailChannel("ops-mail", convert(data, EmailChannelConfig))

    password.write_text(mailserver.PASSWORD)
    assert channel().check() == []
    password.write_text("wrong-password-1234")
    (problem,) = channel().check()
    assert "535" in problem.what and "smtp.password" in problem.fix
    assert "wrong-password-1234" not in problem.what
    password.write_text(mailserver.PASSWORD)
    (untrusted,) = channel(ca_file=None).check()
    assert "not trusted" in untrusted.what and "smtp.ca_file" in untrusted.fix
    mail_system.stop_smtp()
    try:
        (away,) = channel().check()
        assert "ConnectionRefusedError" in away.what and "smtp.host" in away.fix
    finally:
        mail_system.start_smtp()
    assert ops_box.messages() == [], "nothing sent"


def test_check_sinks_names_the_mail_channel(
    mail_system: mailserver.MailSystem, tmp_path: Path
) -> None:
    import json
    import subprocess

    import yaml

    from tests.helpers import RUNWATCH

    (tmp_path / "smtp.password").write_text("wrong-password-5678\n")
    config = tmp_path / "collector.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "sinks": {"register": {"type": "builtin"}},
                "groups": {"ops": {"sink": "register", "assign": "Ops"}},
                "notifications": {
                    "channels": {
                        "ops-mail": email_channel(
                            mail_system,
                            security="starttls",
                            username="ops",
                            password={"file": "smtp.password"},
                            ca_file=str(mail_system.ca_file),
                        ),
                        "hook": {"type": "apprise", "url": "json://127.0.0.1:9/h"},
                    },
                },
            }
        )
    )
    result = subprocess.run(
        [RUNWATCH, "outbox", "check-sinks", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    found = json.loads(result.stdout)
    assert set(found) == {"notify:ops-mail"}, "apprise has nothing to probe, the register neither"
    assert found["notify:ops-mail"]["ok"] is False
    assert "535" in found["notify:ops-mail"]["problems"][0]["what"]
    assert "wrong-password-5678" not in result.stdout + result.stderr


def test_the_mail_carries_a_link_that_acknowledges_the_call_for_its_person(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    mail_system: mailserver.MailSystem,
    ops_box: mailserver.Mailbox,
) -> None:
    """The link as the mailbox holds it (read over IMAP) opens the call, and its POST
    acknowledges it as the person the mail went to; the resolution mail carries none."""
    from litestar.testing import TestClient

    from collector.api.application import create_app

    service = make_service(
        [RULE],
        external_url=CONSOLE,
        notifications={
            "channels": {"ops-mail": email_channel(mail_system)},
            "people": {"alice": {"channels": ["ops-mail"]}},
            "rules": [{"groups": ["systems-administration"], "channels": ["ops-mail"]}],
        },
    )
    web = Reporter("web01", clock)
    feed(service, web, 0.97)
    clock.advance(60)
    feed(service, web, 0.50)
    feed(service, Reporter("db01", clock), 0.97)
    notifications = Notifications(
        build_channels(service.config.notifications),
        console_url=CONSOLE,
        ack_links=service.ack_links,
    )
    policy = RetryPolicy(base_seconds=10, max_seconds=60)
    # Delivered before the app starts: its own outbox worker then finds nothing to send.
    with outbox_worker(
        service, {}, clock=clock, policy=policy, notifications=notifications
    ) as worker:
        assert worker.deliver_due() == 3
    mails = {str(m["Subject"]): m for m in ops_box.wait_for(3)}
    web_call, db_call = (
        c.id for c in sorted(service.calls(None, None), key=lambda c: c.host != "web01")
    )
    opened = mails[f"[runwatch #{web_call}] web01 filesystem_full {{mountpoint=/}}: CRITICAL"]
    resolved = next(m for subject, m in mails.items() if "RESOLVED" in subject)
    other = mails[f"[runwatch #{db_call}] db01 filesystem_full {{mountpoint=/}}: CRITICAL"]
    found = re.search(
        rf"^  Acknowledge: {re.escape(CONSOLE)}(/ack/[\w.-]+)\s*$", opened.get_content(), re.M
    )
    assert found, opened.get_content()
    assert "/ack/" not in resolved.get_content()
    path = re.search(r"^  Acknowledge: \S+?(/ack/[\w.-]+)\s*$", other.get_content(), re.M)
    assert path
    with TestClient(create_app(service)) as client:
        # The call resolved meanwhile: the link says so. Another call's link acknowledges it.
        page = client.get(found.group(1))
        assert page.status_code == 200 and "This call is resolved" in page.text
        page = client.get(path.group(1))
        assert "sent to <strong>alice</strong>" in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        done = client.post(
            path.group(1),
            data={"csrf": csrf.group(1)},
            headers={"Origin": "http://testserver.local"},
        )
        assert done.status_code == 200 and "Acknowledged for alice" in done.text
    (call,) = service.calls("open", None)
    assert call.host == "db01"
    assert [e.text for e in service.store.call_events(call.id) if e.kind == "acknowledged"] == [
        "Acknowledged by alice via notification link."
    ]
