"""The Request Tracker sink against a real RT 5 (tests/services/rt.sh installs it)."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from checks.settings import ConfigError, convert
from collector.sinks.contract import NewTicket, SinkError, TicketRef
from collector.sinks.rt import RTSink, RTSinkConfig
from runwatch.cli import main
from tests import helpdesk_rt
from tests.helpdesk_rt import RTServer, free_port
from tests.helpers.recipes import DOCS, run_recipe
from tests.helpers.sinks import assert_refused_for_credentials

pytestmark = pytest.mark.slow

# The session fixture, under its own name so that test arguments can take it.
rt_server = helpdesk_rt.rt_server

MakeSink = Callable[..., RTSink]


@pytest.fixture
def make_sink(rt_server: RTServer, tmp_path: Path) -> MakeSink:
    token_file = tmp_path / "rt.token"
    token_file.write_text(rt_server.token + "\n")

    def make(**options: Any) -> RTSink:
        data = {
            "type": "rt",
            "url": rt_server.url,
            "token": {"file": str(token_file)},
            "queue": "Monitoring",
            "timeout": "10s",
            **options,
        }
        return RTSink(convert(data, RTSinkConfig))

    return make


@pytest.fixture
def sink(make_sink: MakeSink) -> RTSink:
    return make_sink()


@pytest.fixture
def rt_api(rt_server: RTServer) -> Any:
    """RT's REST2 API as root, to check what the sink did."""
    with httpx.Client(
        base_url=f"{rt_server.url}/REST/2.0",
        timeout=10,
        headers={"Authorization": f"token {rt_server.token}"},
    ) as client:
        yield client


def fingerprint(suffix: str = "") -> str:
    return uuid.uuid4().hex + suffix


def new_ticket(fp: str, priority: str = "80", **route: str) -> NewTicket:
    return NewTicket(
        fingerprint=fp,
        summary=f"CRITICAL filesystem_full on web1 ({fp[:8]})",
        description="/ is 97% full",
        severity="CRITICAL",
        priority=priority,
        route=route,
        host="web1",
        rule="filesystem_full",
    )


def ticket(rt_api: httpx.Client, ref: TicketRef) -> dict[str, Any]:
    response = rt_api.get(f"/ticket/{ref.remote_id}")
    response.raise_for_status()
    return dict(response.json())


def comments(rt_api: httpx.Client, ref: TicketRef) -> list[str]:
    """The texts of the ticket's comment transactions, from its history."""
    history = rt_api.get(f"/ticket/{ref.remote_id}/history", params={"fields": "Type"})
    history.raise_for_status()
    ids = {item["id"] for item in history.json()["items"] if item["Type"] == "Comment"}
    attachments = rt_api.get(
        f"/ticket/{ref.remote_id}/attachments",
        params={"fields": "Content,TransactionId", "per_page": 100},
    )
    attachments.raise_for_status()
    return [
        item["Content"].strip()
        for item in attachments.json()["items"]
        if item["TransactionId"] in ids
    ]


def test_open_is_found_again_and_again(
    sink: RTSink, rt_api: httpx.Client, rt_server: RTServer
) -> None:
    fp = fingerprint()
    assert sink.find(fp) is None
    ref = sink.open(new_ticket(fp))
    assert ref.url == f"{rt_server.url}/Ticket/Display.html?id={ref.remote_id}"
    assert sink.find(fp) == ref
    assert sink.find(fp) == ref, "a second find must return the same ticket, not a new one"
    data = ticket(rt_api, ref)
    assert data["Priority"] == "80"
    assert data["Subject"].startswith("CRITICAL filesystem_full on web1")
    assert sink.status(ref).state == "new"


def test_comment_lands_in_history(sink: RTSink, rt_api: httpx.Client) -> None:
    ref = sink.open(new_ticket(fingerprint()))
    sink.comment(ref, "still 97% full after 1h")
    assert "still 97% full after 1h" in comments(rt_api, ref)


def test_update_changes_priority_and_subject(sink: RTSink, rt_api: httpx.Client) -> None:
    fp = fingerprint()
    ref = sink.open(new_ticket(fp))
    sink.update(
        ref,
        priority="50",
        summary=f"WARNING filesystem_full on web1 ({fp[:8]})",
        text="down to WARNING: 88% full",
    )
    data = ticket(rt_api, ref)
    assert data["Priority"] == "50"
    assert data["Subject"] == f"WARNING filesystem_full on web1 ({fp[:8]})"
    assert "down to WARNING: 88% full" in comments(rt_api, ref)
    sink.update(ref, priority="50", summary=data["Subject"], text="unchanged: 88% full")


