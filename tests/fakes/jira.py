"""A stand-in for Jira Cloud's REST API (v2 and v3) and Jira Service Management's request API.

Only what the runwatch adapter uses, in the documented shapes:

    POST /rest/api/{2,3}/issue                        {"fields": {...}} -> 201 {id, key, self}
    GET  /rest/api/{2,3}/search/jql?jql&fields&maxResults -> 200 {issues: [...], isLast}
    GET  /rest/api/{2,3}/issue/{idOrKey}?fields       -> 200 {id, key, self, fields}
    PUT  /rest/api/{2,3}/issue/{idOrKey}              {"fields": {...}} -> 204
    POST /rest/api/{2,3}/issue/{idOrKey}/comment      {"body": ...} -> 201 comment
    GET  /rest/api/{2,3}/issue/{idOrKey}/transitions  -> 200 {transitions: [...]}
    POST /rest/api/{2,3}/issue/{idOrKey}/transitions  {"transition": {"id"}} -> 204
    POST /rest/servicedeskapi/request                 -> 201 customer request
    POST /rest/servicedeskapi/request/{idOrKey}/comment {"body": text, "public": bool} -> 201
    GET  /rest/api/{2,3}/myself, /project/{key}, /project/{key}/statuses, /priority,
         /mypermissions?projectKey&permissions       -> 200 (the self-check's reads)

As Jira Cloud documents (issue 20): editIssue and doTransition answer 409 "conflicting update"
(`conflicts`: how many writes to refuse so); search lags writes by `search_lag_seconds` (as
told by `clock`); a transition of `screens` has screen fields (FieldMetadata, shown with
expand=transitions.fields) and refuses with 400 a required one left out; without
TRANSITION_ISSUES in `permissions` the transition list is empty; with `cloud_id` the API is
also served under /ex/jira/{cloudId} and a `scoped` token gets 401 on the site URL;
platform comments are public on service desk projects (jsdPublic true).

Text fields are Atlassian Document Format in v3 (`{"type": "doc", "version": 1, "content": [...]}`,
of which the fake knows paragraph, text and hardBreak) and plain strings in v2 and in the service
desk API. Auth is Basic `email:api_token`. Errors are `{"errorMessages": [...], "errors": {...}}`
(service desk: `{"errorMessage", "i18nErrorMessage"}`). JQL: only the query the adapter sends.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import (
    BadRequest,
    FakeHelpDesk,
    RecordedRequest,
    Refusal,
    Reply,
    expect_keys,
    expect_object,
    expect_query,
)

CATEGORIES = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {
        "id": 4,
        "key": "indeterminate",
        "colorName": "yellow",
        "name": "In Progress",
    },
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}
STATUSES = {
    "To Do": ("10000", "new"),
    "In Progress": ("3", "indeterminate"),
    "Done": ("10001", "done"),
}
# A simplified workflow: every status can be reached from every other one.
TRANSITIONS = {"11": "To Do", "21": "In Progress", "31": "Done"}
PRIORITIES = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}
PERMISSIONS = (
    "BROWSE_PROJECTS",
    "CREATE_ISSUES",
    "EDIT_ISSUES",
    "TRANSITION_ISSUES",
    "ADD_COMMENTS",
    "RESOLVE_ISSUES",
)
# A transition screen's required Resolution field, as getTransitions describes it (FieldMetadata).
RESOLUTION_SCREEN = {
    "resolution": {
        "key": "resolution",
        "name": "Resolution",
        "required": True,
        "operations": ["set"],
        "schema": {"type": "resolution", "system": "resolution"},
        "hasDefaultValue": False,
        "allowedValues": [{"id": "1", "name": "Done"}, {"id": "2", "name": "Won't Do"}],
    }
}
ISSUE_TYPES = {"Task": "10001", "Bug": "10002", "[System] Incident": "10003"}
_JQL = re.compile(r'^labels\s*=\s*"(?P<label>[^"\\]+)"\s+AND\s+statusCategory\s*!=\s*Done$')
_API = r"/rest/api/(?P<v>[23])"
_ISSUE = _API + r"/issue/(?P<issue>[A-Z][A-Z0-9_]*-\d+|\d+)"


@dataclass
class JiraIssue:
    id: str
    key: str
    project: str
    issuetype: str
    summary: str
    description: Any = None  # ADF document or string, as it was sent
    priority: str = "Medium"
    labels: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    status: str = "To Do"
    comments: list[Any] = field(default_factory=list)
    request_type: str | None = None  # set when raised through the service desk
    public: list[bool] = field(default_factory=list)  # per comment: visible to customers


def adf_problem(doc: Any) -> str | None:
    """Why `doc` is not an Atlassian Document this fake accepts, or None."""
    if (
        not isinstance(doc, dict)
        or doc.get("type") != "doc"
        or doc.get("version") != 1
        or not isinstance(doc.get("content"), list)
        or set(doc) - {"type", "version", "content"}
    ):
        return "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
    for block in doc["content"]:
        if (
            not isinstance(block, dict)
            or block.get("type") != "paragraph"
            or set(block) - {"type", "content", "attrs"}
            or not isinstance(block.get("content", []), list)
        ):
            return f"unsupported ADF block {block!r}"
        for node in block.get("content", []):
            if problem := _inline_problem(node):
                return problem
    return None


def _inline_problem(node: Any) -> str | None:
    if isinstance(node, dict) and node.get("type") == "text":
        if (
            not isinstance(node.get("text"), str)
            or not node["text"]
            or set(node) - {"type", "text", "marks"}
        ):
            return "a text node needs non-empty text"
        return None
    if (
        isinstance(node, dict)
        and node.get("type") == "hardBreak"
        and not set(node) - {"type", "attrs"}
    ):
        return None
    return f"unsupported ADF node {node!r}"


def adf_text(doc: Any) -> str:
    """The plain text of a document this fake accepted (strings pass through)."""
    if isinstance(doc, str) or doc is None:
        return doc or ""
    paragraphs = []
    for block in doc["content"]:
        paragraphs.append(
            "".join(n["text"] if n["type"] == "text" else "\n" for n in block.get("content", []))
        )
    return "\n\n".join(paragraphs)


def to_adf(text: str) -> dict[str, Any]:
    content = [
        {"type": "paragraph", "content": [{"type": "text", "text": part}]}
        for part in text.split("\n\n")
        if part
    ]
    return {"type": "doc", "version": 1, "content": content}


class FakeJira(FakeHelpDesk):
    """Jira Cloud with a few projects, a simple workflow and one service desk."""

    vendor = "jira"

    def __init__(
        self,
        email: str = "runwatch@example.com",
        api_token: str = "jira-secret-0451",
        projects: dict[str, set[str]] | None = None,
        service_desks: dict[str, tuple[str, dict[str, str]]] | None = None,
        *,
        search_lag_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        screens: dict[str, dict[str, dict[str, Any]]] | None = None,
        permissions: set[str] | None = None,
        cloud_id: str | None = None,
        scoped: bool = False,
    ) -> None:
        super().__init__()
        self.search_lag_seconds = search_lag_seconds
        self.clock = clock
        # transition name -> field key -> FieldMetadata (required, name, schema, …)
        self.screens = screens or {}
        self.permissions = set(PERMISSIONS) if permissions is None else permissions
        self.cloud_id = cloud_id
        self.scoped = scoped
        self.conflicts = 0
        # issue id -> [(when, labels, status category)]: what search sees, after the lag
        self._index: dict[str, list[tuple[float, tuple[str, ...], str]]] = {}
        self.email = email
        self.api_token = api_token
        # project key -> component names
        self.projects = (
            projects
            if projects is not None
            else {"OPS": {"Storage", "Network"}, "DB": {"PostgreSQL"}, "HELP": {"Database"}}
        )
        # service desk id -> (project key, {request type id: issue type})
        self.service_desks = (
            service_desks
            if service_desks is not None
            else {"4": ("HELP", {"12": "[System] Incident"})}
        )
        self.issues: dict[str, JiraIssue] = {}
        self._counters: dict[str, int] = {}
        self.route("POST", _API + "/issue", self._create)
        self.route("GET", _API + "/search/jql", self._search)
        self.route("GET", _ISSUE, self._get)
        self.route("PUT", _ISSUE, self._edit)
        self.route("POST", _ISSUE + "/comment", self._comment)
        self.route("GET", _ISSUE + "/transitions", self._transitions)
        self.route("POST", _ISSUE + "/transitions", self._transition)
        self.route("POST", "/rest/servicedeskapi/request", self._create_request)
        self.route(
            "POST",
            r"/rest/servicedeskapi/request/(?P<issue>[A-Z][A-Z0-9_]*-\d+|\d+)/comment",
            self._request_comment,
        )
        self.route("GET", _API + "/myself", self._myself)
        self.route("GET", _API + r"/project/(?P<key>[^/]+)", self._project)
        self.route("GET", _API + r"/project/(?P<key>[^/]+)/statuses", self._statuses)
        self.route("GET", _API + "/priority", self._priorities)
        self.route("GET", _API + "/mypermissions", self._mypermissions)

    # -- for tests ----------------------------------------------------------------------------

    def issue(self, id_or_key: str) -> JiraIssue:
        for issue in self.issues.values():
            if id_or_key in (issue.id, issue.key):
                return issue
        raise KeyError(id_or_key)

    def set_status(self, id_or_key: str, status: str) -> None:
        """What a person in the Jira UI would do."""
        assert status in STATUSES
        self.issue(id_or_key).status = status
        self._reindex(self.issue(id_or_key))

    def _reindex(self, issue: JiraIssue) -> None:
        entry = (self.clock(), tuple(issue.labels), STATUSES[issue.status][1])
        self._index.setdefault(issue.id, []).append(entry)

    def _searchable(self, issue: JiraIssue) -> tuple[tuple[str, ...], str] | None:
        """What search sees of an issue: its last state indexed before the lag, if any."""
        seen = self.clock() - self.search_lag_seconds
        entries = [e for e in self._index.get(issue.id, []) if e[0] <= seen]
        return (entries[-1][1], entries[-1][2]) if entries else None

    def _answer(self, request: RecordedRequest, raw: bytes, bad_json: bool, failure: Any) -> Reply:
        prefix = f"/ex/jira/{self.cloud_id}"
        if self.cloud_id and request.path.startswith(prefix + "/"):
            request = dataclasses.replace(request, path=request.path.removeprefix(prefix))
        elif self.scoped and failure is None:
            # Scoped tokens work only through api.atlassian.com/ex/jira/{cloudId} (KB 401).
            return Reply(401, self.error_body(request, 401, "scoped token on the site URL", {}))
        return super()._answer(request, raw, bad_json, failure)

    def _conflict(self) -> None:
        if self.conflicts > 0:
            self.conflicts -= 1
            raise Refusal(409, "The issue could not be updated due to a conflicting update.")

    # -- protocol -----------------------------------------------------------------------------

    def authorized(self, request: RecordedRequest) -> bool:
        return self.has_basic_auth(request, self.email, self.api_token)

    def error_body(
        self, request: RecordedRequest, status: int, message: str, details: dict[str, Any]
    ) -> Any:
        if request.path.startswith("/rest/servicedeskapi/"):
            return {
                "errorMessage": message,
                "i18nErrorMessage": {"i18nKey": "sd.fake.error", "parameters": []},
            }
        if "errors" in details:
            return {"errorMessages": [], "errors": details["errors"]}
        if status == 401:
            message = (
                "You are not authenticated. Authentication required to perform this operation."
            )
        return {"errorMessages": [message], "errors": {}}

    def _find(self, match: re.Match[str]) -> JiraIssue:
        try:
            return self.issue(match["issue"])
        except KeyError:
            raise Refusal(
                404, "Issue does not exist or you do not have permission to see it."
            ) from None

    def _fields(
        self, fields: dict[str, Any], version: int, *, project: str | None, creating: bool
    ) -> dict[str, Any]:
        """Validate fields as create or edit does; return them as plain values."""
        errors: dict[str, str] = {}
        values: dict[str, Any] = {}
        settable = {"summary", "description", "priority", "labels", "components"}
        if creating:
            settable |= {"project", "issuetype"}
            given = fields.get("project")
            project = given.get("key") if isinstance(given, dict) else None
            for name, message in (
                ("project", "Specify a valid project ID or key"),
                ("issuetype", "Specify an issue type"),
                ("summary", "You must specify a summary of the issue."),
            ):
                if name not in fields:
                    errors[name] = message
        # Fields that name one of a known set: {"key": ...} or {"name": ...}.
        references: dict[str, tuple[str, Any, str]] = {
            "project": ("key", self.projects, "valid project is required"),
            "issuetype": ("name", ISSUE_TYPES, "Specify a valid issue type"),
            "priority": ("name", PRIORITIES, "The priority selected is invalid."),
        }
        for name, value in fields.items():
            if name not in settable:
                errors[name] = (
                    f"Field '{name}' cannot be set. It is not on the appropriate "
                    "screen, or unknown."
                )
            elif name in references:
                attribute, known, message = references[name]
                chosen = value.get(attribute) if isinstance(value, dict) else None
                if chosen not in known:
                    errors[name] = message
                else:
                    values[name] = chosen
            elif name == "summary":
                if not isinstance(value, str) or not value.strip():
                    errors[name] = "You must specify a summary of the issue."
                elif "\n" in value or "\r" in value:
                    errors[name] = "The summary is invalid because it contains newline characters."
                elif len(value) > 255:
                    errors[name] = "Summary must be less than 255 characters."
                else:
                    values[name] = value
            elif name == "description":
                problem = (
                    adf_problem(value)
                    if version == 3
                    else (None if isinstance(value, str) else "Operation value must be a string")
                )
                if problem:
                    errors[name] = problem
                else:
                    values[name] = value
            elif name == "labels":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    errors[name] = "labels must be a list of strings"
                elif bad := [v for v in value if not v or len(v) > 255 or re.search(r"\s", v)]:
                    errors[name] = f"The label '{bad[0]}' contains spaces which is invalid."
                else:
                    values[name] = list(value)
            elif name == "components":
                known = self.projects.get(project or "", set())
                names = (
                    [c.get("name") for c in value if isinstance(c, dict)]
                    if isinstance(value, list)
                    else None
                )
                if names is None or len(names) != len(value):
                    errors[name] = 'components must be a list of {"name": ...}'
                elif bad := [n for n in names if n not in known]:
                    errors[name] = f"Component name '{bad[0]}' is not valid"
                else:
                    values[name] = names
        if errors:
            raise BadRequest("invalid fields", errors=errors)
        return values

    def _issue_json(
        self, issue: JiraIssue, version: int, fields: set[str] | None
    ) -> dict[str, Any]:
        status_id, category = STATUSES[issue.status]
        description: Any = issue.description
        if version == 3 and isinstance(description, str):
            description = to_adf(description)
        elif version == 2 and description is not None:
            description = adf_text(description)
        every = {
            "summary": issue.summary,
            "description": description,
            "issuetype": {"id": ISSUE_TYPES[issue.issuetype], "name": issue.issuetype},
            "project": {"key": issue.project, "name": issue.project},
            "priority": {"id": PRIORITIES[issue.priority], "name": issue.priority},
            "labels": list(issue.labels),
            "components": [{"name": c} for c in issue.components],
            "status": {
                "id": status_id,
                "name": issue.status,
                "self": f"{self.url}/rest/api/{version}/status/{status_id}",
                "statusCategory": CATEGORIES[category],
            },
        }
        chosen = every if fields is None else {k: v for k, v in every.items() if k in fields}
        return {
            "id": issue.id,
            "key": issue.key,
            "self": f"{self.url}/rest/api/{version}/issue/{issue.id}",
            "fields": chosen,
        }

    def _new_issue(self, project: str, issuetype: str, summary: str) -> JiraIssue:
        self._counters[project] = self._counters.get(project, 0) + 1
        issue = JiraIssue(
            id=str(10000 + len(self.issues) + 1),
            key=f"{project}-{self._counters[project]}",
            project=project,
            issuetype=issuetype,
            summary=summary,
        )
        self.issues[issue.id] = issue
        return issue

    # -- platform API -------------------------------------------------------------------------

    def _create(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed={"updateHistory"})
        body = expect_object(request.body, "body")
        expect_keys(body, "body", required={"fields"}, allowed={"update"})
        values = self._fields(
            expect_object(body["fields"], "fields"), int(match["v"]), project=None, creating=True
        )
        issue = self._new_issue(values["project"], values["issuetype"], values["summary"])
        issue.description = values.get("description")
        issue.priority = values.get("priority", "Medium")
        issue.labels = values.get("labels", [])
        issue.components = values.get("components", [])
        self._reindex(issue)
        return Reply(
            201,
            {
                "id": issue.id,
                "key": issue.key,
                "self": f"{self.url}/rest/api/{match['v']}/issue/{issue.id}",
            },
        )

    def _search(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed={"jql", "fields", "maxResults", "nextPageToken"})
        jql = request.query.get("jql", "")
        query = _JQL.match(jql.strip())
        if query is None:
            raise BadRequest(
                f"Error in the JQL Query: the fake understands only "
                f'labels = "…" AND statusCategory != Done, got {jql!r}'
            )
        limit = request.query.get("maxResults", "50")
        if not limit.isdigit():
            raise BadRequest(f"maxResults must be a number, got {limit!r}")
        fields = set(filter(None, request.query.get("fields", "id").split(",")))
        found = [
            i
            for i in self.issues.values()
            if (seen := self._searchable(i)) is not None
            and query["label"] in seen[0]
            and seen[1] != "done"
        ][: int(limit)]
        return Reply(
            200,
            {
                "issues": [self._issue_json(i, int(match["v"]), fields) for i in found],
                "isLast": True,
            },
        )

    def _get(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed={"fields", "expand"})
        issue = self._find(match)
        fields = request.query.get("fields")
        chosen = None if fields in (None, "*all") else set(fields.split(","))
        return Reply(200, self._issue_json(issue, int(match["v"]), chosen))

    def _edit(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed={"notifyUsers"})
        issue = self._find(match)
        self._conflict()
        body = expect_object(request.body, "body")
        expect_keys(body, "body", required={"fields"}, allowed=set())
        values = self._fields(
            expect_object(body["fields"], "fields"),
            int(match["v"]),
            project=issue.project,
            creating=False,
        )
        for name, value in values.items():
            setattr(issue, name, value)
        self._reindex(issue)
        return Reply(204)

    def _comment(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        issue = self._find(match)
        body = expect_object(request.body, "body")
        expect_keys(body, "body", required={"body"}, allowed={"visibility"})
        version = int(match["v"])
        if version == 3 and (problem := adf_problem(body["body"])):
            raise BadRequest(problem, errors={"comment": problem})
        if version == 2 and (not isinstance(body["body"], str) or not body["body"]):
            raise BadRequest(
                "Comment body can not be empty!",
                errors={"comment": "Comment body can not be empty!"},
            )
        issue.comments.append(body["body"])
        issue.public.append(True)  # jsdPublic: true for platform comments
        comment_id = str(len(issue.comments) + 10000)
        return Reply(
            201,
            {
                "id": comment_id,
                "self": f"{self.url}/rest/api/{version}/issue/{issue.id}/comment/{comment_id}",
                "author": {"accountId": "5b10a2844c20165700ede21g", "displayName": "runwatch"},
                "body": body["body"],
                "created": "2026-01-01T00:00:00.000+0000",
                "updated": "2026-01-01T00:00:00.000+0000",
                "jsdPublic": True,
            },
        )

    def _available(
        self, issue: JiraIssue, version: int, *, fields: bool = False
    ) -> list[dict[str, Any]]:
        if "TRANSITION_ISSUES" not in self.permissions:
            return []  # "the response will not list any transitions"
        out = []
        for transition_id, target in TRANSITIONS.items():
            if target == issue.status:
                continue
            status_id, category = STATUSES[target]
            screen = self.screens.get(target, {})
            out.append(
                {
                    "id": transition_id,
                    "name": target,
                    "hasScreen": bool(screen),
                    "isGlobal": True,
                    "isInitial": False,
                    "isAvailable": True,
                    "isConditional": False,
                    "to": {
                        "id": status_id,
                        "name": target,
                        "self": f"{self.url}/rest/api/{version}/status/{status_id}",
                        "statusCategory": CATEGORIES[category],
                    },
                    **({"fields": screen} if fields and screen else {}),
                }
            )
        return out

    def _transitions(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed={"expand", "transitionId"})
        issue = self._find(match)
        expand = request.query.get("expand", "")
        if expand not in ("", "transitions.fields"):
            raise BadRequest(f"the fake expands only transitions.fields, got {expand!r}")
        transitions = self._available(issue, int(match["v"]), fields=bool(expand))
        return Reply(200, {"expand": "transitions", "transitions": transitions})

    def _transition(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        issue = self._find(match)
        body = expect_object(request.body, "body")
        expect_keys(body, "body", required={"transition"}, allowed={"fields", "update"})
        transition = expect_object(body["transition"], "transition")
        wanted = transition.get("id")
        choices = {t["id"]: t["name"] for t in self._available(issue, int(match["v"]))}
        if not isinstance(wanted, str) or wanted not in choices:
            raise BadRequest(f"Transition id '{wanted}' is not valid for this issue.")
        given = expect_object(body.get("fields", {}), "fields")
        screen = self.screens.get(choices[wanted], {})
        if unknown := set(given) - set(screen):
            key = sorted(unknown)[0]
            raise BadRequest(
                "invalid fields",
                errors={key: f"Field '{key}' cannot be set. It is not on the appropriate screen."},
            )
        missing = {
            key: f"{meta.get('name', key)} is required."
            for key, meta in screen.items()
            if meta.get("required") and not meta.get("hasDefaultValue") and key not in given
        }
        if missing:
            raise BadRequest("invalid fields", errors=missing)
        self._conflict()
        issue.status = choices[wanted]
        self._reindex(issue)
        return Reply(204)

    # -- Jira Service Management --------------------------------------------------------------

    def _create_request(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        body = expect_object(request.body, "body")
        expect_keys(
            body,
            "body",
            required={"serviceDeskId", "requestTypeId", "requestFieldValues"},
            allowed={"raiseOnBehalfOf", "requestParticipants", "channel"},
        )
        desk_id, type_id = body["serviceDeskId"], body["requestTypeId"]
        if not isinstance(desk_id, str) or desk_id not in self.service_desks:
            raise Refusal(404, f"The service desk with id {desk_id!r} does not exist.")
        project, request_types = self.service_desks[desk_id]
        if not isinstance(type_id, str) or type_id not in request_types:
            raise BadRequest(
                f"The request type {type_id!r} does not exist in service desk {desk_id}."
            )
        values = expect_object(body["requestFieldValues"], "requestFieldValues")
        # Only fields on the request type's form may be given here; labels are not on it.
        if unknown := set(values) - {"summary", "description"}:
            raise BadRequest(f"Field {sorted(unknown)[0]!r} is not valid for this request type.")
        summary, description = values.get("summary"), values.get("description", "")
        if not isinstance(summary, str) or not summary.strip() or "\n" in summary:
            raise BadRequest("The summary is required and must be one line of text.")
        if not isinstance(description, str):
            raise BadRequest("The description must be text.")
        issue = self._new_issue(project, request_types[type_id], summary)
        issue.description = description
        issue.request_type = type_id
        self._reindex(issue)
        date = {
            "iso8601": "2026-01-01T00:00:00+0000",
            "jira": "2026-01-01T00:00:00.000+0000",
            "friendly": "Today 00:00",
            "epochMillis": 1767225600000,
        }
        return Reply(
            201,
            {
                "_expands": [
                    "participant",
                    "status",
                    "sla",
                    "requestType",
                    "serviceDesk",
                    "attachment",
                    "action",
                    "comment",
                ],
                "issueId": issue.id,
                "issueKey": issue.key,
                "requestTypeId": type_id,
                "serviceDeskId": desk_id,
                "createdDate": date,
                "reporter": {
                    "accountId": "5b10a2844c20165700ede21g",
                    "displayName": "runwatch",
                    "emailAddress": self.email,
                    "active": True,
                    "timeZone": "UTC",
                },
                "requestFieldValues": [
                    {"fieldId": "summary", "label": "Summary", "value": summary},
                    {"fieldId": "description", "label": "Description", "value": description},
                ],
                "currentStatus": {
                    "status": "Waiting for support",
                    "statusCategory": "NEW",
                    "statusDate": date,
                },
                "_links": {
                    "jiraRest": f"{self.url}/rest/api/2/issue/{issue.id}",
                    "web": f"{self.url}/servicedesk/customer/portal/{desk_id}/{issue.key}",
                    "self": f"{self.url}/rest/servicedeskapi/request/{issue.id}",
                },
            },
        )

    def _request_comment(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        issue = self._find(match)
        if issue.request_type is None:
            raise Refusal(404, "The request does not exist or is not a customer request.")
        body = expect_object(request.body, "body")
        expect_keys(body, "body", required={"body"}, allowed={"public"})
        text, public = body["body"], body.get("public", True)
        if not isinstance(text, str) or not text or not isinstance(public, bool):
            raise BadRequest("body must be non-empty text and public true or false")
        issue.comments.append(text)  # the JSM API takes plain text
        issue.public.append(public)
        return Reply(
            201,
            {
                "id": str(len(issue.comments) + 20000),
                "body": text,
                "public": public,
                "author": {"accountId": "5b10a2844c20165700ede21g", "displayName": "runwatch"},
                "created": {"iso8601": "2026-01-01T00:00:00+0000"},
            },
        )

    # -- the self-check's reads ---------------------------------------------------------------

    def _myself(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed={"expand"})
        return Reply(
            200,
            {
                "accountId": "5b10a2844c20165700ede21g",
                "emailAddress": self.email,
                "displayName": "runwatch",
                "active": True,
                "accountType": "atlassian",
            },
        )

    def _project_key(self, key: str) -> str:
        if key not in self.projects or "BROWSE_PROJECTS" not in self.permissions:
            raise Refusal(404, f"No project could be found with key '{key}'.")
        return key

    def _project(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed={"expand", "properties"})
        key = self._project_key(match["key"])
        return Reply(
            200,
            {
                "id": str(10000 + sorted(self.projects).index(key)),
                "key": key,
                "name": key,
                "components": [{"name": c} for c in sorted(self.projects[key])],
                "issueTypes": [{"id": i, "name": n} for n, i in ISSUE_TYPES.items()],
            },
        )

    def _statuses(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed=set())
        self._project_key(match["key"])
        statuses = [
            {"id": i, "name": n, "statusCategory": CATEGORIES[c]} for n, (i, c) in STATUSES.items()
        ]
        return Reply(
            200,
            [
                {
                    "id": i,
                    "name": n,
                    "self": f"{self.url}/rest/api/{match['v']}/issuetype/{i}",
                    "subtask": False,
                    "statuses": statuses,
                }
                for n, i in ISSUE_TYPES.items()
            ],
        )

    def _priorities(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed=set())
        return Reply(200, [{"id": i, "name": n} for n, i in PRIORITIES.items()])

    def _mypermissions(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(
            request, allowed={"projectKey", "projectId", "permissions", "issueKey", "issueId"}
        )
        wanted = [p for p in request.query.get("permissions", "").split(",") if p]
        if not wanted:
            raise BadRequest("The permissions parameter is required.")
        if "projectKey" in request.query:
            self._project_key(request.query["projectKey"])
        return Reply(
            200,
            {
                "permissions": {
                    key: {
                        "id": str(n),
                        "key": key,
                        "name": key.replace("_", " ").title(),
                        "type": "PROJECT",
                        "havePermission": key in self.permissions,
                    }
                    for n, key in enumerate(wanted, start=10)
                }
            },
        )
