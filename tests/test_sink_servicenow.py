"""The ServiceNow sink against the fake as strict as the base system (issue 20).

Closing needs itil_admin or admin (refused with 403, or silently ignored with 200); reference
fields are stored as given, so a caller name must be looked up; the close_code choices differ
between releases.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from checks.settings import convert
from collector.sinks.contract import SinkError
from collector.sinks.servicenow import ServiceNowSink, ServiceNowSinkConfig
from tests.fakes.servicenow import FakeServiceNow
from tests.helpers.desks import FP, made, new_ticket

__all__ = ["made"]  # the fixture, imported so that pytest finds it here
ENV = "RUNWATCH_TEST_SNOW_PASSWORD"


@contextmanager
def running(
    monkeypatch: pytest.MonkeyPatch, fake: FakeServiceNow, secret: str | None = None
) -> Iterator[FakeServiceNow]:
    """The fake, started with the sink's password (or `secret`) in ENV, stopped after."""
    fake.start()
    try:
        monkeypatch.setenv(ENV, secret or fake.password)
        yield fake
    finally:
        fake.stop()


def sink_for(made: list[ServiceNowSink], fake: FakeServiceNow, **options: Any) -> ServiceNowSink:
    desk = {"type": "servicenow", "url": fake.url, "timeout": "5s"}
    data = {**desk, "user": fake.user, "password": {"env": ENV}, **options}
    sink = ServiceNowSink(convert(data, ServiceNowSinkConfig))
    made.append(sink)
    return sink


@pytest.fixture
def snow(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServiceNow]:
    with running(monkeypatch, FakeServiceNow()) as fake:
        yield fake


def test_a_close_resolves_by_default_for_a_plain_itil_user(
    snow: FakeServiceNow, made: list[ServiceNowSink]
) -> None:
    sink = sink_for(made, snow)
    ref = sink.open(new_ticket())
    sink.resolve(ref, "Recovered.", close=True)
    record = snow.incident(ref.remote_id)
    assert (record["state"], record["close_code"], record["close_notes"]) == (
        "6",
        "Solution provided",
        "Recovered.",
    )
    assert sink.find(FP) is None
    assert not [r for r in snow.requests_to("PATCH", ".*") if r.body.get("state") == "7"]


@pytest.mark.parametrize("refusal", ["acl", "silent"])
def test_closing_without_itil_admin_is_a_final_error_naming_the_role(
    monkeypatch: pytest.MonkeyPatch, made: list[ServiceNowSink], refusal: str
) -> None:
    fake = FakeServiceNow(close_refusal=refusal)
    with running(monkeypatch, fake):
        sink = sink_for(made, fake, close_state="closed")
        ref = sink.open(new_ticket())
        with pytest.raises(SinkError) as caught:
            sink.resolve(ref, "Recovered.", close=True)
        assert not caught.value.retryable
        assert "itil_admin" in str(caught.value)
        assert fake.incident(ref.remote_id)["state"] == "6"  # resolved at least
        assert any("itil_admin" in p.what for p in sink.check())


def test_closing_with_itil_admin_resolves_then_closes(
    monkeypatch: pytest.MonkeyPatch, made: list[ServiceNowSink]
) -> None:
    fake = FakeServiceNow(roles=("itil", "itil_admin"))
    with running(monkeypatch, fake):
        sink = sink_for(made, fake, close_state="closed")
        ref = sink.open(new_ticket())
        sink.resolve(ref, "Recovered.", close=True)
        states = [r.body.get("state") for r in fake.requests_to("PATCH", ".*")]
        assert states == ["6", "7"]
        assert sink.status(ref).state == "closed"
        sink.resolve(ref, "Recovered.", close=True)  # a retry after a lost answer: no-op
        assert sink.check() == []


def test_a_caller_given_by_user_name_is_stored_as_its_sys_id(
    snow: FakeServiceNow, made: list[ServiceNowSink]
) -> None:
    sink = sink_for(made, snow, caller_id="monitoring")
    ref = sink.open(new_ticket(route={"assignment_group": "Database Administration"}))
    record = snow.incident(ref.remote_id)
    assert snow.user_name(record["caller_id"]) == "monitoring"
    assert snow.group_name(record["assignment_group"]) == "Database Administration"
    sink.open(new_ticket())
    assert len(snow.requests_to("GET", "/api/now/table/sys_user")) == 1  # looked up once


def test_a_caller_given_as_sys_id_is_sent_as_is(
    snow: FakeServiceNow, made: list[ServiceNowSink]
) -> None:
    sys_id = snow.users["monitoring"]
    sink = sink_for(made, snow, caller_id=sys_id)
    ref = sink.open(new_ticket())
    assert snow.incident(ref.remote_id)["caller_id"] == sys_id
    assert not snow.requests_to("GET", "/api/now/table/sys_user")


def test_an_unknown_caller_is_final_and_named(
    snow: FakeServiceNow, made: list[ServiceNowSink]
) -> None:
    sink = sink_for(made, snow, caller_id="nobody")
    with pytest.raises(SinkError, match="caller_id") as caught:
        sink.open(new_ticket())
    assert not caught.value.retryable
    assert snow.incidents == {}


@pytest.mark.parametrize(
    ("release", "close_code", "works"),
    [
        pytest.param("new", "Solution provided", True, id="new release, new code"),
        pytest.param("old", "Solution provided", False, id="old release, new code"),
        pytest.param("old", "Solved (Permanently)", True, id="old release, old code"),
    ],
)
def test_the_close_code_must_be_a_choice_of_the_release(
    monkeypatch: pytest.MonkeyPatch,
    made: list[ServiceNowSink],
    release: str,
    close_code: str,
    works: bool,
) -> None:
    fake = FakeServiceNow(release=release)
    with running(monkeypatch, fake):
        sink = sink_for(made, fake, close_code=close_code)
        problems = sink.check()
        ref = sink.open(new_ticket())
        if works:
            assert problems == []
            sink.resolve(ref, "Recovered.", close=False)
            assert fake.incident(ref.remote_id)["state"] == "6"
            return
        assert [p.what for p in problems if "close_code" in p.what]
        assert "Solved (Permanently)" in problems[0].fix
        with pytest.raises(SinkError) as caught:
            sink.resolve(ref, "Recovered.", close=False)
        assert caught.value.status == 403


@pytest.mark.parametrize(
    ("fake_options", "options", "secret", "expected"),
    [
        pytest.param({}, {}, "wrong-password", "authentication failed", id="bad password"),
        pytest.param({}, {"caller_id": "nobody"}, None, "caller_id", id="unknown caller"),
        pytest.param({"roles": ("snc_read_only",)}, {}, None, "itil", id="no itil role"),
        pytest.param({"release": "old"}, {}, None, "close_code", id="unknown close code"),
    ],
)
def test_the_self_check_names_each_mistake(  # noqa: PLR0917 - pytest fixtures
    monkeypatch: pytest.MonkeyPatch,
    made: list[ServiceNowSink],
    fake_options: dict[str, Any],
    options: dict[str, Any],
    secret: str | None,
    expected: str,
) -> None:
    fake = FakeServiceNow(**fake_options)
    with running(monkeypatch, fake, secret):
        problems = sink_for(made, fake, **options).check()
    assert len(problems) == 1
    assert expected in problems[0].what
    assert problems[0].fix
    assert all(r.method == "GET" for r in fake.requests)