def open_then_resolve(
    sink: RTSink, text: str, *, close: bool, state: tuple[str, str]
) -> tuple[str, TicketRef]:
    """Open a ticket and resolve it; it then has `state` (ours, RT's) and is no longer found."""
    fp = fingerprint()
    ref = sink.open(new_ticket(fp))
    sink.resolve(ref, text, close=close)
    status = sink.status(ref)
    assert (status.state, status.raw) == state
    assert sink.find(fp) is None
    return fp, ref


def test_resolve_then_reopen(sink: RTSink, rt_api: httpx.Client) -> None:
    fp, ref = open_then_resolve(
        sink, "recovered: 70% full", close=False, state=("resolved", "resolved")
    )
    sink.resolve(ref, "recovered again", close=False)  # a retry after a lost answer is harmless
    sink.reopen(ref, "back at 96% full")
    assert sink.status(ref).state == "open"
    assert ticket(rt_api, ref)["Status"] == "open"
    assert sink.find(fp) == ref
    assert {"recovered: 70% full", "back at 96% full"} <= set(comments(rt_api, ref))


def test_close_with_its_own_status(make_sink: MakeSink) -> None:
    sink = make_sink(closed_status="rejected")
    open_then_resolve(sink, "host decommissioned", close=True, state=("closed", "rejected"))


def test_refused_status_change_is_an_error(make_sink: MakeSink) -> None:
    # RT answers 200 with "Status 'fixed' isn't a valid status for this ticket."
    sink = make_sink(resolved_status="fixed")
    ref = sink.open(new_ticket(fingerprint()))
    with pytest.raises(SinkError, match="did not set Status 'fixed'") as caught:
        sink.resolve(ref, "recovered", close=False)
    assert caught.value.retryable is False
    assert "ModifyTicket" not in str(caught.value), "a refusal that is not about rights"


def test_routes_to_queue_and_owner(sink: RTSink, rt_api: httpx.Client) -> None:
    fp = fingerprint()
    ref = sink.open(new_ticket(fp, queue="Operations", owner="opsuser"))
    data = ticket(rt_api, ref)
    queue = rt_api.get(f"/queue/{data['Queue']['id']}").json()
    assert queue["Name"] == "Operations"
    assert data["Owner"]["id"] == "opsuser"
    assert sink.find(fp) == ref, "find looks in every queue, not only the default one"


def test_owner_rt_does_not_know_is_a_warning(
    sink: RTSink, rt_api: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    # RT ignores an unknown owner; the ticket is still good, so it is kept and found.
    fp = fingerprint()
    ref = sink.open(new_ticket(fp, owner="no-such-user"))
    assert ticket(rt_api, ref)["Owner"]["id"] == "Nobody"
    assert "has owner 'Nobody', not 'no-such-user'" in caplog.text
    assert sink.find(fp) == ref


def test_queue_without_the_fingerprint_field_is_an_error(sink: RTSink) -> None:
    # RT drops the unknown custom field silently; the sink must not leave an unfindable ticket.
    with pytest.raises(SinkError, match="apply the custom field 'DedupKey'") as caught:
        sink.open(new_ticket(fingerprint(), queue="General"))
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    "suffix",
    [
        pytest.param("'", id="single quote"),
        pytest.param("' OR 'x' = 'x", id="injection attempt"),
        pytest.param("\\'", id="backslash quote"),
    ],
)
def test_fingerprint_with_quotes(sink: RTSink, suffix: str) -> None:
    fp = fingerprint(suffix)
    assert sink.find(fp) is None
    ref = sink.open(new_ticket(fp))
    assert sink.find(fp) == ref
    assert sink.find(fp.replace("'", "")) is None


