"""A rate digest through a kill -9: a real collector process with `rate_limit: 5 per 1m` gets a
burst of 50 calls while the mail server is down. Five mails and one digest wait; the digest is
tried (and so takes in the other 45) before the process is killed with kill -9 and started
again. Once the mail server is back, the mailbox holds exactly six mails, each Message-ID once,
and the digest names all 45 calls. On both stores; slow (the window is a real minute)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import mailserver
from tests.procs import Processes, wait_for
from tests.test_notify_fault import Collector

pytestmark = [
    pytest.mark.skipif(bool(mailserver.missing()), reason=str(mailserver.missing())),
    pytest.mark.slow,
]


@pytest.fixture
def mail_system(processes: Processes) -> Iterator[mailserver.MailSystem]:
    system = mailserver.start_mail_system(processes, ["ops"])
    try:
        yield system
    finally:
        system.close()


def test_a_rate_digest_survives_kill_9_and_is_mailed_once(
    tmp_path: Path,
    processes: Processes,
    mail_system: mailserver.MailSystem,
    store_backend: dict[str, Any],
) -> None:
    mail = mail_system
    collector = Collector(tmp_path, processes, mail, store_backend)
    collector.kill()
    config = yaml.safe_load(collector.config.read_text())
    config["notifications"]["rate_limit"] = {"messages": 5, "per": "1m"}
    collector.config.write_text(yaml.safe_dump(config))
    collector.start()
    box = mailserver.Mailbox(mail, "ops")
    mail.stop_smtp()
    try:
        collector.report_all(0.97)  # 50 calls at once
        wait_for(
            "five mails and one digest waiting",
            lambda: (
                sorted(o["op"] for o in collector.outbox("pending")) == ["digest"] + ["notify"] * 5
            ),
            timeout=60,
        )
        wait_for(
            "the digest tried once (it then carries the 45 held back)",
            lambda: any(
                o["op"] == "digest" and o["attempts"] >= 1 for o in collector.outbox("pending")
            ),
            timeout=150,
        )
        collector.kill()  # kill -9 with the digest sealed and unsent
        collector.start()
    finally:
        mail.start_smtp()
    wait_for("the outbox to drain", lambda: not collector.outbox("pending"), timeout=150)
    assert not collector.outbox("dead")
    mails = box.wait_for(6, timeout=60)
    time.sleep(1)  # anything sent twice would arrive now
    mails = box.messages()
    ids = Counter(str(m["Message-ID"]) for m in mails)
    assert len(mails) == 6 and all(n == 1 for n in ids.values()), ids.most_common(3)
    (digest,) = [m for m in mails if str(m["Message-ID"]).startswith("<runwatch-digest-")]
    assert str(digest["Subject"]) == "[runwatch] 45 notification(s) held back by the rate limit"
    named = [line for line in digest.get_content().splitlines() if "[runwatch #" in line]
    assert len(named) == 45
    opened = {int(str(m["X-Runwatch-Call"])) for m in mails if m["X-Runwatch-Call"]}
    in_digest = {int(line.split("[runwatch #")[1].split("]")[0]) for line in named}
    assert len(opened) == 5 and not opened & in_digest
    assert len(opened | in_digest) == 50, "every call told exactly once"
    box.close()
