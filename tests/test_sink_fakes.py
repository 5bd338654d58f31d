"""The Jira, ServiceNow, Zammad and webhook sinks against fakes of the vendors' documented APIs.

Jira Cloud, Jira Service Management, ServiceNow and Zammad cannot run here; the fakes in
tests/fakes check every request against the documented shape and answer in it. The webhook sink
posts to a real local HTTP receiver.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from checks.settings import ConfigError, convert
from collector.sinks.contract import NewTicket, SinkError, TicketRef
from collector.sinks.jira import JiraSink, JiraSinkConfig
from collector.sinks.servicenow import ServiceNowSink, ServiceNowSinkConfig
from collector.sinks.webhook import WebhookSink, WebhookSinkConfig
from collector.sinks.zammad import ZammadSink, ZammadSinkConfig
from tests.fakes import FakeHelpDesk, WebhookReceiver
from tests.fakes.jira import FakeJira, JiraIssue, adf_text
from tests.fakes.servicenow import FakeServiceNow
from tests.fakes.zammad import FakeZammad
from tests.helpers.sinks import assert_refused_for_credentials

FP = "5f0c1d2e3a4b5c6d7e8f"
SECRET_ENV = "RUNWATCH_TEST_SINK_SECRET"
WRONG_SECRET = "not-the-right-secret-3141"
SECRET = {"env": SECRET_ENV}
F = TypeVar("F")
S = TypeVar("S")


def new_ticket(priority: str, route: dict[str, str] | None = None) -> NewTicket:
    return NewTicket(
        fingerprint=FP,
        summary="db1: filesystem /var is 97% full",
        description="Used 97% of /var (critical at 95%).\n\nRunbook: wiki/fs-full",
        severity="CRITICAL",
        priority=priority,
        route=route or {},
        host="db1",
        rule="filesystem_full",
        labels={"mountpoint": "/var"},
    )


@dataclass
class View:
    """Where a ticket stands in the fake, in the same words for every help desk."""

    summary: str
    priority: str
    text: str  # every text the ticket holds: description, notes, resolution


@dataclass
class Desk:
    """One help desk under test: the fake, a way to build the sink, and how to read a ticket."""

    fake: FakeHelpDesk
    secret: str
    build: Callable[[], Any]  # a sink using the secret in SECRET_ENV
    view: Callable[[TicketRef], View]
    count: Callable[[], int]
    low: str  # priority values in this sink's vocabulary
    high: str
    resolved_state: str
    route: dict[str, str]  # a valid route for this desk
    routed: Callable[[TicketRef], dict[str, str]]  # where the route keys landed
    fields_after_create: bool = False  # labels and priority are set by a second request


def jira_desk(fake: FakeJira, *, version: int, service_desk: bool = False) -> Desk:
    data: dict[str, Any] = {
        "type": "jira",
        "url": fake.url,
        "timeout": "5s",
        "email": fake.email,
        "api_token": {"env": SECRET_ENV},
        "project": "OPS",
        "api_version": version,
    }
    if service_desk:
        data |= {"service_desk_id": "4", "request_type_id": "12"}

    def routed(issue: JiraIssue) -> dict[str, str]:
        where = {"component": ", ".join(issue.components)}
        return where if service_desk else {"project": issue.project, **where}

    def view(ref: TicketRef) -> View:
        issue = fake.issue(ref.remote_id)
        texts = [adf_text(issue.description), *map(adf_text, issue.comments)]
        return View(issue.summary, issue.priority, "\n".join(texts))

    return Desk(
        fake,
        fake.api_token,
        lambda: JiraSink(convert(data, JiraSinkConfig)),
        view,
        lambda: len(fake.issues),
        "Medium",
        "High",
        "resolved",
        {"component": "Database"} if service_desk else {"project": "DB", "component": "PostgreSQL"},
        lambda ref: routed(fake.issue(ref.remote_id)),
        fields_after_create=service_desk,
    )


def servicenow_desk(fake: FakeServiceNow, close_code: str | None = None) -> Desk:
    data = {
        "type": "servicenow",
        "url": fake.url,
        "timeout": "5s",
        "user": fake.user,
        "password": {"env": SECRET_ENV},
        "caller_id": "monitoring",
        **({"close_code": close_code} if close_code else {}),
    }

    def view(ref: TicketRef) -> View:
        record = fake.incident(ref.remote_id)
        texts = [
            record["description"],
            *(t for _, t in fake.journal[ref.remote_id]),
            record["close_notes"],
        ]
        return View(
            record["short_description"], f"{record['urgency']},{record['impact']}", "\n".join(texts)
        )

    return Desk(
        fake,
        fake.password,
        lambda: ServiceNowSink(convert(data, ServiceNowSinkConfig)),
        view,
        lambda: len(fake.incidents),
        "2,2",
        "1,1",
        "resolved",
        {"assignment_group": "Database Administration"},
        lambda ref: {
            "assignment_group": str(
                fake.group_name(fake.incident(ref.remote_id)["assignment_group"])
            )
        },
    )


def zammad_desk(fake: FakeZammad) -> Desk:
    data = {
        "type": "zammad",
        "url": fake.url,
        "timeout": "5s",
        "token": {"env": SECRET_ENV},
        "group": "Users",
        "customer": "monitoring@example.com",
    }

    def view(ref: TicketRef) -> View:
        ticket = fake.ticket(ref.remote_id)
        return View(ticket.title, ticket.priority, "\n".join(a["body"] for a in ticket.articles))

    return Desk(
        fake,
        fake.token,
        lambda: ZammadSink(convert(data, ZammadSinkConfig)),
        view,
        lambda: len(fake.tickets),
        "2 normal",
        "3 high",
        "closed",
        {"group": "Computer Operations"},
        lambda ref: {"group": fake.group_name(fake.ticket(ref.remote_id).group_id)},
    )


DESKS: dict[str, tuple[Callable[[], Any], Callable[[Any], Desk]]] = {
    "jira v3": (FakeJira, lambda fake: jira_desk(fake, version=3)),
    "jira v2": (FakeJira, lambda fake: jira_desk(fake, version=2)),
    "jira service management": (
        FakeJira,
        lambda fake: jira_desk(fake, version=3, service_desk=True),
    ),
    "servicenow": (FakeServiceNow, servicenow_desk),
    "servicenow, older release": (
        lambda: FakeServiceNow(release="old"),
        lambda fake: servicenow_desk(fake, close_code="Solved (Permanently)"),
    ),
    "zammad": (FakeZammad, zammad_desk),
    "zammad 6.4": (lambda: FakeZammad(version="6.4"), zammad_desk),
}


def serving(name: str, make: Callable[[], F], secret: Callable[[F], str]) -> Any:
    """A fixture `name`: the fake `make()` builds, running, with its secret in SECRET_ENV."""

    @pytest.fixture(name=name)
    def fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[F]:
        with make() as fake:  # type: ignore[attr-defined]
            monkeypatch.setenv(SECRET_ENV, secret(fake))
            yield fake

    return fixture


def built(sinks: list[Any], sink_class: Callable[[Any], S], config_class: type, data: Any) -> S:
    """A sink of `sink_class` configured from `data`, closed after the test."""
    sink = sink_class(convert(data, config_class))
    sinks.append(sink)
    return sink


@pytest.fixture
def sinks() -> Iterator[list[Any]]:
    """Sinks made by a test, closed after it."""
    made: list[Any] = []
    yield made
    for sink in made:
        sink.close()


@pytest.fixture(params=list(DESKS))
def desk(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, sinks: list[Any]
) -> Iterator[Desk]:
    make_fake, describe = DESKS[request.param]
    with make_fake() as fake:
        described = describe(fake)  # after start: the config takes the fake's URL
        monkeypatch.setenv(SECRET_ENV, described.secret)
        build = described.build

        def tracked() -> Any:
            sink = build()
            sinks.append(sink)
            return sink

        described.build = tracked
        yield described


# -- every help desk: the lifecycle, routing and errors ------------------------------------------


def test_lifecycle_open_find_comment_update_resolve_reopen(desk: Desk) -> None:
    sink = desk.build()
    assert sink.find(FP) is None

    ref = sink.open(new_ticket(desk.low))
    assert sink.find(FP) == ref
    assert sink.status(ref).state == "new"
    assert desk.view(ref).priority == desk.low

    sink.comment(ref, "Seen again at 12:05.")
    sink.update(
        ref,
        priority=desk.high,
        summary="db1: filesystem /var is 99% full",
        text="Severity changed from WARNING to CRITICAL.",
    )
    view = desk.view(ref)
    assert (view.summary, view.priority) == ("db1: filesystem /var is 99% full", desk.high)
    assert "Used 97% of /var" in view.text
    assert "Seen again at 12:05." in view.text
    assert "Severity changed from WARNING to CRITICAL." in view.text

    sink.resolve(ref, "Recovered: 71% used.", close=False)
    assert sink.find(FP) is None
    assert sink.status(ref).state == desk.resolved_state
    assert "Recovered: 71% used." in desk.view(ref).text

    sink.reopen(ref, "The problem came back within 1h.")
    assert sink.find(FP) == ref
    assert sink.status(ref).state in ("new", "open")
    assert "The problem came back within 1h." in desk.view(ref).text
    assert desk.count() == 1


def test_route_keys_land_in_the_desks_fields(desk: Desk) -> None:
    sink = desk.build()
    ref = sink.open(new_ticket(desk.low, desk.route))
    assert desk.routed(ref) == desk.route
    assert sink.find(FP) == ref


def test_no_priority_given_means_the_severitys_default(desk: Desk) -> None:
    sink = desk.build()
    ref = sink.open(new_ticket(""))  # CRITICAL
    assert desk.view(ref).priority == desk.high
    sink.update(ref, priority="", summary="db1: still full", text="no priority change")
    assert desk.view(ref).priority == desk.high


@pytest.mark.parametrize(
    ("config_type", "data", "critical", "warning"),
    [
        pytest.param(
            JiraSinkConfig,
            {"email": "a@b", "api_token": {"env": "X"}, "project": "OPS"},
            "Highest",
            "Medium",
            id="jira",
        ),
        pytest.param(
            ServiceNowSinkConfig,
            {"user": "u", "password": {"env": "X"}},
            "1",
            "2,2",
            id="servicenow",
        ),
        pytest.param(
            ZammadSinkConfig,
            {"token": {"env": "X"}, "group": "Users", "customer": "c@example.com"},
            "3 high",
            "2 normal",
            id="zammad",
        ),
    ],
)
def test_configured_priorities_override_only_their_severities(
    config_type: type[Any], data: dict[str, Any], critical: str, warning: str
) -> None:
    tag = config_type.__struct_config__.tag
    config = convert(
        {
            "type": tag,
            "url": "https://desk.example.com",
            **data,
            "priorities": {"CRITICAL": critical},
        },
        config_type,
    )
    assert config.priority_values["CRITICAL"] == critical
    assert config.priority_values["WARNING"] == warning
    assert set(config.priority_values) == {"CRITICAL", "WARNING", "UNKNOWN", "STALE"}


def test_unknown_route_key_is_refused_before_sending(desk: Desk) -> None:
    sink = desk.build()
    with pytest.raises(SinkError) as caught:
        sink.open(new_ticket(desk.low, {"queue": "Ops"}))
    assert not caught.value.retryable
    assert "queue" in str(caught.value)
    assert desk.count() == 0


def test_bad_credentials_are_final_and_never_echo_a_secret(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(SECRET_ENV, WRONG_SECRET)
    sink = desk.build()
    caplog.set_level(logging.DEBUG)
    attempts: list[Callable[[], object]] = [
        lambda: sink.find(FP),
        lambda: sink.open(new_ticket(desk.low)),
    ]
    assert_refused_for_credentials(attempts, WRONG_SECRET, desk.secret)
    assert desk.count() == 0
    assert WRONG_SECRET not in caplog.text


def test_a_missing_secret_is_final_and_names_the_variable(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(SinkError, match=SECRET_ENV) as caught:
        desk.build().find(FP)
    assert not caught.value.retryable
    assert desk.fake.requests == []


@pytest.mark.parametrize(
    ("status", "retry_after", "retryable", "expected_after"),
    [
        pytest.param(503, None, True, None, id="503: retried"),
        pytest.param(502, "3", True, 3.0, id="502 with Retry-After: retried"),
        pytest.param(429, "7", True, 7.0, id="429 with Retry-After: retried after 7s"),
        pytest.param(400, None, False, None, id="400: final"),
        pytest.param(404, None, False, None, id="404: final"),
    ],
)
def test_http_failures_are_classified(
    desk: Desk, status: int, retry_after: str | None, retryable: bool, expected_after: float | None
) -> None:
    sink = desk.build()
    desk.fake.fail_next(1, status=status, retry_after=retry_after)
    with pytest.raises(SinkError) as caught:
        sink.open(new_ticket(desk.low))
    error = caught.value
    assert (error.retryable, error.status, error.retry_after) == (retryable, status, expected_after)
    assert desk.fake.url in str(error)
    assert desk.secret not in str(error)
    # The outage is over: the same operation now goes through.
    ref = sink.open(new_ticket(desk.low))
    assert sink.find(FP) == ref


def test_a_failure_in_the_middle_of_the_lifecycle_is_retryable(desk: Desk) -> None:
    sink = desk.build()
    ref = sink.open(new_ticket(desk.low))
    desk.fake.fail_next(1, status=503)
    with pytest.raises(SinkError) as caught:
        sink.resolve(ref, "Recovered.", close=False)
    assert caught.value.retryable
    sink.resolve(ref, "Recovered.", close=False)  # what the outbox does next
    assert sink.find(FP) is None


def test_a_priority_the_desk_does_not_know_is_final(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    sink = desk.build()
    if desk.fields_after_create:
        # The request is raised without a priority; setting it after is only logged, as a
        # second request on retry would be worse.
        sink.open(new_ticket("Blocker"))
        assert "could not be set" in caplog.text
        return
    with pytest.raises(SinkError) as caught:
        sink.open(new_ticket("Blocker"))
    assert not caught.value.retryable
    assert caught.value.status in (None, 400, 422)
    assert desk.count() == 0


def test_a_timeout_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    monkeypatch.setenv(SECRET_ENV, "t")
    config = convert(
        {
            "type": "jira",
            "url": "https://example.atlassian.net",
            "email": "a@b",
            "api_token": {"env": SECRET_ENV},
            "project": "OPS",
        },
        JiraSinkConfig,
    )
    sink = JiraSink(config, transport=httpx.MockTransport(too_slow))
    with pytest.raises(SinkError) as caught:
        sink.find(FP)
    assert caught.value.retryable
    assert "timed out" in str(caught.value)
    sink.close()


# -- Jira -------------------------------------------------------------------------------------


jira = serving("jira", FakeJira, lambda fake: fake.api_token)


def jira_sink(fake: FakeJira, sinks: list[Any], **options: Any) -> JiraSink:
    options = {"email": fake.email, "api_token": SECRET, "project": "OPS", **options}
    return built(sinks, JiraSink, JiraSinkConfig, {"type": "jira", "url": fake.url, **options})


@pytest.mark.parametrize("version", [3, 2])
def test_jira_issue_carries_route_label_and_text_in_the_versions_format(
    jira: FakeJira, sinks: list[Any], version: int
) -> None:
    sink = jira_sink(jira, sinks, api_version=version)
    ref = sink.open(new_ticket("High", {"project": "DB", "component": "PostgreSQL"}))
    issue = jira.issue(ref.remote_id)
    assert (issue.project, issue.components, issue.issuetype) == ("DB", ["PostgreSQL"], "Task")
    assert issue.labels == [f"rw-{FP}"]
    assert ref.url == f"{jira.url}/browse/{issue.key}"
    sent = jira.requests_to("POST", rf"/rest/api/{version}/issue")[0].body["fields"]
    if version == 3:
        assert sent["description"]["type"] == "doc"
        assert adf_text(sent["description"]) == new_ticket("High").description
    else:
        assert sent["description"] == new_ticket("High").description
    search = jira.requests_to("GET", rf"/rest/api/{version}/search/jql")
    assert search == []  # open does not search; the outbox calls find first


def test_jira_find_ignores_done_issues_and_other_fingerprints(
    jira: FakeJira, sinks: list[Any]
) -> None:
    # No trust window: find searches every time (within one, it trusts the issue it opened).
    sink = jira_sink(jira, sinks, trust_window="0s")
    ref = sink.open(new_ticket("High"))
    jira.set_status(ref.remote_id, "In Progress")  # someone picked it up
    assert sink.find(FP) == ref
    assert sink.status(ref).state == "open"
    assert sink.status(ref).raw == "In Progress"
    assert sink.find("0000000000") is None
    jira.set_status(ref.remote_id, "Done")
    assert sink.find(FP) is None


def test_jira_resolve_again_after_a_lost_answer_only_comments(
    jira: FakeJira, sinks: list[Any]
) -> None:
    sink = jira_sink(jira, sinks)
    ref = sink.open(new_ticket("High"))
    sink.resolve(ref, "Recovered.", close=False)
    sink.resolve(ref, "Recovered.", close=False)
    assert jira.issue(ref.remote_id).status == "Done"
    assert len(jira.requests_to("POST", r"/rest/api/3/issue/\d+/transitions")) == 1


def test_jira_unknown_transition_names_the_ones_there_are(jira: FakeJira, sinks: list[Any]) -> None:
    sink = jira_sink(jira, sinks, resolve_transition="Resolve Issue")
    ref = sink.open(new_ticket("High"))
    with pytest.raises(SinkError) as caught:
        sink.resolve(ref, "Recovered.", close=False)
    assert not caught.value.retryable
    assert "Resolve Issue" in str(caught.value)
    assert "Done" in str(caught.value)
    assert "resolve_transition" in str(caught.value)


def test_jira_close_uses_the_close_transition(jira: FakeJira, sinks: list[Any]) -> None:
    sink = jira_sink(jira, sinks, close_transition="Done", resolve_transition="In Progress")
    ref = sink.open(new_ticket("High"))
    sink.resolve(ref, "Closed by policy.", close=True)
    assert jira.issue(ref.remote_id).status == "Done"


def test_jira_service_management_raises_a_request_then_labels_it(
    jira: FakeJira, sinks: list[Any]
) -> None:
    sink = jira_sink(jira, sinks, service_desk_id="4", request_type_id="12")
    ref = sink.open(new_ticket("High", {"component": "Database"}))
    raised = jira.requests_to("POST", "/rest/servicedeskapi/request")[0].body
    assert raised == {
        "serviceDeskId": "4",
        "requestTypeId": "12",
        "requestFieldValues": {
            "summary": "db1: filesystem /var is 97% full",
            "description": new_ticket("High").description,
        },
    }
    issue = jira.issue(ref.remote_id)
    assert (issue.project, issue.request_type) == ("HELP", "12")
    assert (issue.labels, issue.priority) == ([f"rw-{FP}"], "High")
    assert sink.find(FP) == ref


def test_jira_service_management_keeps_the_request_when_labelling_fails(
    jira: FakeJira, sinks: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    # A second ticket would be worse than one the crash recovery cannot find.
    sink = jira_sink(jira, sinks, service_desk_id="4", request_type_id="12")
    ref = sink.open(new_ticket("High", {"component": "No Such Component"}))
    assert jira.issue(ref.remote_id).labels == []
    assert "could not be set" in caplog.text
    assert jira.api_token not in caplog.text


def test_jira_service_management_refuses_a_project_route(jira: FakeJira, sinks: list[Any]) -> None:
    sink = jira_sink(jira, sinks, service_desk_id="4", request_type_id="12")
    with pytest.raises(SinkError, match="service_desk_id") as caught:
        sink.open(new_ticket("High", {"project": "DB"}))
    assert not caught.value.retryable


def test_jira_long_or_multiline_summaries_are_made_acceptable(
    jira: FakeJira, sinks: list[Any]
) -> None:
    sink = jira_sink(jira, sinks)
    ref = sink.open(dataclasses.replace(new_ticket("High"), summary="disk\n" + "y" * 400))
    summary = jira.issue(ref.remote_id).summary
    assert (len(summary), summary[:6]) == (255, "disk y")


# -- ServiceNow -------------------------------------------------------------------------------


snow = serving("snow", FakeServiceNow, lambda fake: fake.password)


def snow_sink(fake: FakeServiceNow, sinks: list[Any], **options: Any) -> ServiceNowSink:
    data = {"type": "servicenow", "url": fake.url, "user": fake.user, "password": SECRET}
    return built(sinks, ServiceNowSink, ServiceNowSinkConfig, data | options)


def test_servicenow_incident_fields(snow: FakeServiceNow, sinks: list[Any]) -> None:
    sink = snow_sink(snow, sinks, caller_id="monitoring")
    ref = sink.open(new_ticket("1,2", {"assignment_group": "Database Administration"}))
    record = snow.incident(ref.remote_id)
    assert record["correlation_id"] == FP
    assert record["correlation_display"] == "runwatch"
    assert snow.group_name(record["assignment_group"]) == "Database Administration"
    assert snow.user_name(record["caller_id"]) == "monitoring"
    assert (record["urgency"], record["impact"], record["priority"]) == ("1", "2", "2")
    assert ref.url == f"{snow.url}/incident.do?sys_id={ref.remote_id}"
    sent = snow.requests_to("POST", "/api/now/table/incident")[0].body
    assert all(isinstance(v, str) for v in sent.values())


def test_servicenow_comments_go_to_work_notes_unless_configured(
    snow: FakeServiceNow, sinks: list[Any]
) -> None:
    internal = snow_sink(snow, sinks)
    ref = internal.open(new_ticket("2"))
    internal.comment(ref, "internal note")
    public = snow_sink(snow, sinks, comment_field="comments")
    public.comment(ref, "for the caller")
    assert snow.journal[ref.remote_id] == [
        ("work_notes", "internal note"),
        ("comments", "for the caller"),
    ]


def test_servicenow_resolve_sets_code_and_notes_and_close_is_final(
    snow: FakeServiceNow, sinks: list[Any]
) -> None:
    snow.roles.add("itil_admin")
    sink = snow_sink(snow, sinks, close_code="Workaround provided", close_state="closed")
    ref = sink.open(new_ticket("2,2"))
    sink.resolve(ref, "Recovered.", close=True)
    record = snow.incident(ref.remote_id)
    assert (record["state"], record["close_code"], record["close_notes"]) == (
        "7",
        "Workaround provided",
        "Recovered.",
    )
    assert sink.status(ref).state == "closed"
    # The base system keeps closed incidents read-only: a reopen cannot succeed by retrying.
    with pytest.raises(SinkError) as caught:
        sink.reopen(ref, "came back")
    assert (caught.value.retryable, caught.value.status) == (False, 403)


def test_servicenow_find_ignores_canceled_and_closed(
    snow: FakeServiceNow, sinks: list[Any]
) -> None:
    sink = snow_sink(snow, sinks)
    ref = sink.open(new_ticket("2,2"))
    snow.set_state(ref.remote_id, "3")
    assert sink.find(FP) == ref
    assert sink.status(ref).raw == "On Hold"
    snow.set_state(ref.remote_id, "8")
    assert sink.find(FP) is None
    assert sink.status(ref).state == "closed"


@pytest.mark.parametrize("priorities", [{"CRITICAL": "1,4"}, {"CRITICAL": "high"}, {"FATAL": "1"}])
def test_servicenow_priorities_are_checked_at_load(priorities: dict[str, str]) -> None:
    data = {
        "type": "servicenow",
        "url": "https://x.service-now.com",
        "user": "u",
        "password": SECRET,
    }
    with pytest.raises(ConfigError) as caught:
        convert(data | {"priorities": priorities}, ServiceNowSinkConfig)
    assert caught.value.path == "priorities"


# -- Zammad -----------------------------------------------------------------------------------


zammad = serving("zammad", FakeZammad, lambda fake: fake.token)


def zammad_sink(fake: FakeZammad, sinks: list[Any], **options: Any) -> ZammadSink:
    options = {"token": SECRET, "group": "Users", "customer": "monitoring@example.com", **options}
    return built(
        sinks, ZammadSink, ZammadSinkConfig, {"type": "zammad", "url": fake.url, **options}
    )


def test_zammad_ticket_group_tag_and_internal_notes(zammad: FakeZammad, sinks: list[Any]) -> None:
    sink = zammad_sink(zammad, sinks)
    ref = sink.open(new_ticket("3 high", {"group": "Computer Operations"}))
    ticket = zammad.ticket(ref.remote_id)
    assert zammad.group_name(ticket.group_id) == "Computer Operations"
    assert (ticket.priority, ticket.state) == ("3 high", "new")
    assert ticket.tags == [f"rw-{FP}"]
    assert zammad.requests_to("POST", "/api/v1/tags/add")[0].body == {
        "item": f"rw-{FP}",
        "object": "Ticket",
        "o_id": int(ref.remote_id),
    }
    sink.comment(ref, "Seen again.")
    assert [(a["type"], a["internal"]) for a in ticket.articles] == [("note", True)] * 2
    assert ref.url == f"{zammad.url}/#ticket/zoom/{ref.remote_id}"


def test_zammad_pending_tickets_are_still_found(zammad: FakeZammad, sinks: list[Any]) -> None:
    # No trust window: find searches every time (within one, it trusts the ticket it opened).
    sink = zammad_sink(zammad, sinks, trust_window="0s")
    ref = sink.open(new_ticket("2 normal"))
    zammad.set_state(ref.remote_id, "pending reminder")
    assert sink.find(FP) == ref
    zammad.set_state(ref.remote_id, "merged")
    assert sink.find(FP) is None


def test_zammad_unknown_group_is_final(zammad: FakeZammad, sinks: list[Any]) -> None:
    sink = zammad_sink(zammad, sinks)
    with pytest.raises(SinkError) as caught:
        sink.open(new_ticket("2 normal", {"group": "Nobody"}))
    assert (caught.value.retryable, caught.value.status) == (False, 422)
    assert "Nobody" in str(caught.value)


# -- the fakes refuse what the vendors document as wrong --------------------------------------


def test_fakes_refuse_shapes_the_vendors_do_not_document(jira: FakeJira) -> None:
    auth = (jira.email, jira.api_token)
    with httpx.Client(base_url=jira.url, auth=auth) as client:
        answer = client.post(
            "/rest/api/3/issue",
            json={
                "fields": {
                    "project": {"key": "OPS"},
                    "issuetype": {"name": "Task"},
                    "summary": "s",
                    "description": "plain text is a v2 thing",
                }
            },
        )
        assert answer.status_code == 400
        assert "Atlassian Document" in answer.json()["errors"]["description"]
        answer = client.get("/rest/api/3/search/jql", params={"jql": "text ~ disk"})
        assert answer.status_code == 400
        assert answer.json()["errorMessages"]
    with (
        FakeServiceNow() as snow,
        httpx.Client(base_url=snow.url, auth=(snow.user, snow.password)) as client,
    ):
        answer = client.post(
            "/api/now/table/incident", json={"short_description": "s", "urgency": 1}
        )
        assert answer.status_code == 400
        assert answer.json()["status"] == "failure"
        answer = client.get("/api/now/table/incident", params={"sysparm_query": "active=true"})
        assert answer.status_code == 400
    with FakeZammad() as zammad, httpx.Client(base_url=zammad.url) as client:
        answer = client.get(
            "/api/v1/tickets/1", headers={"Authorization": f"Bearer {zammad.token}"}
        )
        assert answer.status_code == 401
        assert answer.json()["error"]


# -- webhook ----------------------------------------------------------------------------------


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    monkeypatch.setenv(SECRET_ENV, "hook-secret-5150")
    with WebhookReceiver("/hooks/runwatch") as fake:
        yield fake


def webhook_sink(fake: WebhookReceiver, sinks: list[Any], **options: Any) -> WebhookSink:
    data = {
        "type": "webhook",
        "url": f"{fake.url}/hooks/runwatch?source=rw",
        "headers": {"X-Team": "ops"},
        "secret_header": "X-Runwatch-Token",
        "secret": SECRET,
        **options,
    }
    return built(sinks, WebhookSink, WebhookSinkConfig, data)


def test_webhook_default_body_has_the_documented_fields(
    receiver: WebhookReceiver, sinks: list[Any]
) -> None:
    sink = webhook_sink(receiver, sinks)
    ref = sink.open(new_ticket("high", {"channel": "#ops"}))
    assert ref == TicketRef(FP)  # the receiver gave no id
    [request] = receiver.requests
    assert (request.path, request.query) == ("/hooks/runwatch", {"source": "rw"})
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-runwatch-token"] == "hook-secret-5150"
    assert request.headers["x-team"] == "ops"
    assert request.body == {
        "event": "open",
        "ticket_id": None,
        "fingerprint": FP,
        "summary": "db1: filesystem /var is 97% full",
        "description": new_ticket("high").description,
        "severity": "CRITICAL",
        "priority": "high",
        "host": "db1",
        "rule": "filesystem_full",
        "labels": {"mountpoint": "/var"},
        "route": {"channel": "#ops"},
        "text": new_ticket("high").description,
        "close": None,
    }


def test_webhook_posts_one_event_per_operation(receiver: WebhookReceiver, sinks: list[Any]) -> None:
    receiver.answer = {"id": 4711, "ok": True}
    sink = webhook_sink(receiver, sinks)
    ref = sink.open(new_ticket("high"))
    assert ref == TicketRef("4711")
    sink.comment(ref, "seen again")
    sink.update(ref, priority="normal", summary="calmer", text="now WARNING")
    sink.resolve(ref, "recovered", close=True)
    sink.reopen(ref, "back")
    events = [(b["event"], b["ticket_id"], b["text"]) for b in receiver.bodies]
    assert events == [
        ("open", None, new_ticket("high").description),
        ("comment", "4711", "seen again"),
        ("update", "4711", "now WARNING"),
        ("resolve", "4711", "recovered"),
        ("reopen", "4711", "back"),
    ]
    assert receiver.bodies[2]["priority"] == "normal"
    assert receiver.bodies[3]["close"] is True
    assert sink.find(FP) is None
    assert (sink.status(ref).state, sink.status(ref).raw) == ("open", "unknown")


def test_webhook_open_carries_the_idempotency_key(
    receiver: WebhookReceiver, sinks: list[Any]
) -> None:
    receiver.answer = {"id": 4711}
    sink = webhook_sink(receiver, sinks)
    sink.open(dataclasses.replace(new_ticket("high"), idempotency_key=f"{FP}-17"))
    sink.open(new_ticket("high"))  # none given (a call opened by hand): no header
    keys = [request.headers.get("idempotency-key") for request in receiver.requests]
    assert keys == [f"{FP}-17", None]
    assert receiver.requests[0].headers["x-team"] == "ops", "the configured headers stay"


def test_webhook_custom_template(receiver: WebhookReceiver, sinks: list[Any]) -> None:
    template = (
        '{"text": {{ ("[" ~ (severity or "update") ~ "] " ~ (summary or text)) | tojson }},'
        ' "channel": {{ (route or {}).get("channel", "#general") | tojson }},'
        ' "kind": {{ event | tojson }}}'
    )
    sink = webhook_sink(receiver, sinks, body_template=template)
    sink.open(new_ticket("high", {"channel": "#db"}))
    sink.comment(TicketRef(FP), "still there")
    assert receiver.bodies == [
        {"text": "[CRITICAL] db1: filesystem /var is 97% full", "channel": "#db", "kind": "open"},
        {"text": "[update] still there", "channel": "#general", "kind": "comment"},
    ]


def test_webhook_bad_template_is_refused_at_load() -> None:
    with pytest.raises(ConfigError) as caught:
        convert(
            {
                "type": "webhook",
                "url": "https://hooks.example.com/x",
                "body_template": '{"event": {{ event | tojson }',
            },
            WebhookSinkConfig,
        )
    assert caught.value.path == "body_template"
    assert "Jinja2" in caught.value.message


def test_webhook_template_rendering_invalid_json_is_final(
    receiver: WebhookReceiver, sinks: list[Any]
) -> None:
    sink = webhook_sink(receiver, sinks, body_template='{"text": {{ text }}}')
    with pytest.raises(SinkError) as caught:
        sink.comment(TicketRef(FP), "not quoted")
    assert not caught.value.retryable
    assert "invalid JSON" in str(caught.value)
    assert receiver.requests == []


def test_webhook_template_cannot_escape_the_sandbox(
    receiver: WebhookReceiver, sinks: list[Any]
) -> None:
    sink = webhook_sink(
        receiver, sinks, body_template="{{ text.__class__.__mro__[1].__subclasses__() }}"
    )
    with pytest.raises(SinkError) as caught:
        sink.comment(TicketRef(FP), "x")
    assert not caught.value.retryable
    assert receiver.requests == []


def test_webhook_errors_never_carry_the_secret(receiver: WebhookReceiver, sinks: list[Any]) -> None:
    sink = webhook_sink(receiver, sinks)
    for status, retryable in ((401, False), (503, True)):
        receiver.fail_next(1, status=status)
        with pytest.raises(SinkError) as caught:
            sink.comment(TicketRef(FP), "x")
        assert (caught.value.retryable, caught.value.status) == (retryable, status)
        assert "hook-secret-5150" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "path"),
    [
        pytest.param({"secret_header": "X-Token"}, "secret", id="secret_header without secret"),
        pytest.param({"headers": {"Bad Header": "x"}}, "headers", id="invalid header name"),
        pytest.param(
            {"url": "https://user:pw@hooks.example.com/x"}, "url", id="credentials in the url"
        ),
    ],
)
def test_webhook_config_mistakes_are_named(options: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        convert(
            {"type": "webhook", "url": "https://hooks.example.com/x", **options}, WebhookSinkConfig
        )
    assert caught.value.path == path


def test_jira_service_desk_needs_both_ids() -> None:
    data = {"type": "jira", "url": "https://x.atlassian.net", "email": "a@b", "api_token": SECRET}
    with pytest.raises(ConfigError) as caught:
        convert(data | {"project": "OPS", "service_desk_id": "4"}, JiraSinkConfig)
    assert caught.value.path == "service_desk_id"


# -- Redmine's answer to a write that met another one ------------------------------------------


@pytest.mark.parametrize(
    ("body", "retryable"),
    [
        pytest.param('{"errors":[]}', True, id="stale object (no errors): retried"),
        pytest.param('{"errors":["Subject cannot be blank"]}', False, id="invalid: final"),
        pytest.param("<html>", False, id="no JSON: final"),
    ],
)
def test_a_redmine_conflict_is_retried_and_a_refusal_is_final(
    monkeypatch: pytest.MonkeyPatch, body: str, retryable: bool
) -> None:
    """Redmine answers a write that met a person's at the same moment with 422 and an empty
    error list (its stale-object answer): the outbox tries it again instead of a dead letter."""
    from collector.sinks.redmine import RedmineSink, RedmineSinkConfig

    monkeypatch.setenv(SECRET_ENV, "k" * 40)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, text=body, headers={"Content-Type": "application/json"})

    config = convert(
        {
            "type": "redmine",
            "url": "http://127.0.0.1:3000",
            "api_key": {"env": SECRET_ENV},
            "project": "ops",
        },
        RedmineSinkConfig,
    )
    sink = RedmineSink(config, transport=httpx.MockTransport(answer))
    with pytest.raises(SinkError) as caught:
        sink.comment(TicketRef("7"), "Looking at it")
    assert (caught.value.retryable, caught.value.status) == (retryable, 422)
    sink.close()
