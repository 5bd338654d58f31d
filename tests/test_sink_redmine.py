"""RedmineSink against a real Redmine 5 (Debian's package, started by tests/helpdesks.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.sinks.contract import NewTicket, Secret, SinkError, TicketRef
from collector.sinks.redmine import SUBJECT_MAX_CHARS, RedmineSink, RedmineSinkConfig
from tests.helpdesks import RedmineServer, redmine_server
from tests.helpers.cases import cases
from tests.helpers.recipes import run_recipe

pytestmark = pytest.mark.slow

__all__ = ["redmine_server"]  # the session fixture, imported so that pytest finds it here

MakeSink = Callable[..., RedmineSink]


# Characters Redmine reads as operators in a filter value, by what they mean to it.
REDMINE_OPERATORS = {
    "leading ! (Redmine's 'is not')": "!",
    "leading ~ (Redmine's 'contains')": "~",
    "leading * (Redmine's 'any')": "*",
    "| (Redmine's value separator)": "a|b",
}


@pytest.fixture
def make_sink(redmine_server: RedmineServer, tmp_path: Path) -> Iterator[MakeSink]:
    """Build sinks against the server (or another URL) with a key read from a file."""
    sinks: list[RedmineSink] = []

    def make(*, key: str | None = None, url: str | None = None, **options: Any) -> RedmineSink:
        key_file = tmp_path / f"key-{len(sinks)}"
        key_file.write_text(redmine_server.api_key if key is None else key)
        config = RedmineSinkConfig(
            url=url or redmine_server.url,
            api_key=Secret(file=str(key_file)),
            project=options.pop("project", "monitoring"),
            **options,
        )
        sink = RedmineSink(config)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


@pytest.fixture
def sink(make_sink: MakeSink) -> RedmineSink:
    return make_sink()


@pytest.fixture
def fingerprint(request: pytest.FixtureRequest) -> str:
    """A fingerprint no other test (or earlier run on the same database) uses."""
    return f"{request.node.name[:40]}-{uuid.uuid4().hex[:12]}"


def new_ticket(fingerprint: str, **changes: Any) -> NewTicket:
    values: dict[str, Any] = {
        "fingerprint": fingerprint,
        "summary": "filesystem_full on web1: / at 97%",
        "description": "Used ratio 0.97 is above the critical threshold 0.95.",
        "severity": "CRITICAL",
        "priority": "",
        "route": {},
        "host": "web1",
        "rule": "filesystem_full",
    }
    values.update(changes)
    return NewTicket(**values)


def issue(server: RedmineServer, ref: TicketRef, *, journals: bool = False) -> dict[str, Any]:
    """The issue as Redmine returns it, read with the admin key, not through the sink."""
    params = {"include": "journals"} if journals else {}
    response = httpx.get(
        f"{server.url}/issues/{ref.remote_id}.json",
        params=params,
        headers={"X-Redmine-API-Key": server.api_key},
        timeout=10,
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()["issue"]
    return result


def notes(data: dict[str, Any]) -> list[str]:
    return [j["notes"] for j in data.get("journals", []) if j.get("notes")]


def fingerprint_value(data: dict[str, Any]) -> str | None:
    values = [f["value"] for f in data["custom_fields"] if f["name"] == "dedup_key"]
    return values[0] if values else None


def test_open_then_find_returns_the_same_issue(
    sink: RedmineSink, redmine_server: RedmineServer, fingerprint: str
) -> None:
    assert sink.find(fingerprint) is None
    ref = sink.open(new_ticket(fingerprint))
    assert ref.url == f"{redmine_server.url}/issues/{ref.remote_id}"
    assert sink.find(fingerprint) == ref
    assert sink.find(fingerprint) == ref  # asking again changes nothing
    data = issue(redmine_server, ref)
    assert data["project"]["id"] == redmine_server.projects["monitoring"]
    assert data["tracker"]["name"] == "Support"  # the shipped default, not the first (Bug)
    assert data["subject"] == "filesystem_full on web1: / at 97%"
    assert data["description"].startswith("Used ratio 0.97")
    assert data["priority"]["name"] == "High"  # CRITICAL's default
    assert fingerprint_value(data) == fingerprint
    assert "assigned_to" not in data


def test_find_ignores_other_fingerprints(sink: RedmineSink, fingerprint: str) -> None:
    ref = sink.open(new_ticket(fingerprint))
    assert sink.find(f"{fingerprint}-other") is None
    assert sink.find(fingerprint.upper()) is None
    assert sink.find(fingerprint) == ref


@pytest.mark.parametrize("prefix", cases(REDMINE_OPERATORS))
def test_find_takes_operator_characters_literally(
    sink: RedmineSink, fingerprint: str, prefix: str
) -> None:
    sink.open(new_ticket(f"{fingerprint}-decoy"))
    assert sink.find(f"{prefix}{fingerprint}") is None
    ref = sink.open(new_ticket(f"{prefix}{fingerprint}"))
    assert sink.find(f"{prefix}{fingerprint}") == ref


def test_comment_adds_a_note(
    sink: RedmineSink, redmine_server: RedmineServer, fingerprint: str
) -> None:
    ref = sink.open(new_ticket(fingerprint))
    sink.comment(ref, "still at 97% after 1h")
    assert notes(issue(redmine_server, ref, journals=True)) == ["still at 97% after 1h"]


def test_update_changes_priority_and_subject(
    sink: RedmineSink, redmine_server: RedmineServer, fingerprint: str
) -> None:
    ref = sink.open(new_ticket(fingerprint, severity="WARNING"))
    assert issue(redmine_server, ref)["priority"]["name"] == "Normal"
    sink.update(
        ref,
        priority="Urgent",
        summary="filesystem_full on web1: / at 99%",
        text="WARNING -> CRITICAL",
    )
    data = issue(redmine_server, ref, journals=True)
    assert data["priority"]["name"] == "Urgent"
    assert data["subject"] == "filesystem_full on web1: / at 99%"
    assert notes(data) == ["WARNING -> CRITICAL"]
    changed = {d["name"] for j in data["journals"] for d in j["details"]}
    assert {"priority_id", "subject"} <= changed


def test_resolve_reopen_close(
    sink: RedmineSink, redmine_server: RedmineServer, fingerprint: str
) -> None:
    ref = sink.open(new_ticket(fingerprint))
    assert sink.status(ref).state == "new"

    sink.resolve(ref, "recovered: / at 70%", close=False)
    assert issue(redmine_server, ref)["status"]["name"] == "Resolved"
    assert sink.find(fingerprint) is None  # Redmine counts Resolved as open; we do not
    status = sink.status(ref)
    assert (status.state, status.raw) == ("resolved", "Resolved")

    sink.reopen(ref, "back at 97%")
    assert issue(redmine_server, ref)["status"]["name"] == "New"
    assert sink.find(fingerprint) == ref
    assert sink.status(ref).state == "new"

    sink.resolve(ref, "recovered for good", close=True)
    data = issue(redmine_server, ref, journals=True)
    assert data["status"]["name"] == "Closed"
    assert notes(data) == ["recovered: / at 70%", "back at 97%", "recovered for good"]
    assert sink.find(fingerprint) is None
    status = sink.status(ref)
    assert (status.state, status.raw) == ("closed", "Closed")


def test_status_open_once_someone_works_on_it(
    sink: RedmineSink, redmine_server: RedmineServer, fingerprint: str
) -> None:
    ref = sink.open(new_ticket(fingerprint))
    response = httpx.put(
        f"{redmine_server.url}/issues/{ref.remote_id}.json",
        json={"issue": {"status_id": 2}},  # In Progress
        headers={"X-Redmine-API-Key": redmine_server.api_key},
        timeout=10,
    )
    assert response.status_code == 204
    status = sink.status(ref)
    assert (status.state, status.raw) == ("open", "In Progress")
    assert sink.find(fingerprint) == ref


def test_status_names_are_configurable(
    make_sink: MakeSink, redmine_server: RedmineServer, fingerprint: str
) -> None:
    sink = make_sink(statuses={"resolved": "feedback", "closed": "6"})  # Rejected
    ref = sink.open(new_ticket(fingerprint))
    sink.resolve(ref, "recovered", close=False)
    assert issue(redmine_server, ref)["status"]["name"] == "Feedback"
    assert sink.status(ref).state == "resolved"
    assert sink.find(fingerprint) is None
    sink.resolve(ref, "done", close=True)
    assert issue(redmine_server, ref)["status"]["name"] == "Rejected"
    assert sink.status(ref).state == "closed"


@pytest.mark.parametrize(
    "assignee",
    [
        pytest.param("opsuser", id="by login"),
        pytest.param("id", id="by user id"),
    ],
)
def test_route_to_another_project_and_assignee(
    sink: RedmineSink, redmine_server: RedmineServer, fingerprint: str, assignee: str
) -> None:
    if assignee == "id":
        assignee = str(redmine_server.setup.opsuser_id)
    route = {"project": "ops", "tracker": "Support", "assignee": assignee}
    ref = sink.open(new_ticket(fingerprint, route=route))
    data = issue(redmine_server, ref)
    assert data["project"]["id"] == redmine_server.projects["ops"]
    assert data["tracker"]["name"] == "Support"
    assert data["assigned_to"]["id"] == redmine_server.setup.opsuser_id
    assert sink.find(fingerprint) == ref  # found across projects


@pytest.mark.parametrize(
    ("configured", "ticket", "expected"),
    [
        pytest.param({}, ("CRITICAL", ""), "High", id="CRITICAL default: High"),
        pytest.param({}, ("STALE", ""), "High", id="STALE default: High"),
        pytest.param({}, ("WARNING", ""), "Normal", id="WARNING default: Normal"),
        pytest.param({}, ("UNKNOWN", ""), "Normal", id="UNKNOWN default: Normal"),
        pytest.param(
            {"CRITICAL": "immediate"}, ("CRITICAL", ""), "Immediate", id="configured name, any case"
        ),
        pytest.param({"WARNING": "1"}, ("WARNING", ""), "Low", id="configured id"),
        pytest.param({}, ("WARNING", "Urgent"), "Urgent", id="ticket's own priority wins"),
    ],
)
def test_priorities_map_to_ids(
    make_sink: MakeSink,
    redmine_server: RedmineServer,
    fingerprint: str,
    *,
    configured: dict[str, str],
    ticket: tuple[str, str],
    expected: str,
) -> None:
    severity, priority = ticket
    sink = make_sink(priorities=configured)
    ref = sink.open(new_ticket(fingerprint, severity=severity, priority=priority))
    assert issue(redmine_server, ref)["priority"]["name"] == expected


def test_long_summary_is_cut_to_redmine_limit(
    sink: RedmineSink, redmine_server: RedmineServer, fingerprint: str
) -> None:
    ref = sink.open(new_ticket(fingerprint, summary="disk full\non " + "x" * 400))
    subject = issue(redmine_server, ref)["subject"]
    assert len(subject) == SUBJECT_MAX_CHARS
    assert subject.startswith("disk full on xxx")
    assert subject.endswith("…")


def test_key_without_admin_needs_the_field_id(
    make_sink: MakeSink, redmine_server: RedmineServer, fingerprint: str
) -> None:
    key = redmine_server.setup.opsuser_api_key
    with pytest.raises(SinkError, match="fingerprint_field_id") as caught:
        make_sink(key=key).find(fingerprint)
    assert caught.value.status == 403
    assert not caught.value.retryable
    sink = make_sink(key=key, fingerprint_field_id=redmine_server.setup.field_id)
    ref = sink.open(
        new_ticket(fingerprint, route={"assignee": str(redmine_server.setup.opsuser_id)})
    )
    assert sink.find(fingerprint) == ref
    assert issue(redmine_server, ref)["author"]["id"] == redmine_server.setup.opsuser_id


def assert_final(error: SinkError, status: int | None) -> None:
    assert not error.retryable
    assert error.status == status


def test_bad_key_is_final_401(make_sink: MakeSink, fingerprint: str) -> None:
    sink = make_sink(key="0" * 40)
    with pytest.raises(SinkError) as caught:
        sink.find(fingerprint)
    assert_final(caught.value, 401)
    with pytest.raises(SinkError) as caught:
        sink.open(new_ticket(fingerprint, route={"tracker": "1"}))
    assert_final(caught.value, 401)


def test_unreachable_is_retryable(make_sink: MakeSink, fingerprint: str) -> None:
    sink = make_sink(url="http://127.0.0.1:1", timeout=2)
    with pytest.raises(SinkError) as caught:
        sink.find(fingerprint)
    assert caught.value.retryable
    assert caught.value.status is None
    assert "127.0.0.1:1" in str(caught.value)


def test_invalid_issue_is_final_422_with_redmine_errors(
    sink: RedmineSink, fingerprint: str
) -> None:
    with pytest.raises(SinkError) as caught:
        sink.open(new_ticket(fingerprint, priority="999"))
    assert_final(caught.value, 422)
    assert "Priority cannot be blank" in str(caught.value)
    assert sink.find(fingerprint) is None


def test_unknown_tracker_is_refused_before_sending(sink: RedmineSink, fingerprint: str) -> None:
    # Redmine itself would file it under the default tracker without a word.
    with pytest.raises(SinkError, match=r"no tracker in project 'monitoring' '9999'") as caught:
        sink.open(new_ticket(fingerprint, route={"tracker": "9999"}))
    assert_final(caught.value, None)
    assert sink.find(fingerprint) is None


def test_missing_issue_is_final_404(sink: RedmineSink) -> None:
    with pytest.raises(SinkError) as caught:
        sink.status(TicketRef("999999"))
    assert_final(caught.value, 404)


def test_key_never_appears_in_errors(
    make_sink: MakeSink, redmine_server: RedmineServer, fingerprint: str
) -> None:
    good = redmine_server.api_key
    bad = "f" * 40
    attempts: list[tuple[str, Callable[[], object]]] = [
        (bad, lambda: make_sink(key=bad).find(fingerprint)),
        (bad, lambda: make_sink(key=bad).comment(TicketRef("1"), "x")),
        (good, lambda: make_sink().open(new_ticket(fingerprint, priority="999"))),
        (good, lambda: make_sink().status(TicketRef("999999"))),
        (good, lambda: make_sink(project="no-such-project").open(new_ticket(fingerprint))),
        (good, lambda: make_sink(url="http://127.0.0.1:1").find(fingerprint)),
        (good, lambda: make_sink().open(new_ticket(fingerprint, route={"assignee": "nobody"}))),
    ]
    for key, attempt in attempts:
        with pytest.raises(SinkError) as caught:
            attempt()
        assert key not in str(caught.value)
        assert key not in repr(caught.value.args)


def test_read_ticket_shows_what_people_did_and_not_runwatch(
    sink: RedmineSink, redmine_server: RedmineServer, fingerprint: str
) -> None:
    ref = sink.open(new_ticket(fingerprint))
    sink.comment(ref, "runwatch's own note")
    setup = redmine_server.setup
    with httpx.Client(
        base_url=redmine_server.url,
        headers={"X-Redmine-API-Key": setup.opsuser_api_key},  # a person, not runwatch
        timeout=10,
    ) as person:
        for change in (
            {"notes": "Looking at the disk now"},
            {"assigned_to_id": setup.opsuser_id, "status_id": 2},  # takes it: In Progress
            {"status_id": 5},  # Closed
        ):
            person.put(f"/issues/{ref.remote_id}.json", json={"issue": change}).raise_for_status()
    reading = sink.read_ticket(ref)
    assert (reading.status.state, reading.status.raw) == ("closed", "Closed")
    done = [(a.kind, a.author, a.text) for a in reading.activity]
    assert done[0] == ("comment", "Ops User", "Looking at the disk now")
    assert sorted(done[1:3]) == [
        ("assign", "Ops User", "Ops User"),
        ("status", "Ops User", "In Progress"),
    ]
    assert done[3:] == [("close", "Ops User", "Closed")]
    assert all(abs(a.at - time.time()) < 300 for a in reading.activity), "the desk's own times"


# -- the recipe in docs/helpdesks/redmine.md, run as written ------------------------------------


def test_the_key_recipe_tells_an_admin_key_from_another(redmine_server: RedmineServer) -> None:
    admin = run_recipe(
        "helpdesks/redmine.md",
        "redmine key",
        {"REDMINE": redmine_server.url, "REDMINE_KEY": redmine_server.api_key},
    )
    assert admin.returncode == 0, admin.stderr
    assert admin.stdout.strip() == "this key may look users up by login"
    other = run_recipe(
        "helpdesks/redmine.md",
        "redmine key",
        {"REDMINE": redmine_server.url, "REDMINE_KEY": redmine_server.setup.opsuser_api_key},
    )
    assert other.returncode != 0 and "403" in other.stderr, other


def test_the_assignee_recipe_makes_a_user_runwatch_assigns_to(
    make_sink: MakeSink, redmine_server: RedmineServer, fingerprint: str
) -> None:
    login = f"desk{uuid.uuid4().hex[:8]}"
    made = run_recipe(
        "helpdesks/redmine.md",
        "redmine assignee",
        {
            "REDMINE": redmine_server.url,
            "REDMINE_KEY": redmine_server.api_key,
            "LOGIN": login,
            "PROJECT": "ops",
            "ROLE": "Developer",
        },
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"{login} (user ") and made.stdout.strip().endswith("in ops")

    ref = make_sink().open(new_ticket(fingerprint, route={"project": "ops", "assignee": login}))

    data = issue(redmine_server, ref)
    assert data["project"]["id"] == redmine_server.projects["ops"]
    assert data["assigned_to"]["name"] == "Operations Desk"
