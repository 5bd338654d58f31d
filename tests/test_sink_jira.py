"""The Jira sink against the fake as strict as Jira Cloud documents it (issue 20).

409 conflicting updates, search that lags writes, transition screens with required fields,
scoped tokens on the API gateway, and internal comments on Jira Service Management.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from checks.settings import convert
from collector.sinks.contract import SinkError
from collector.sinks.jira import JiraSink, JiraSinkConfig
from tests.fakes.jira import PERMISSIONS, RESOLUTION_SCREEN, FakeJira
from tests.helpers.desks import FP, made, new_ticket

__all__ = ["made"]  # the fixture, imported so that pytest finds it here
ENV = "RUNWATCH_TEST_JIRA_TOKEN"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def serve(monkeypatch: pytest.MonkeyPatch, fake: FakeJira, secret: str | None = None) -> FakeJira:
    fake.start()
    monkeypatch.setenv(ENV, secret or fake.api_token)
    return fake


def sink_for(
    made: list[JiraSink], fake: FakeJira, clock: Clock | None = None, **options: Any
) -> JiraSink:
    data = {
        "type": "jira",
        "url": fake.url,
        "timeout": "5s",
        "email": fake.email,
        "api_token": {"env": ENV},
        "project": "OPS",
        **options,
    }
    extra = {"clock": clock} if clock is not None else {}
    sink = JiraSink(convert(data, JiraSinkConfig), **extra)
    made.append(sink)
    return sink


@pytest.fixture
def jira(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJira]:
    fake = serve(monkeypatch, FakeJira())
    yield fake
    fake.stop()


def test_a_conflicting_update_is_retried_not_a_dead_letter(
    jira: FakeJira, made: list[JiraSink]
) -> None:
    sink = sink_for(made, jira)
    ref = sink.open(new_ticket())
    jira.conflicts = 1
    with pytest.raises(SinkError) as caught:
        sink.update(ref, priority="Highest", summary="s", text="worse")
    assert (caught.value.retryable, caught.value.status) == (True, 409)
    sink.update(ref, priority="Highest", summary="s", text="worse")  # the outbox's retry
    assert jira.issue(ref.remote_id).priority == "Highest"
    jira.conflicts = 1
    with pytest.raises(SinkError) as caught:
        sink.resolve(ref, "Recovered.", close=False)
    assert caught.value.retryable


def test_search_lagging_writes_neither_duplicates_nor_finds_a_resolved_issue(
    monkeypatch: pytest.MonkeyPatch, made: list[JiraSink]
) -> None:
    clock = Clock()
    fake = serve(monkeypatch, FakeJira(search_lag_seconds=5, clock=clock))
    try:
        sink = sink_for(made, fake, clock, trust_window="60s")
        ref = sink.open(new_ticket())
        assert sink.find(FP) == ref  # search does not see it yet; the stored reference does
        clock.now += 6
        sink.resolve(ref, "Recovered.", close=False)
        assert sink.find(FP) is None  # search still shows it open
        clock.now += 120
        assert sink.find(FP) is None  # now search agrees
        sink.reopen(ref, "Back.")
        clock.now += 6
        assert sink.find(FP) == ref
        assert len(fake.issues) == 1
    finally:
        fake.stop()


def test_a_reopen_soon_after_the_open_is_trusted_over_search(
    monkeypatch: pytest.MonkeyPatch, made: list[JiraSink]
) -> None:
    clock = Clock()
    fake = serve(monkeypatch, FakeJira(search_lag_seconds=5, clock=clock))
    try:
        sink = sink_for(made, fake, clock, trust_window="60s")
        ref = sink.open(new_ticket())
        sink.resolve(ref, "Recovered.", close=False)
        assert sink.find(FP) is None
        sink.reopen(ref, "Back.")
        assert sink.find(FP) == ref  # search still shows it done
    finally:
        fake.stop()


def test_the_fake_search_lags_writes(monkeypatch: pytest.MonkeyPatch, made: list[JiraSink]) -> None:
    clock = Clock()
    fake = serve(monkeypatch, FakeJira(search_lag_seconds=5, clock=clock))
    try:
        writer, reader = sink_for(made, fake, clock), sink_for(made, fake, clock)
        ref = writer.open(new_ticket())
        assert reader.find(FP) is None
        clock.now += 5
        assert reader.find(FP) == ref
    finally:
        fake.stop()


def test_a_transition_screen_field_comes_from_the_config(
    monkeypatch: pytest.MonkeyPatch, made: list[JiraSink]
) -> None:
    fake = serve(monkeypatch, FakeJira(screens={"Done": RESOLUTION_SCREEN}))
    try:
        bare = sink_for(made, fake)
        ref = bare.open(new_ticket())
        with pytest.raises(SinkError, match="transition_fields") as caught:
            bare.resolve(ref, "Recovered.", close=False)
        assert not caught.value.retryable
        # What the real Jira answers when the field is left out.
        with httpx.Client(base_url=fake.url, auth=(fake.email, fake.api_token)) as client:
            answer = client.post(
                f"/rest/api/3/issue/{ref.remote_id}/transitions", json={"transition": {"id": "31"}}
            )
        assert answer.status_code == 400
        assert "resolution" in answer.json()["errors"]
        filled = sink_for(made, fake, transition_fields={"Done": {"resolution": {"name": "Done"}}})
        filled.resolve(ref, "Recovered.", close=False)
        assert fake.issue(ref.remote_id).status == "Done"
    finally:
        fake.stop()


def test_a_scoped_token_works_through_the_gateway_and_links_go_to_the_site(
    monkeypatch: pytest.MonkeyPatch, made: list[JiraSink]
) -> None:
    fake = serve(monkeypatch, FakeJira(cloud_id="0f6a2b1c", scoped=True))
    try:
        site = "https://example.atlassian.net"
        sink = sink_for(made, fake, url=f"{fake.url}/ex/jira/0f6a2b1c", browse_url=site)
        ref = sink.open(new_ticket())
        assert ref.url == f"{site}/browse/{fake.issue(ref.remote_id).key}"
        assert sink.check() == []
        on_site = sink_for(made, fake)
        problems = on_site.check()
        assert "authentication failed" in problems[0].what
        assert "api.atlassian.com/ex/jira" in problems[0].fix
    finally:
        fake.stop()


@pytest.mark.parametrize(
    ("options", "public"),
    [
        pytest.param({}, False, id="internal by default"),
        pytest.param({"public_comments": True}, True, id="public when configured"),
    ],
)
def test_service_management_comments_are_internal_unless_configured(
    jira: FakeJira, made: list[JiraSink], options: dict[str, Any], public: bool
) -> None:
    sink = sink_for(made, jira, service_desk_id="4", request_type_id="12", **options)
    ref = sink.open(new_ticket())
    sink.comment(ref, "Seen again.")
    sink.resolve(ref, "Recovered.", close=False)
    assert jira.issue(ref.remote_id).public == [public, public]


def test_without_transition_permission_the_check_says_so(
    monkeypatch: pytest.MonkeyPatch, made: list[JiraSink]
) -> None:
    fake = serve(monkeypatch, FakeJira(permissions=set(PERMISSIONS) - {"TRANSITION_ISSUES"}))
    try:
        problems = sink_for(made, fake).check()
    finally:
        fake.stop()
    assert [p.what for p in problems] == [
        "the user lacks TRANSITION_ISSUES in project 'OPS': it cannot resolve and reopen"
    ]


@pytest.mark.parametrize(
    ("options", "secret", "expected", "severity"),
    [
        pytest.param({}, "wrong-token-1234", "authentication failed", "error", id="bad token"),
        pytest.param({"project": "NOPE"}, None, "project 'NOPE'", "error", id="unknown project"),
        pytest.param(
            {"priorities": {"CRITICAL": "Blocker"}}, None, "'Blocker'", "error", id="bad priority"
        ),
        pytest.param(
            {"resolve_transition": "Finished"}, None, "Finished", "warning", id="missing transition"
        ),
        pytest.param({"issue_type": "Epic"}, None, "'Epic'", "error", id="unknown issue type"),
    ],
)
def test_the_self_check_names_each_mistake(  # noqa: PLR0917 - pytest fixtures
    monkeypatch: pytest.MonkeyPatch,
    made: list[JiraSink],
    options: dict[str, Any],
    secret: str | None,
    expected: str,
    severity: str,
) -> None:
    fake = serve(monkeypatch, FakeJira(), secret)
    try:
        problems = sink_for(made, fake, **options).check()
    finally:
        fake.stop()
    assert [(expected in p.what, p.severity) for p in problems] == [(True, severity)]
    assert problems[0].fix
    assert all(r.method == "GET" for r in fake.requests)


def test_a_correct_config_passes_the_self_check(jira: FakeJira, made: list[JiraSink]) -> None:
    assert sink_for(made, jira).check() == []
