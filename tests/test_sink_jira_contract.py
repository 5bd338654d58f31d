"""Every request the Jira sink makes, and every answer the fake gives, against Atlassian's record.

The record (tests/contracts/jira_cloud_v3.py) holds, for each platform operation the sink and
its self-check use, the path, method, query parameters, body and answers with their types as
the published swagger-v3 document gives them, with the document's version and date. A request
to an operation not in the record, a parameter or property the document does not have, a wrong
type, a missing required field or an undocumented status fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from checks.settings import convert
from collector.sinks.contract import SinkError
from collector.sinks.jira import JiraSink, JiraSinkConfig
from tests.contracts.jira_cloud_v3 import (
    DOCUMENT,
    ERROR_COLLECTION,
    OPERATIONS,
    Operation,
    Schema,
    Type,
)
from tests.fakes import RecordedRequest, Reply
from tests.fakes.jira import RESOLUTION_SCREEN, FakeJira
from tests.helpers.desks import new_ticket

ENV = "RUNWATCH_TEST_JIRA_CONTRACT_TOKEN"


def operation_for(method: str, path: str) -> Operation | None:
    for op in OPERATIONS:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(op.path))
        if op.method == method and re.fullmatch(pattern, path):
            return op
    return None


def type_problems(value: Any, kind: Type, where: str) -> list[str]:
    """Why `value` is not of `kind` (a JSON value against the record's types)."""
    if isinstance(kind, Schema):
        return schema_problems(value, kind, where)
    if isinstance(kind, tuple):
        container, item_kind = kind
        if container == "array" and isinstance(value, list):
            items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        elif container == "map" and isinstance(value, dict):
            items = [(f"{where}.{k}", v) for k, v in value.items()]
        else:
            return [f"{where}: must be an {'array' if container == 'array' else 'object'}"]
        return [p for at, v in items for p in type_problems(v, item_kind, at)]
    expected = {"string": str, "integer": int, "boolean": bool, "object": dict, "any": object}
    ok = isinstance(value, expected[kind]) and not (kind == "integer" and isinstance(value, bool))
    return [] if ok else [f"{where}: must be {kind}, got {value!r}"]


def schema_problems(value: Any, schema: Schema, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: {schema.name} must be an object, got {type(value).__name__}"]
    problems = [f"{where}: {schema.name} needs {n!r}" for n in schema.required if n not in value]
    for name, item in value.items():
        if name in schema.properties:
            problems += type_problems(item, schema.properties[name], f"{where}.{name}")
        elif schema.closed:
            problems.append(f"{where}: {schema.name} has no property {name!r}")
    return problems


def query_problems(op: Operation, request: RecordedRequest) -> list[str]:
    problems = []
    for name, text in request.query.items():
        if name not in op.query:
            problems.append(f"{op.operation_id}: no query parameter {name!r}")
            continue
        kind = op.query[name]
        items, item_kind = (text.split(","), kind[1]) if isinstance(kind, tuple) else ([text], kind)
        for item in items:
            if (item_kind == "integer" and not item.lstrip("-").isdigit()) or (
                item_kind == "boolean" and item not in ("true", "false")
            ):
                problems.append(f"{op.operation_id}: {name}={text!r} is not {kind}")
    return problems


def exchange_problems(request: RecordedRequest, reply: Reply) -> list[str]:
    """What in one exchange disagrees with the record."""
    op = operation_for(request.method, request.path)
    if op is None:
        return [f"{request.method} {request.path} is not an operation in the record"]
    problems = query_problems(op, request)
    if op.body is not None:
        if request.body is None:
            problems.append(f"{op.operation_id}: the request body is required")
        else:
            problems += type_problems(request.body, op.body, f"{op.operation_id} request")
    elif request.body is not None:
        problems.append(f"{op.operation_id}: takes no request body")
    if reply.status == 429 or reply.status >= 500:
        return problems  # rate limits and outages: any operation (Atlassian's rate-limit guide)
    if reply.status not in op.responses:
        return [*problems, f"{op.operation_id}: {reply.status} is not a documented answer"]
    schema = op.responses[reply.status]
    if schema is None:
        if reply.body is not None:
            problems.append(f"{op.operation_id}: {reply.status} has no body")
    elif reply.status >= 400:
        problems += type_problems(reply.body, ERROR_COLLECTION, f"{op.operation_id} {reply.status}")
    else:
        problems += type_problems(reply.body, schema, f"{op.operation_id} {reply.status}")
    return problems


@pytest.fixture
def jira(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJira]:
    with FakeJira(screens={"Done": RESOLUTION_SCREEN}) as fake:
        monkeypatch.setenv(ENV, fake.api_token)
        yield fake


def sink_for(fake: FakeJira, **options: Any) -> JiraSink:
    data = {
        "type": "jira",
        "url": fake.url,
        "email": fake.email,
        "api_token": {"env": ENV},
        "project": "OPS",
        "transition_fields": {"Done": {"resolution": {"name": "Done"}}},
        "trust_window": "0s",
        **options,
    }
    return JiraSink(convert(data, JiraSinkConfig))


def exercise(fake: FakeJira) -> None:
    """Everything the sink does, including its refusals and the self-check."""
    sink = sink_for(fake)
    service_desk = sink_for(fake, service_desk_id="4", request_type_id="12")
    try:
        assert sink.check() == []
        assert sink.find("fp-1") is None
        ref = sink.open(new_ticket("fp-1", {"project": "DB", "component": "PostgreSQL"}))
        assert sink.find("fp-1") == ref
        sink.comment(ref, "Seen again.")
        fake.conflicts = 1
        with pytest.raises(SinkError):
            sink.update(ref, priority="Highest", summary="worse", text="Now CRITICAL.")
        sink.update(ref, priority="Highest", summary="worse", text="Now CRITICAL.")
        sink.status(ref)
        sink.resolve(ref, "Recovered.", close=False)
        sink.reopen(ref, "Back.")
        service_desk.open(new_ticket("fp-2", {"component": "Database"}))
        with pytest.raises(SinkError):
            sink.open(new_ticket("fp-3", {"project": "NOPE"}))
        assert sink_for(fake, project="NOPE").check()
    finally:
        sink.close()
        service_desk.close()


def test_the_record_names_the_document_it_was_taken_from() -> None:
    assert DOCUMENT["version"].startswith("1001.0.0-SNAPSHOT-")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", DOCUMENT["date"])
    assert {op.operation_id for op in OPERATIONS} >= {
        "createIssue",
        "searchAndReconsileIssuesUsingJql",
        "getIssue",
        "editIssue",
        "getTransitions",
        "doTransition",
        "addComment",
    }


def test_every_request_and_answer_follows_the_document(jira: FakeJira) -> None:
    exercise(jira)
    platform = [(q, r) for q, r in jira.exchanges if q.path.startswith("/rest/api/")]
    used = {getattr(operation_for(q.method, q.path), "operation_id", None) for q, _ in platform}
    assert None not in used
    assert used >= {"createIssue", "editIssue", "doTransition", "getMyPermissions"}
    problems = [p for q, r in platform for p in exchange_problems(q, r)]
    assert problems == []
    statuses = {r.status for _, r in platform}
    assert {200, 201, 204, 400, 404, 409} <= statuses


@pytest.mark.parametrize(
    ("request_", "reply", "expected"),
    [
        pytest.param(
            RecordedRequest("GET", "/rest/api/3/search/jql", {"limit": "1"}, {}, None, b""),
            Reply(200, {"issues": [], "isLast": True}),
            "no query parameter 'limit'",
            id="unknown parameter",
        ),
        pytest.param(
            RecordedRequest("GET", "/rest/api/3/search/jql", {"maxResults": "one"}, {}, None, b""),
            Reply(200, {"issues": []}),
            "is not integer",
            id="wrong parameter type",
        ),
        pytest.param(
            RecordedRequest("GET", "/rest/api/3/search/jql", {}, {}, None, b""),
            Reply(200, {"issues": [], "total": 0}),
            "no property 'total'",
            id="the old search's total",
        ),
        pytest.param(
            RecordedRequest("POST", "/rest/api/3/issue", {}, {}, {"fields": []}, b""),
            Reply(201, {"id": "1", "key": "OPS-1", "self": "x"}),
            "must be an object",
            id="fields not an object",
        ),
        pytest.param(
            RecordedRequest("PUT", "/rest/api/3/issue/1", {}, {}, {"fields": {}}, b""),
            Reply(201, None),
            "201 is not a documented answer",
            id="undocumented status",
        ),
        pytest.param(
            RecordedRequest("DELETE", "/rest/api/3/issue/1", {}, {}, None, b""),
            Reply(204, None),
            "not an operation in the record",
            id="operation not recorded",
        ),
        pytest.param(
            RecordedRequest("GET", "/rest/api/3/issue/1/transitions", {}, {}, None, b""),
            Reply(200, {"transitions": [{"id": "31", "fields": {"resolution": {"key": "r"}}}]}),
            "FieldMetadata needs 'name'",
            id="screen field without required keys",
        ),
    ],
)
def test_the_check_refuses_what_the_document_does_not_allow(
    request_: RecordedRequest, reply: Reply, expected: str
) -> None:
    assert any(expected in p for p in exchange_problems(request_, reply))
