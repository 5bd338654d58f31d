"""Jira Cloud (REST API v3 or v2), optionally through Jira Service Management, as a ticket sink.

The fingerprint is the label `rw-<fingerprint>`; `find` looks for it with JQL among issues whose
status category is not Done. Resolving and reopening run workflow transitions looked up by name
(the transition's own name or the name of the status it leads to), so the project keeps its own
workflow. With `service_desk_id` and `request_type_id` the ticket is raised as a customer request
and the label, priority and component are set on the issue right after.

What Jira Cloud documents and the adapter follows (issue 20):
- 409 "conflicting update" on editIssue and doTransition is retried like 429 and 5xx.
- Search is eventually consistent ("recent updates might not be immediately visible"), so for
  `trust_window` after a confirmed open the stored reference is trusted instead of searching,
  and an issue this sink resolved is not taken for open from a stale search.
- Transition screens: required fields are read with `expand=transitions.fields` and filled
  from `transition_fields`; a required field without a value is a final error naming it.
- `url` is the API base (for scoped tokens `https://api.atlassian.com/ex/jira/<cloudId>`);
  links for people use `browse_url` (the site), which defaults to `url`.
- On Jira Service Management platform comments are public (jsdPublic defaults to true), so a
  service desk sink comments through the JSM API as internal unless `public_comments`.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import msgspec

from checks.settings import Duration, field_error
from collector.sinks import contract

if TYPE_CHECKING:  # httpx loads with the first adapter built, not with the config
    pass


log = logging.getLogger(__name__)

DEFAULT_PRIORITIES = {"CRITICAL": "High", "STALE": "High", "WARNING": "Medium", "UNKNOWN": "Medium"}
_FINGERPRINT = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_SUMMARY_CHARS = 255  # Jira refuses longer summaries


class JiraSinkConfig(
    contract.HttpSinkConfig, frozen=True, kw_only=True, tag_field="type", tag="jira"
):
    """Jira Cloud: the account, the project issues go to, and the workflow names to use."""

    default_priorities: ClassVar[dict[str, str]] = DEFAULT_PRIORITIES
    route_keys: ClassVar[frozenset[str]] = frozenset({"project", "component"})

    email: str
    api_token: contract.Secret
    project: str  # project key, e.g. OPS
    issue_type: str = "Task"
    api_version: Literal[2, 3] = 3  # 3 sends text as Atlassian Document Format
    resolve_transition: str = "Done"
    close_transition: str | None = None  # for a close; default: resolve_transition
    reopen_transition: str = "To Do"
    service_desk_id: str | None = None  # JSM: raise customer requests instead
    request_type_id: str | None = None
    # The site people open links on; `url` may be the API gateway for scoped tokens.
    browse_url: str | None = None
    # Transition name -> fields its screen needs, e.g. {"Done": {"resolution": {"name": "Done"}}}.
    transition_fields: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    # How long a confirmed open or resolve is trusted over search (which lags writes).
    trust_window: Duration = Duration(60)
    public_comments: bool = False  # JSM: comments visible to customers
    # `priorities` (inherited): severity -> value; severities left out keep DEFAULT_PRIORITIES.

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.project.strip():
            raise field_error("project", "give the project key, e.g. OPS")
        if self.browse_url is not None and not self.browse_url.startswith(("http://", "https://")):
            raise field_error("browse_url", "must start with http:// or https://")
        if (self.service_desk_id is None) != (self.request_type_id is None):
            raise field_error(
                "service_desk_id", "give both service_desk_id and request_type_id, or neither"
            )


def adf(text: str) -> dict[str, Any]:
    """Plain text as an Atlassian Document: a paragraph per blank-line block, hard breaks within."""
    paragraphs: list[dict[str, Any]] = []
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").strip("\n")):
        content: list[dict[str, Any]] = []
        for number, line in enumerate(block.split("\n")):
            if number:
                content.append({"type": "hardBreak"})
            if line:
                content.append({"type": "text", "text": line})
        paragraph: dict[str, Any] = {"type": "paragraph"}
        if content:
            paragraph["content"] = content
        paragraphs.append(paragraph)
    return {"type": "doc", "version": 1, "content": paragraphs}


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class JiraSink(contract.HttpSink[JiraSinkConfig]):
    """Issues in Jira Cloud, found again by the label `rw-<fingerprint>`."""

    name = "jira"
    retry_statuses: ClassVar[frozenset[int]] = frozenset({409})  # "conflicting update"

    def __init__(
        self,
        config: JiraSinkConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        # Written by this sink and not yet trusted to search.
        self._trusted = contract.TrustedWrites(float(config.trust_window), clock)

    @property
    def _api(self) -> str:
        return f"/rest/api/{self._config.api_version}"

    def _auth_headers(self) -> Mapping[str, str]:
        # Read on every request so that a rotated token file takes effect without a restart.
        pair = f"{self._config.email}:{self._config.api_token.read()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}

    # -- the Sink operations ------------------------------------------------------------------

    def find(self, fingerprint: str) -> contract.TicketRef | None:
        trusted = self._trusted.find(fingerprint)
        if trusted is not None:
            return trusted
        jql = f'labels = "{_label(fingerprint)}" AND statusCategory != Done'
        data = self._json(
            "GET",
            f"{self._api}/search/jql",
            params={"jql": jql, "fields": "key", "maxResults": "1"},
        )
        issues = [
            issue
            for issue in _get(data, "issues", list, "search")
            if not self._trusted.resolved(_get(issue, "id", str, "search"))
        ]
        if not issues:
            return None
        issue = issues[0]
        return self._ref(_get(issue, "id", str, "search"), _get(issue, "key", str, "search"))

    def open(self, ticket: contract.NewTicket) -> contract.TicketRef:
        route = self._route(ticket)
        if self._config.service_desk_id is not None:
            return self._open_request(ticket, route)
        fields: dict[str, Any] = {
            "project": {"key": route.get("project", self._config.project)},
            "issuetype": {"name": self._config.issue_type},
            "summary": _one_line(ticket.summary, _SUMMARY_CHARS),
            "description": self._text(ticket.description),
            "priority": {"name": self._priority(ticket)},
            "labels": [_label(ticket.fingerprint)],
        }
        if "component" in route:
            fields["components"] = [{"name": route["component"]}]
        data = self._json("POST", f"{self._api}/issue", json={"fields": fields})
        ref = self._ref(_get(data, "id", str, "create"), _get(data, "key", str, "create"))
        return self._trusted.opened(ticket.fingerprint, ref)

    def comment(self, ref: contract.TicketRef, text: str) -> None:
        if self._config.service_desk_id is not None and not self._config.public_comments:
            # A platform comment on a JSM issue is public; the JSM API can make it internal.
            self._http.request(
                "POST",
                f"/rest/servicedeskapi/request/{ref.remote_id}/comment",
                json={"body": text, "public": False},
            )
            return
        self._http.request(
            "POST", f"{self._api}/issue/{ref.remote_id}/comment", json={"body": self._text(text)}
        )

    def update(self, ref: contract.TicketRef, *, priority: str, summary: str, text: str) -> None:
        fields: dict[str, Any] = {"summary": _one_line(summary, _SUMMARY_CHARS)}
        if priority:
            fields["priority"] = {"name": priority}
        self._http.request("PUT", f"{self._api}/issue/{ref.remote_id}", json={"fields": fields})
        self.comment(ref, text)

    def resolve(self, ref: contract.TicketRef, text: str, *, close: bool) -> None:
        name = self._config.resolve_transition
        if close and self._config.close_transition:
            name = self._config.close_transition
        # Transition first, then comment: a retry after a lost answer finds the issue already
        # done and only adds the comment, instead of commenting twice.
        self._transition(ref, name, done=True)
        self._trusted.resolve(ref)
        self.comment(ref, text)

    def reopen(self, ref: contract.TicketRef, text: str) -> None:
        self._transition(ref, self._config.reopen_transition, done=False)
        self._trusted.reopen(ref)
        self.comment(ref, text)

    def status(self, ref: contract.TicketRef) -> contract.RemoteStatus:
        data = self._json("GET", f"{self._api}/issue/{ref.remote_id}", params={"fields": "status"})
        status = _get(_get(data, "fields", dict, "issue"), "status", dict, "issue")
        category = _get(status, "statusCategory", dict, "issue").get("key")
        raw = str(status.get("name", category))
        if category == "new":
            return contract.RemoteStatus("new", raw)
        if category == "done":
            return contract.RemoteStatus("resolved", raw)
        return contract.RemoteStatus("open", raw)

    # -- the self-check -----------------------------------------------------------------------

    def check(self) -> list[contract.Problem]:
        """Probe with read-only calls: auth, project, permissions, priorities, transitions."""
        try:
            self._json("GET", f"{self._api}/myself")
        except contract.SinkError as exc:
            problem = contract.problem_for(
                exc, doing=f"GET {self._api}/myself", credential="`email` and `api_token`"
            )
            if exc.status == 401:
                problem = contract.Problem(
                    problem.what,
                    f"{problem.fix}; a scoped API token (service accounts have only these) "
                    "needs url: https://api.atlassian.com/ex/jira/<cloudId> and browse_url: "
                    "the site URL",
                )
            return [problem]
        project = self._config.project
        try:
            self._json("GET", f"{self._api}/project/{project}")
        except contract.SinkError as exc:
            if exc.status == 404:
                return [
                    contract.Problem(
                        f"project {project!r} does not exist or the user may not browse it",
                        "set `project` to a project key, and give the user Browse projects "
                        "in it (a project role in its permission scheme)",
                    )
                ]
            return [
                contract.problem_for(exc, doing="reading the project", credential="`api_token`")
            ]
        problems = self._check_permissions(project)
        problems += self._check_names(project)
        return problems

    def _check_permissions(self, project: str) -> list[contract.Problem]:
        needed = {
            "BROWSE_PROJECTS": "find issues",
            "CREATE_ISSUES": "open issues",
            "EDIT_ISSUES": "change priority, summary and labels",
            "TRANSITION_ISSUES": "resolve and reopen",
            "ADD_COMMENTS": "comment",
        }
        if any("resolution" in f for f in self._config.transition_fields.values()):
            needed["RESOLVE_ISSUES"] = "set the resolution on the transition screen"
        data = self._json(
            "GET",
            f"{self._api}/mypermissions",
            params={"projectKey": project, "permissions": ",".join(needed)},
        )
        granted = data.get("permissions", {}) if isinstance(data, dict) else {}
        return [
            contract.Problem(
                f"the user lacks {key} in project {project!r}: it cannot {why}",
                f"grant {key} to a project role of the user in the project's permission scheme",
            )
            for key, why in needed.items()
            if not (granted.get(key) or {}).get("havePermission")
        ]

    def _check_names(self, project: str) -> list[contract.Problem]:
        problems: list[contract.Problem] = []
        priorities = {str(p.get("name")) for p in self._json("GET", f"{self._api}/priority")}
        for severity, value in sorted(self._config.priority_values.items()):
            if value not in priorities:
                problems.append(
                    contract.Problem(
                        f"priority {value!r} (for {severity}) is not a Jira priority",
                        f"set priorities.{severity} to one of {sorted(priorities)}",
                    )
                )
        types = self._json("GET", f"{self._api}/project/{project}/statuses")
        kind = next(
            (t for t in types if isinstance(t, dict) and t.get("name") == self._config.issue_type),
            None,
        )
        if kind is None:
            names = sorted(str(t.get("name")) for t in types if isinstance(t, dict))
            return [
                *problems,
                contract.Problem(
                    f"issue type {self._config.issue_type!r} is not used in project {project!r}",
                    f"set issue_type to one of {names}",
                ),
            ]
        statuses = {str(s.get("name")).casefold() for s in kind.get("statuses", [])}
        wanted = {
            "resolve_transition": self._config.resolve_transition,
            "reopen_transition": self._config.reopen_transition,
        }
        if self._config.close_transition:
            wanted["close_transition"] = self._config.close_transition
        for option, name in wanted.items():
            if name.casefold() not in statuses:
                problems.append(
                    contract.Problem(
                        f"{option} {name!r}: issue type {self._config.issue_type!r} in "
                        f"{project!r} has no status of that name (transitions are matched by "
                        "their name or their target status)",
                        f"set {option} to the transition's name or one of "
                        f"{sorted(s.get('name') for s in kind.get('statuses', []))}",
                        # A transition may carry a name no status has: not certain.
                        "warning",
                    )
                )
        return problems

    # -- helpers ------------------------------------------------------------------------------

    def _open_request(
        self, ticket: contract.NewTicket, route: dict[str, str]
    ) -> contract.TicketRef:
        if "project" in route:
            raise contract.SinkError(
                "jira: route key 'project' does not apply to a service desk sink "
                "(service_desk_id decides the project)",
                retryable=False,
            )
        body = {
            "serviceDeskId": self._config.service_desk_id,
            "requestTypeId": self._config.request_type_id,
            # The service desk API takes plain text for the description, in every API version.
            "requestFieldValues": {
                "summary": _one_line(ticket.summary, _SUMMARY_CHARS),
                "description": ticket.description,
            },
        }
        data = self._json("POST", "/rest/servicedeskapi/request", json=body)
        ref = self._ref(
            _get(data, "issueId", str, "request"), _get(data, "issueKey", str, "request")
        )
        self._trusted.opened(ticket.fingerprint, ref)
        fields: dict[str, Any] = {
            "labels": [_label(ticket.fingerprint)],
            "priority": {"name": self._priority(ticket)},
        }
        if "component" in route:
            fields["components"] = [{"name": route["component"]}]
        try:
            self._http.request("PUT", f"{self._api}/issue/{ref.remote_id}", json={"fields": fields})
        except contract.SinkError as exc:
            # The request exists; failing here would make the outbox raise a second one. Without
            # the label only crash recovery (find before open) cannot see this ticket.
            log.warning(
                "jira: request %s was raised but its label, priority and component "
                "could not be set (check that the API user may edit issues of service "
                "desk %s): %s",
                ref.remote_id,
                self._config.service_desk_id,
                exc,
            )
        return ref

    def _transition(self, ref: contract.TicketRef, name: str, *, done: bool) -> None:
        path = f"{self._api}/issue/{ref.remote_id}/transitions"
        data = self._json("GET", path, params={"expand": "transitions.fields"})
        transitions = _get(data, "transitions", list, "transitions")
        wanted = name.casefold()
        for transition in transitions:
            target = transition.get("to") or {}
            if wanted in (
                str(transition.get("name", "")).casefold(),
                str(target.get("name", "")).casefold(),
            ):
                transition_id = _get(transition, "id", str, "transitions")
                given = self._config.transition_fields.get(name, {})
                self._check_screen(ref, name, transition, given)
                body: dict[str, Any] = {"transition": {"id": transition_id}}
                if given:
                    body["fields"] = given
                self._http.request("POST", path, json=body)
                return
        if (self.status(ref).state == "resolved") == done:
            return  # already there, e.g. a retry after an answer that got lost
        available = ", ".join(sorted(str(t.get("name")) for t in transitions)) or "none"
        option = "resolve_transition" if done else "reopen_transition"
        raise contract.SinkError(
            f"jira: issue {ref.remote_id} has no transition {name!r} "
            f"(available: {available}); set {option} to one of them",
            retryable=False,
        )

    def _check_screen(
        self, ref: contract.TicketRef, name: str, transition: Any, given: Mapping[str, Any]
    ) -> None:
        """Refuse, naming the option, a transition whose screen needs a field not configured."""
        fields = transition.get("fields") if isinstance(transition, dict) else None
        if not isinstance(fields, dict):
            return
        missing = sorted(
            key
            for key, meta in fields.items()
            if isinstance(meta, dict)
            and meta.get("required")
            and not meta.get("hasDefaultValue")
            and key not in given
        )
        if missing:
            raise contract.SinkError(
                f"jira: transition {name!r} of issue {ref.remote_id} needs the screen fields "
                f"{missing}; set transition_fields.{name} (e.g. "
                f'{{"resolution": {{"name": "Done"}}}})',
                retryable=False,
            )

    def _route(self, ticket: contract.NewTicket) -> dict[str, str]:
        contract.check_route(self.name, ticket.route, self._config.route_keys)
        return dict(ticket.route)

    def _priority(self, ticket: contract.NewTicket) -> str:
        values = self._config.priority_values
        return ticket.priority or values.get(ticket.severity, DEFAULT_PRIORITIES["WARNING"])

    def _text(self, text: str) -> Any:
        return adf(text) if self._config.api_version == 3 else text

    def _ref(self, issue_id: str, key: str) -> contract.TicketRef:
        # The numeric id stays valid when an issue moves to another project; the key does not.
        site = (self._config.browse_url or self._http.base_url).rstrip("/")
        return contract.TicketRef(issue_id, f"{site}/browse/{key}")


def _label(fingerprint: str) -> str:
    if not _FINGERPRINT.match(fingerprint):
        raise contract.SinkError(
            f"jira: fingerprint {fingerprint!r} cannot be a label", retryable=False
        )
    return f"rw-{fingerprint}"


def _get(data: Any, key: str, kind: type, what: str) -> Any:
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, int) and kind is str:
        value = str(value)
    if not isinstance(value, kind):
        raise contract.SinkError(f"jira: unexpected {what} answer: no {key!r}", retryable=False)
    return value