def test_bad_token_is_final_and_secret(
    rt_server: RTServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = rt_server.token[:-4] + "0000"
    monkeypatch.setenv("RUNWATCH_TEST_RT_TOKEN", bad)
    config = convert(
        {
            "type": "rt",
            "url": rt_server.url,
            "queue": "Monitoring",
            "token": {"env": "RUNWATCH_TEST_RT_TOKEN"},
        },
        RTSinkConfig,
    )
    sink = RTSink(config)
    calls: list[Callable[[], object]] = [
        lambda: sink.find(fingerprint()),
        lambda: sink.open(new_ticket(fingerprint())),
    ]
    assert_refused_for_credentials(calls, bad, rt_server.token)


def test_errors_never_carry_the_token(sink: RTSink, rt_server: RTServer) -> None:
    with pytest.raises(SinkError) as caught:
        sink.status(TicketRef(remote_id="999999999"))
    assert (caught.value.retryable, caught.value.status) == (False, 404)
    assert rt_server.token not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "path"),
    [
        pytest.param({"priorities": {"CRITICAL": "High"}}, "priorities", id="priority by name"),
        pytest.param({"fingerprint_field": "Dedup'Key"}, "fingerprint_field", id="quote in field"),
        pytest.param({"queue": " "}, "queue", id="blank queue"),
        pytest.param({"project": "x"}, "project", id="unknown key"),
    ],
)
def test_config_errors_name_the_key(options: dict[str, Any], path: str) -> None:
    data = {
        "type": "rt",
        "url": "http://127.0.0.1:1",
        "queue": "Monitoring",
        "token": {"env": "RT_TOKEN"},
        **options,
    }
    with pytest.raises(ConfigError) as caught:
        convert(data, RTSinkConfig)
    assert caught.value.path == path


def test_unreachable_is_retryable(tmp_path: Path) -> None:
    token_file = tmp_path / "rt.token"
    token_file.write_text("1-2-secretsecretsecret")
    config = convert(
        {
            "type": "rt",
            "url": f"http://127.0.0.1:{free_port()}",
            "queue": "Monitoring",
            "timeout": "2s",
            "token": {"file": str(token_file)},
        },
        RTSinkConfig,
    )
    with pytest.raises(SinkError) as caught:
        RTSink(config).find(fingerprint())
    assert caught.value.retryable is True
    assert caught.value.status is None
    assert "secretsecret" not in str(caught.value)


def test_read_ticket_shows_what_people_did_and_not_runwatch(
    sink: RTSink, rt_server: RTServer
) -> None:
    ref = sink.open(new_ticket(fingerprint()))
    sink.comment(ref, "runwatch's own note")
    with httpx.Client(
        base_url=f"{rt_server.url}/REST/2.0",
        timeout=10,
        headers={"Authorization": f"token {rt_server.owner_token}"},  # a person, not runwatch
    ) as person:
        person.post(
            f"/ticket/{ref.remote_id}/comment",
            json={"Content": "Looking at the disk now", "ContentType": "text/plain"},
        ).raise_for_status()
        person.put(f"/ticket/{ref.remote_id}", json={"Owner": "opsuser"}).raise_for_status()
        person.put(f"/ticket/{ref.remote_id}", json={"Status": "open"}).raise_for_status()
        person.post(  # as RT's web UI writes it, with rich text on
            f"/ticket/{ref.remote_id}/comment",
            json={"Content": "<p>Freed <b>20 GiB</b> &amp; done</p>", "ContentType": "text/html"},
        ).raise_for_status()
        person.put(f"/ticket/{ref.remote_id}", json={"Status": "resolved"}).raise_for_status()
    reading = sink.read_ticket(ref)
    assert (reading.status.state, reading.status.raw) == ("resolved", "resolved")
    done = [(a.kind, a.author, a.text) for a in reading.activity]
    assert done == [
        ("comment", "opsuser", "Looking at the disk now"),
        ("assign", "opsuser", "opsuser"),
        ("status", "opsuser", "open"),
        ("comment", "opsuser", "Freed 20 GiB & done"),
        ("close", "opsuser", "resolved"),
    ]
    assert all(abs(a.at - time.time()) < 300 for a in reading.activity), "the desk's own times"


def test_the_owner_recipe_makes_a_user_runwatch_gives_tickets_to(
    rt_server: RTServer, sink: RTSink, rt_api: httpx.Client
) -> None:
    """The recipe in docs/helpdesks/rt.md, run as written, as the user RT runs as."""
    login = f"desk{uuid.uuid4().hex[:8]}"
    made = run_recipe(
        "helpdesks/rt.md",
        "rt owner",
        {"LOGIN": login, "QUEUES": "Operations Monitoring"},
        wrap=lambda argv: rt_server.as_www_data(*argv),
    )
    assert made.returncode == 0, made.stdout + made.stderr

    fp = fingerprint()
    ref = sink.open(new_ticket(fp, queue="Operations", owner=login))

    assert ticket(rt_api, ref)["Owner"]["id"] == login
    user = rt_api.get(f"/user/{login}").json()
    assert user["Privileged"] == 1 and user["EmailAddress"] == f"{login}@example.com"


