"""The Zammad sink against the fake in each search shape Zammad's releases answer with (issue 20).

Up to 6.4 the search answers `{tickets, tickets_count, assets}`; from 6.5 a JSON array, and
`{record_ids, assets, total_count}` with full=true. Tags: since 2024 a new tag needs the
setting tag_new or admin.tag.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from checks.settings import ConfigError, convert
from collector.sinks.contract import SinkError
from collector.sinks.zammad import ZammadSink, ZammadSinkConfig, search_ids
from tests.fakes.zammad import VERSIONS, FakeZammad
from tests.helpers.clock import FakeClock
from tests.helpers.desks import FP, new_ticket

ENV = "RUNWATCH_TEST_ZAMMAD_TOKEN"


def sink_for(fake: FakeZammad, clock: FakeClock | None = None, **options: Any) -> ZammadSink:
    data = {
        "type": "zammad",
        "url": fake.url,
        "timeout": "5s",
        "token": {"env": ENV},
        "group": "Users",
        "customer": "monitoring@example.com",
        **options,
    }
    extra = {"clock": clock} if clock is not None else {}
    return ZammadSink(convert(data, ZammadSinkConfig), **extra)


@pytest.fixture(params=VERSIONS, ids=[f"zammad {v}" for v in VERSIONS])
def zammad(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeZammad]:
    with FakeZammad(version=request.param) as fake:
        monkeypatch.setenv(ENV, fake.token)
        yield fake


def test_open_then_find_in_every_versions_search_shape(zammad: FakeZammad) -> None:
    sink = sink_for(zammad)
    try:
        assert sink.find(FP) is None
        ref = sink.open(new_ticket())
        assert sink.find(FP) == ref
        sink.resolve(ref, "Recovered.", close=False)
        assert sink.find(FP) is None
        sink.reopen(ref, "Back.")
        assert sink.find(FP) == ref
        assert len(zammad.tickets) == 1
    finally:
        sink.close()


@pytest.mark.parametrize(
    ("params", "shape"),
    [
        pytest.param({}, "array", id="default (6.5+): array"),
        pytest.param({"full": "true"}, "record_ids", id="full=true: record_ids"),
        pytest.param({"expand": "true"}, "array", id="expand=true: array with names"),
    ],
)
def test_every_shape_the_fake_serves_is_read(params: dict[str, str], shape: str) -> None:
    import httpx

    with FakeZammad(version="7.0") as fake:
        fake.tickets.clear()
        headers = {"Authorization": f"Token token={fake.token}"}
        with httpx.Client(base_url=fake.url, headers=headers) as client:
            client.post(
                "/api/v1/tickets",
                json={
                    "title": "t",
                    "group": "Users",
                    "customer": "monitoring@example.com",
                    "article": {"body": "b"},
                    "tags": f"rw-{FP}",
                },
            )
            query = f'tags:"rw-{FP}" AND state.name:(new)'
            data = client.get("/api/v1/tickets/search", params={"query": query, **params}).json()
    assert (isinstance(data, list)) == (shape == "array")
    assert search_ids(data) == [1]


def test_the_old_shape_and_records_are_read() -> None:
    assert search_ids({"tickets": [4], "tickets_count": 1, "assets": {}}) == [4]
    assert search_ids({"records": [{"id": 5}], "total_count": 1}) == [5]
    with pytest.raises(SinkError) as caught:
        search_ids({"unexpected": True})
    assert not caught.value.retryable


def test_a_tag_zammad_may_not_create_is_logged_as_an_error_and_the_check_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeZammad(tag_new=False) as fake:
        monkeypatch.setenv(ENV, fake.token)
        sink = sink_for(fake)
        try:
            ref = sink.open(new_ticket())
            assert fake.ticket(ref.remote_id).tags == []  # create skipped it silently
            assert fake.requests_to("POST", "/api/v1/tags/add")
            assert "tag_new" in caplog.text and "admin.tag" in caplog.text
            assert any(r.levelno == logging.ERROR for r in caplog.records)
            assert sink.find(FP) == ref  # not by its tag: by the id this sink kept
            sink.resolve(ref, "Recovered.", close=False)
            assert sink.find(FP) is None
            problems = sink.check()
            assert [p.severity for p in problems] == ["warning"]
            assert "admin.tag" in problems[0].fix
        finally:
            sink.close()


def test_with_admin_tag_the_tag_is_created_without_tag_new(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeZammad(tag_new=False, permissions=("ticket.agent", "admin.tag")) as fake:
        monkeypatch.setenv(ENV, fake.token)
        sink = sink_for(fake)
        try:
            ref = sink.open(new_ticket())
            assert sink.find(FP) == ref
            assert sink.check() == []
        finally:
            sink.close()


@pytest.mark.parametrize(
    ("options", "secret", "expected"),
    [
        pytest.param({}, "wrong-token-0000", "authentication failed", id="bad token"),
        pytest.param({"group": "Nobody"}, None, "group 'Nobody'", id="unknown group"),
        pytest.param(
            {"priorities": {"CRITICAL": "5 urgent"}}, None, "priority '5 urgent'", id="bad priority"
        ),
    ],
)
def test_the_self_check_names_each_mistake(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], secret: str | None, expected: str
) -> None:
    with FakeZammad() as fake:
        monkeypatch.setenv(ENV, secret or fake.token)
        sink = sink_for(fake, **options)
        try:
            problems = [p for p in sink.check() if p.severity == "error"]
        finally:
            sink.close()
    assert len(problems) == 1
    assert expected in problems[0].what
    assert problems[0].fix
    assert all(r.method == "GET" for r in fake.requests)


def test_the_self_check_finds_a_token_without_ticket_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeZammad(permissions=("user_preferences",)) as fake:
        monkeypatch.setenv(ENV, fake.token)
        sink = sink_for(fake)
        try:
            problems = sink.check()
        finally:
            sink.close()
    assert [p.severity for p in problems] == ["error", "warning"]
    assert "ticket.agent" in problems[0].what


class Lagging:
    """A Zammad whose search lags writes by a second, on a clock the test moves."""

    def __init__(self, fake: FakeZammad, clock: FakeClock) -> None:
        self.fake, self.clock = fake, clock
        self.made: list[ZammadSink] = []

    def sink(self, **options: Any) -> ZammadSink:
        self.made.append(sink_for(self.fake, self.clock, **options))
        return self.made[-1]


@pytest.fixture(params=VERSIONS, ids=[f"zammad {v}" for v in VERSIONS])
def lagging(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lagging]:
    clock = FakeClock()
    with FakeZammad(version=request.param, search_lag_seconds=1, clock=clock) as fake:
        monkeypatch.setenv(ENV, fake.token)
        desk = Lagging(fake, clock)
        try:
            yield desk
        finally:
            for sink in desk.made:
                sink.close()


def test_the_fake_search_lags_writes(lagging: Lagging) -> None:
    writer, reader = lagging.sink(), lagging.sink()
    ref = writer.open(new_ticket())
    assert reader.find(FP) is None  # the index has not seen the new ticket
    lagging.clock.advance(1)
    assert reader.find(FP) == ref
    lagging.fake.set_state(ref.remote_id, "closed")
    assert reader.find(FP) == ref  # the index still shows it open
    lagging.clock.advance(1)
    assert reader.find(FP) is None


def test_search_lagging_writes_neither_duplicates_nor_finds_a_closed_ticket(
    lagging: Lagging,
) -> None:
    sink = lagging.sink()
    ref = sink.open(new_ticket())
    assert sink.find(FP) == ref  # search does not see it yet; the stored reference does
    lagging.clock.advance(2)
    sink.resolve(ref, "Recovered.", close=False)
    assert sink.find(FP) is None  # search still shows it open
    sink.reopen(ref, "Back.")
    assert sink.find(FP) == ref  # search still shows it closed
    lagging.clock.advance(120)
    assert sink.find(FP) == ref  # now search agrees
    assert len(lagging.fake.tickets) == 1


def test_an_open_right_after_an_open_makes_no_second_ticket(lagging: Lagging) -> None:
    """What the outbox does: find, and open only if nothing is found."""
    sink = lagging.sink()
    for _ in range(2):
        if sink.find(FP) is None:
            sink.open(new_ticket())
    assert len(lagging.fake.tickets) == 1


def test_a_person_closing_the_ticket_is_seen_once_the_trust_window_passes(
    lagging: Lagging,
) -> None:
    sink = lagging.sink(trust_window="30s")
    ref = sink.open(new_ticket())
    lagging.fake.set_state(ref.remote_id, "closed")
    assert sink.find(FP) == ref  # trusted: no search inside the window
    lagging.clock.advance(31)
    assert sink.find(FP) is None


@pytest.mark.parametrize("value", ["-1s", "soon"])
def test_a_bad_trust_window_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match="trust_window: expected a duration"):
        convert(
            {
                "type": "zammad",
                "url": "https://zammad.example.com",
                "token": {"env": ENV},
                "group": "Users",
                "customer": "monitoring@example.com",
                "trust_window": value,
            },
            ZammadSinkConfig,
        )
