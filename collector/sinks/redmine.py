"""Redmine adapter: one issue per incident, found again by a fingerprint custom field.

Tested against Debian's Redmine 5.0. Names in the config (statuses, priorities, trackers, the
custom field, assignee logins) are resolved to ids on first use and cached for the sink's life.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgspec

from checks.settings import field_error
from collector.sinks import contract

if TYPE_CHECKING:  # httpx loads with the first adapter built, not with the config
    import httpx


SUBJECT_MAX_CHARS = 255  # Redmine rejects longer subjects with a 422
# Redmine's default data has Bug, Feature and Support; a monitoring call is no bug report.
DEFAULT_TRACKER = "Support"
DEFAULT_STATUSES = {"resolved": "Resolved", "closed": "Closed", "reopened": "New"}
DEFAULT_PRIORITIES = {"CRITICAL": "High", "STALE": "High", "WARNING": "Normal", "UNKNOWN": "Normal"}
_FIND_LIMIT = 100

T = TypeVar("T")


class RedmineSinkConfig(contract.HttpSinkConfig, frozen=True, tag_field="type", tag="redmine"):
    """A Redmine with the REST API on and an issue custom field that holds the fingerprint."""

    # What a run group's `route` may set for this sink.
    default_priorities: ClassVar[dict[str, str]] = DEFAULT_PRIORITIES
    route_keys: ClassVar[frozenset[str]] = frozenset({"project", "tracker", "assignee"})
    subject_max_chars: ClassVar[int] = SUBJECT_MAX_CHARS

    api_key: contract.Secret
    project: str  # identifier (or id) of the default project
    tracker: str = DEFAULT_TRACKER  # name or id; must be enabled in every routed project
    fingerprint_field: str = "dedup_key"
    # Used only when GET /custom_fields.json is refused, as it is for a key without admin.
    fingerprint_field_id: int | None = None
    # resolved, closed, reopened -> status name or id; unset ones keep DEFAULT_STATUSES.
    statuses: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        contract.check_keys("statuses", self.statuses, DEFAULT_STATUSES, "key")
        if not self.tracker.strip():
            raise field_error("tracker", "must name a Redmine tracker (or give its id)")

    @property
    def status_values(self) -> dict[str, str]:
        """resolved, closed and reopened -> status name or id, defaults filled in."""
        return {**DEFAULT_STATUSES, **self.statuses}


# The parts of Redmine's answers this adapter reads; msgspec ignores the rest.


class _Ref(msgspec.Struct):
    id: int
    name: str = ""


class _Status(msgspec.Struct):
    id: int
    name: str
    is_closed: bool = False


class _Tracker(msgspec.Struct):
    id: int
    name: str
    default_status: _Ref | None = None


class _Field(msgspec.Struct):
    id: int
    name: str
    customized_type: str = ""
    is_filter: bool = True


class _User(msgspec.Struct):
    id: int
    login: str = ""


class _FieldValue(msgspec.Struct):
    id: int
    value: str | list[str] | None = None


class _Detail(msgspec.Struct):
    property: str
    name: str
    new_value: str | None = None


class _Journal(msgspec.Struct):
    id: int
    created_on: str
    user: _Ref | None = None
    notes: str | None = None
    details: list[_Detail] = []


class _Issue(msgspec.Struct):
    id: int
    status: _Ref
    tracker: _Ref
    custom_fields: list[_FieldValue] = []
    author: _Ref | None = None
    assigned_to: _Ref | None = None
    journals: list[_Journal] = []


class _Project(msgspec.Struct):
    id: int
    trackers: list[_Ref] = []


class _Statuses(msgspec.Struct):
    issue_statuses: list[_Status]


class _Trackers(msgspec.Struct):
    trackers: list[_Tracker]


class _Priorities(msgspec.Struct):
    issue_priorities: list[_Ref]


class _Fields(msgspec.Struct):
    custom_fields: list[_Field]


class _Users(msgspec.Struct):
    users: list[_User]


class _Issues(msgspec.Struct):
    issues: list[_Issue]


class _OneIssue(msgspec.Struct):
    issue: _Issue


class _OneProject(msgspec.Struct):
    project: _Project


def _subject(summary: str) -> str:
    """One line, at most SUBJECT_MAX_CHARS, ending in an ellipsis when cut."""
    line = " ".join(summary.split())
    if len(line) <= SUBJECT_MAX_CHARS:
        return line
    return line[: SUBJECT_MAX_CHARS - 1].rstrip() + "…"


def _pick(kind: str, wanted: str, options: list[_Ref] | list[_Status] | list[_Tracker]) -> int:
    """The id of the option named (case-insensitively) or numbered `wanted`."""
    for option in options:
        if str(option.id) == wanted.strip() or option.name.casefold() == wanted.casefold():
            return option.id
    known = ", ".join(option.name for option in options) or "none"
    raise contract.SinkError(f"redmine: no {kind} {wanted!r} (known: {known})", retryable=False)


class RedmineSink(contract.HttpSink[RedmineSinkConfig]):
    """Tickets as Redmine issues, found again by the fingerprint custom field."""

    name = "redmine"
    keeps_description: ClassVar[bool] = True

    @staticmethod
    def retry_answer(status: int, body: str) -> bool:
        """Redmine answers a write that met someone else's at the same moment (a stale object)
        with 422 and no validation errors: the issue is fine, the write is tried again."""
        if status != 422:
            return False
        try:
            answer = json.loads(body)
        except ValueError:
            return False
        return isinstance(answer, dict) and answer.get("errors") == []

    def __init__(
        self, config: RedmineSinkConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        super().__init__(config, transport=transport)
        self.base_url = self._http.base_url
        self._field_id: int | None = None
        self._statuses: list[_Status] | None = None
        self._initial_status: dict[int, int] = {}  # tracker id -> its default status id
        self._priorities: list[_Ref] | None = None
        self._trackers: dict[str, list[_Ref]] = {}  # project -> trackers enabled there
        self._users: dict[str, int] = {}  # login -> id

    # --- the Sink operations ---

    def find(self, fingerprint: str) -> contract.TicketRef | None:
        """The newest open, not resolved issue in any project that carries the fingerprint."""
        field = self._fingerprint_field_id()
        resolved = self._status_id("resolved")
        # The explicit filter form: the short form (cf_N=VALUE) reads a leading !, ~, * or ^
        # as an operator and splits values at |.
        params = {
            "f[]": ["status_id", f"cf_{field}"],
            "op[status_id]": "o",
            f"op[cf_{field}]": "=",
            f"v[cf_{field}][]": [fingerprint],
            "sort": "id:desc",
            "limit": _FIND_LIMIT,
        }
        found = self._call(_Issues, "GET", "/issues.json", params=params)
        for issue in found.issues:
            # Redmine counts Resolved as open; a resolved issue is not reused.
            if issue.status.id == resolved:
                continue
            # Guard against a database that compares without case, or a field that is not
            # a filter (Redmine then ignores the condition).
            if any(
                value.id == field and value.value == fingerprint for value in issue.custom_fields
            ):
                return self._ref(issue.id)
        return None

    def open(self, ticket: contract.NewTicket) -> contract.TicketRef:
        """Create the issue in the routed (or default) project, tracker and assignee."""
        project = ticket.route.get("project") or self._config.project
        tracker = ticket.route.get("tracker") or self._config.tracker
        priority = ticket.priority or self.priority_for(ticket.severity)
        issue: dict[str, Any] = {
            "project_id": project,
            "tracker_id": self._tracker_id(project, tracker),
            "subject": _subject(ticket.summary),
            "description": ticket.description,
            "priority_id": self._priority_id(priority),
            "custom_fields": [{"id": self._fingerprint_field_id(), "value": ticket.fingerprint}],
        }
        assignee = ticket.route.get("assignee")
        if assignee:
            issue["assigned_to_id"] = self._user_id(assignee)
        created = self._call(_OneIssue, "POST", "/issues.json", json={"issue": issue})
        return self._ref(created.issue.id)

    def comment(self, ref: contract.TicketRef, text: str) -> None:
        """Add a note."""
        self._put(ref, {"notes": text})

    def update(
        self,
        ref: contract.TicketRef,
        *,
        priority: str,
        summary: str,
        text: str,
        description: str | None = None,
    ) -> None:
        """Change priority, subject and (when given) description, with a note saying why."""
        issue: dict[str, Any] = {"subject": _subject(summary), "notes": text}
        if priority:
            issue["priority_id"] = self._priority_id(priority)
        if description:
            issue["description"] = description
        self._put(ref, issue)

    def resolve(
        self, ref: contract.TicketRef, text: str, *, close: bool, description: str | None = None
    ) -> None:
        """Set the configured resolved (or closed) status and the description, with a note."""
        status = self._status_id("closed" if close else "resolved")
        issue: dict[str, Any] = {"status_id": status, "notes": text}
        if description:
            issue["description"] = description
        self._put(ref, issue)

    def reopen(self, ref: contract.TicketRef, text: str, *, description: str | None = None) -> None:
        """Set the configured reopened status and the description, with a note."""
        issue: dict[str, Any] = {"status_id": self._status_id("reopened"), "notes": text}
        if description:
            issue["description"] = description
        self._put(ref, issue)

    def status(self, ref: contract.TicketRef) -> contract.RemoteStatus:
        """closed, resolved, new (still in its tracker's initial status) or open."""
        issue = self._call(_OneIssue, "GET", f"/issues/{self._issue_id(ref)}.json").issue
        return self._remote_status(issue.status.id, issue.status.name, issue.tracker.id)

    def read_ticket(self, ref: contract.TicketRef) -> contract.TicketReading:
        """The status, and the journals of people other than the issue's author (runwatch's
        own user, which created it): notes, new assignees, status changes."""
        issue = self._call(
            _OneIssue,
            "GET",
            f"/issues/{self._issue_id(ref)}.json",
            params={"include": "journals"},
        ).issue
        status = self._remote_status(issue.status.id, issue.status.name, issue.tracker.id)
        own = issue.author.id if issue.author else None
        activity: list[contract.DeskActivity] = []
        for journal in issue.journals:
            if journal.user is None or journal.user.id == own:
                continue
            at = contract.desk_time("redmine", journal.created_on)
            author = journal.user.name or f"user {journal.user.id}"
            if journal.notes and journal.notes.strip():
                activity.append(contract.DeskActivity(at, "comment", author, journal.notes))
            for detail in journal.details:
                if detail.property != "attr" or not detail.new_value:
                    continue
                if detail.name == "assigned_to_id":
                    named = issue.assigned_to
                    who = (
                        named.name
                        if named and str(named.id) == detail.new_value
                        else f"user {detail.new_value}"
                    )
                    activity.append(contract.DeskActivity(at, "assign", author, who))
                elif detail.name == "status_id" and detail.new_value.isdigit():
                    changed = self._remote_status(int(detail.new_value), "", issue.tracker.id)
                    closing = changed.state in ("resolved", "closed")
                    activity.append(
                        contract.DeskActivity(
                            at, "close" if closing else "status", author, changed.raw
                        )
                    )
        return contract.TicketReading(status, tuple(activity))

    def _remote_status(self, status_id: int, name: str, tracker_id: int) -> contract.RemoteStatus:
        statuses = self._all_statuses()
        current = next((s for s in statuses if s.id == status_id), None)
        raw = name or (current.name if current else str(status_id))
        if status_id == self._status_id("closed") or (current and current.is_closed):
            return contract.RemoteStatus(state="closed", raw=raw)
        if status_id == self._status_id("resolved"):
            return contract.RemoteStatus(state="resolved", raw=raw)
        if status_id == self._initial_status_id(tracker_id):
            return contract.RemoteStatus(state="new", raw=raw)
        return contract.RemoteStatus(state="open", raw=raw)

    def priority_for(self, severity: str) -> str:
        """This sink's priority value (name or id) for a severity."""
        return self._config.priority_values.get(severity, DEFAULT_PRIORITIES["WARNING"])

    # --- requests ---

    def _auth_headers(self) -> dict[str, str]:
        return {"X-Redmine-API-Key": self._config.api_key.read()}

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self._http.request(method, path, **kw)

    def _call(self, answer: type[T], method: str, path: str, **kw: Any) -> T:
        response = self._request(method, path, **kw)
        try:
            return msgspec.json.decode(response.content, type=answer)
        except msgspec.DecodeError as exc:
            raise contract.SinkError(
                f"redmine: {method} {self.base_url}{path} answered "
                f"{response.status_code} with unexpected content: {exc}",
                retryable=False,
                status=response.status_code,
            ) from None

    def _put(self, ref: contract.TicketRef, issue: dict[str, Any]) -> None:
        self._request("PUT", f"/issues/{self._issue_id(ref)}.json", json={"issue": issue})

    def _ref(self, issue_id: int) -> contract.TicketRef:
        return contract.TicketRef(remote_id=str(issue_id), url=f"{self.base_url}/issues/{issue_id}")

    @staticmethod
    def _issue_id(ref: contract.TicketRef) -> int:
        if not ref.remote_id.isdigit():
            raise contract.SinkError(
                f"redmine: {ref.remote_id!r} is not an issue number", retryable=False
            )
        return int(ref.remote_id)

    # --- names to ids, each looked up once ---

    def _fingerprint_field_id(self) -> int:
        if self._field_id is not None:
            return self._field_id
        wanted = self._config.fingerprint_field
        try:
            fields = self._call(_Fields, "GET", "/custom_fields.json").custom_fields
        except contract.SinkError as exc:
            # Only admins may list custom fields (403 for others; 401 is a bad key).
            if exc.status != 403:
                raise
            if self._config.fingerprint_field_id is None:
                raise contract.SinkError(
                    f"{exc}; listing custom fields needs an admin key: set "
                    f"fingerprint_field_id to the id of {wanted!r}",
                    retryable=False,
                    status=exc.status,
                ) from None
            self._field_id = self._config.fingerprint_field_id
            return self._field_id
        field = next((f for f in fields if f.customized_type == "issue" and f.name == wanted), None)
        if field is None:
            raise contract.SinkError(
                f"redmine: no issue custom field named {wanted!r}", retryable=False
            )
        if not field.is_filter:
            raise contract.SinkError(
                f"redmine: custom field {wanted!r} must be used as a filter, or "
                f"issues cannot be found by fingerprint",
                retryable=False,
            )
        self._field_id = field.id
        return field.id

    def _all_statuses(self) -> list[_Status]:
        if self._statuses is None:
            self._statuses = self._call(_Statuses, "GET", "/issue_statuses.json").issue_statuses
        return self._statuses

    def _status_id(self, role: str) -> int:
        return _pick("issue status", self._config.status_values[role], self._all_statuses())

    def _initial_status_id(self, tracker_id: int) -> int:
        if not self._initial_status:
            trackers = self._call(_Trackers, "GET", "/trackers.json").trackers
            first = self._all_statuses()[0].id
            self._initial_status = {
                t.id: t.default_status.id if t.default_status else first for t in trackers
            }
        return self._initial_status.get(tracker_id, self._all_statuses()[0].id)

    def _priority_id(self, priority: str) -> int:
        if priority.strip().isdigit():  # Redmine answers 422 to an unknown id
            return int(priority)
        if self._priorities is None:
            self._priorities = self._call(
                _Priorities, "GET", "/enumerations/issue_priorities.json"
            ).issue_priorities
        return _pick("issue priority", priority, self._priorities)

    def _tracker_id(self, project: str, tracker: str) -> int:
        # Checked against the project: Redmine silently files an issue with a tracker
        # it does not know under the project's default tracker.
        if project not in self._trackers:
            self._trackers[project] = self._call(
                _OneProject, "GET", f"/projects/{project}.json", params={"include": "trackers"}
            ).project.trackers
        return _pick(f"tracker in project {project!r}", tracker, self._trackers[project])

    def _user_id(self, assignee: str) -> int:
        if assignee.strip().isdigit():
            return int(assignee)
        if assignee not in self._users:
            # Listing users needs an admin key; without one, route by user id.
            users = self._call(_Users, "GET", "/users.json", params={"name": assignee}).users
            match = next((u.id for u in users if u.login == assignee), None)
            if match is None:
                raise contract.SinkError(
                    f"redmine: no user with login {assignee!r}", retryable=False
                )
            self._users[assignee] = match
        return self._users[assignee]

    def check(self) -> list[contract.Problem]:
        """Probe with read-only calls: the key, project and tracker, field, statuses, priorities."""
        config = self._config
        steps: list[tuple[str, Callable[[], object]]] = [
            (
                f"project {config.project!r} and its tracker",
                lambda: self._tracker_id(config.project, config.tracker),
            ),
            (f"custom field {config.fingerprint_field!r}", self._fingerprint_field_id),
        ]
        steps += [
            (f"status for {role}", functools.partial(self._status_id, role))
            for role in sorted(config.status_values)
        ]
        steps += [
            (f"priority for {severity}", functools.partial(self._priority_id, value))
            for severity, value in sorted(config.priority_values.items())
        ]
        return contract.run_checks(steps, credential="`api_key`")