def documented_rights() -> tuple[set[str], set[str]]:
    """The rights in the table of docs/helpdesks/rt.md: on the queue, and on the custom field."""
    text = (DOCS / "helpdesks" / "rt.md").read_text(encoding="utf-8")
    section = text.split("## Permissions of the integration user", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    names = {name for row in rows for name in re.findall(r"`(\w+)`", row)} - {"DedupKey"}
    field = {name for name in names if name.endswith("CustomField")}
    return names - field, field


@pytest.fixture
def www_data_dir() -> Iterator[Path]:
    """A directory www-data may write to (pytest's tmp_path is closed to it)."""
    path = Path(tempfile.mkdtemp(prefix="runwatch-rt-user-"))
    shutil.chown(path, helpdesk_rt.RUN_AS, helpdesk_rt.RUN_AS)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_integration_user_recipe_makes_a_least_privileged_user_that_works(
    rt_server: RTServer,
    rt_api: httpx.Client,
    www_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The recipe in docs/helpdesks/rt.md, run as written; then the sink with that user's token."""
    login = f"runwatch{uuid.uuid4().hex[:8]}"  # the doc's `runwatch`, one per run of the test
    token_file = www_data_dir / "rt.token"
    made = run_recipe(
        "helpdesks/rt.md",
        "rt integration user",
        {"LOGIN": login, "QUEUES": "Monitoring Operations", "TOKEN_FILE": str(token_file)},
        wrap=lambda argv: rt_server.as_www_data(*argv),
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert token_file.stat().st_mode & 0o077 == 0, "only its owner may read the token"
    token = token_file.read_text().strip()
    assert token and token != rt_server.token

    # Exactly the rights the doc's table lists, on both queues and on the custom field.
    queue_rights, field_rights = documented_rights()
    assert {"ModifyTicket", "CreateTicket"} <= queue_rights and "SeeCustomField" in field_rights
    assert rt_server.rights(login) == {
        *(
            ("RT::Queue", queue, right)
            for queue in ("Monitoring", "Operations")
            for right in queue_rights
        ),
        *(("RT::CustomField", "DedupKey", right) for right in field_rights),
    }

    # The self-check, as people run it, with that token.
    config = tmp_path / "collector.yaml"
    sink_data = {"type": "rt", "url": rt_server.url, "token": {"file": str(token_file)}}
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "sinks": {"rt": {**sink_data, "queue": "Monitoring", "timeout": "10s"}},
                "groups": {"ops": {"sink": "rt", "assign": "ops"}},
                "rules": [],
            }
        )
    )
    assert main(["outbox", "check-sinks", "--config", str(config), "--strict"]) == 0
    assert capsys.readouterr().out.splitlines() == ["rt: OK"]

    # Every call runwatch makes, as that user.
    sink = RTSink(convert({**sink_data, "queue": "Monitoring", "timeout": "10s"}, RTSinkConfig))
    try:
        fp = fingerprint()
        assert sink.find(fp) is None
        ref = sink.open(new_ticket(fp))
        assert ticket(rt_api, ref)["Creator"]["id"] == login
        assert sink.find(fp) == ref
        sink.comment(ref, "still 97% full after 1h")
        sink.update(ref, priority="50", summary=f"WARNING filesystem_full ({fp[:8]})", text="88%")
        assert ticket(rt_api, ref)["Priority"] == "50"
        sink.resolve(ref, "recovered: 70% full", close=False)
        assert sink.status(ref).state == "resolved" and sink.find(fp) is None
        sink.reopen(ref, "back at 96% full")
        assert sink.status(ref).state == "open" and sink.find(fp) == ref
        routed = sink.open(new_ticket(fingerprint(), queue="Operations"))
        assert sink.status(routed).state == "new"
        assert {"still 97% full after 1h", "88%", "recovered: 70% full", "back at 96% full"} <= set(
            comments(rt_api, ref)
        )

        # One right less, and the change it is needed for fails, naming the right.
        rt_server.revoke(login, "ModifyTicket", "Monitoring")
        with pytest.raises(SinkError, match="ModifyTicket") as caught:
            sink.resolve(ref, "recovered", close=False)
        assert caught.value.retryable is False
        assert ticket(rt_api, ref)["Status"] == "open"
        # And without seeing the queue, the self-check names the rights it takes.
        rt_server.revoke(login, "SeeQueue", "Monitoring")
        problems = sink.check()
        assert len(problems) == 1 and "queue 'Monitoring'" in problems[0].what, problems
        assert "SeeQueue" in problems[0].fix
    finally:
        sink.close()
