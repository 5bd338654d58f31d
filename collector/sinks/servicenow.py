"""ServiceNow incidents through the Table API as a ticket sink.

The fingerprint is the incident's `correlation_id`; `find` looks for it among incidents that are not
Resolved (6), Closed (7) or Canceled (8). Priority is not written directly: ServiceNow derives it
from urgency and impact, so each configured priority is a pair `URGENCY,IMPACT` (1 high … 3 low),
or one digit for both.

Closing (issue 20): ServiceNow closes a Resolved incident by itself after
`glide.ui.autoclose.time` days, and setting Closed (7) needs itil_admin or admin ("Resolve and
close an incident"). So by default a close resolves (6) too; `close_state: closed` sets 7 after
6 and reads the state back, because an instance may leave a field the user may not write
unchanged and still answer 200. Reference fields are stored as given by the Table API, so a
caller or group given by name is looked up (sys_user by user_name, sys_user_group by name)
and sent as its sys_id.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from checks.settings import field_error
from collector.sinks import contract

DEFAULT_PRIORITIES = {"CRITICAL": "1,1", "STALE": "1,1", "WARNING": "2,2", "UNKNOWN": "2,2"}
INCIDENT = "/api/now/table/incident"
STATES = {
    "1": "New",
    "2": "In Progress",
    "3": "On Hold",
    "6": "Resolved",
    "7": "Closed",
    "8": "Canceled",
}
_PAIR = re.compile(r"^\s*([123])\s*(?:,\s*([123])\s*)?$")
_FINGERPRINT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")  # correlation_id holds 100 characters
_SHORT_DESCRIPTION_CHARS = 160
_SYS_ID = re.compile(r"^[0-9a-f]{32}$")


def urgency_impact(priority: str) -> tuple[str, str] | None:
    """Parse `1,2` (urgency 1, impact 2) or `2` (both 2); None when it is neither."""
    match = _PAIR.match(priority)
    if match is None:
        return None
    return match.group(1), match.group(2) or match.group(1)


class ServiceNowSinkConfig(
    contract.HttpSinkConfig, frozen=True, kw_only=True, tag_field="type", tag="servicenow"
):
    """ServiceNow: the integration user, and how incidents are filled in and closed."""

    default_priorities: ClassVar[dict[str, str]] = DEFAULT_PRIORITIES
    route_keys: ClassVar[frozenset[str]] = frozenset({"assignment_group"})

    user: str
    password: contract.Secret
    caller_id: str | None = None  # sys_id, or user name (user_name) looked up in sys_user
    comment_field: Literal["work_notes", "comments"] = "work_notes"  # work notes stay internal
    # The Resolution code choice to set: a value of sys_choice incident.close_code, which
    # differs by release ("Solution provided" from Utah, "Solved (Permanently)" before).
    close_code: str = "Solution provided"
    # What a close does: resolved (6, the instance's auto-close closes it later) or closed (7,
    # needs itil_admin or admin).
    close_state: Literal["resolved", "closed"] = "resolved"
    correlation_display: str = "runwatch"
    # `priorities` (inherited): severity -> value; severities left out keep DEFAULT_PRIORITIES.

    def __post_init__(self) -> None:
        super().__post_init__()
        for severity, value in self.priorities.items():
            if urgency_impact(value) is None:
                raise field_error(
                    "priorities",
                    f"{severity}: expected URGENCY,IMPACT such as 1,2 (each 1-3), got {value!r}",
                )


class ServiceNowSink(contract.HttpSink[ServiceNowSinkConfig]):
    """Incidents in ServiceNow, found again by `correlation_id`."""

    name = "servicenow"

    def __init__(self, config: ServiceNowSinkConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._sys_ids: dict[tuple[str, str], str] = {}  # (table, name) -> sys_id

    def _auth_headers(self) -> Mapping[str, str]:
        # Read on every request so that a rotated password file takes effect without a restart.
        pair = f"{self._config.user}:{self._config.password.read()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}

    def find(self, fingerprint: str) -> contract.TicketRef | None:
        if not _FINGERPRINT.match(fingerprint):
            raise contract.SinkError(
                f"servicenow: fingerprint {fingerprint!r} cannot be a correlation id",
                retryable=False,
            )
        params = {
            "sysparm_query": f"correlation_id={fingerprint}^stateNOT IN6,7,8",
            "sysparm_fields": "sys_id,number,state",
            "sysparm_limit": "1",
        }
        records = self._result("GET", INCIDENT, params=params)
        if not isinstance(records, list):
            raise contract.SinkError(
                "servicenow: unexpected search answer: result is not a list", retryable=False
            )
        if not records:
            return None
        return self._ref(_sys_id(records[0]))

    def open(self, ticket: contract.NewTicket) -> contract.TicketRef:
        contract.check_route(self.name, ticket.route, self._config.route_keys)
        if not _FINGERPRINT.match(ticket.fingerprint):
            raise contract.SinkError(
                f"servicenow: fingerprint {ticket.fingerprint!r} cannot be a correlation id",
                retryable=False,
            )
        body = {
            "short_description": _one_line(ticket.summary, _SHORT_DESCRIPTION_CHARS),
            "description": ticket.description,
            **self._urgency_impact(
                ticket.priority
                or self._config.priority_values.get(ticket.severity, DEFAULT_PRIORITIES["WARNING"])
            ),
            "correlation_id": ticket.fingerprint,
            "correlation_display": self._config.correlation_display,
        }
        if "assignment_group" in ticket.route:
            body["assignment_group"] = self._sys_id_of(
                "sys_user_group", "name", ticket.route["assignment_group"]
            )
        if self._config.caller_id:
            body["caller_id"] = self._sys_id_of("sys_user", "user_name", self._config.caller_id)
        record = self._result(
            "POST", INCIDENT, json=body, params={"sysparm_fields": "sys_id,number"}
        )
        return self._ref(_sys_id(record))

    def comment(self, ref: contract.TicketRef, text: str) -> None:
        self._patch(ref, {self._config.comment_field: text})

    def update(self, ref: contract.TicketRef, *, priority: str, summary: str, text: str) -> None:
        self._patch(
            ref,
            {
                "short_description": _one_line(summary, _SHORT_DESCRIPTION_CHARS),
                **(self._urgency_impact(priority) if priority else {}),
                self._config.comment_field: text,
            },
        )

    def resolve(self, ref: contract.TicketRef, text: str, *, close: bool) -> None:
        # Resolution code and notes are mandatory for both states (a data policy in the base
        # system); the notes carry the text, so no separate comment is needed.
        current = self.status(ref).raw
        if current != STATES["7"]:  # a Closed incident is read-only
            self._patch(
                ref,
                {"state": "6", "close_code": self._config.close_code, "close_notes": text},
            )
        if not close or self._config.close_state == "resolved" or current == STATES["7"]:
            return
        try:
            record = self._result(
                "PATCH",
                f"{INCIDENT}/{ref.remote_id}",
                json={"state": "7"},
                params={"sysparm_fields": "sys_id,state"},
            )
        except contract.SinkError as exc:
            if exc.status != 403:
                raise
            raise contract.SinkError(
                f"{exc}; closing needs the role itil_admin or admin: grant it, or set "
                "close_state: resolved and let the instance's auto-close close the incident",
                retryable=False,
                status=403,
            ) from None
        state = str(record.get("state")) if isinstance(record, dict) else "7"
        if state != "7":
            raise contract.SinkError(
                f"servicenow: incident {ref.remote_id} is still {STATES.get(state, state)!r} "
                "after setting Closed (7): the user may not close (needs itil_admin or admin); "
                "grant the role, or set close_state: resolved",
                retryable=False,
            )

    def reopen(self, ref: contract.TicketRef, text: str) -> None:
        # A Closed (7) incident is read-only in the base system; only Resolved can come back.
        self._patch(ref, {"state": "2", self._config.comment_field: text})

    def status(self, ref: contract.TicketRef) -> contract.RemoteStatus:
        record = self._result(
            "GET", f"{INCIDENT}/{ref.remote_id}", params={"sysparm_fields": "state,number"}
        )
        state = str(record.get("state", "")) if isinstance(record, dict) else ""
        raw = STATES.get(state, state or "unknown")
        if state == "1":
            return contract.RemoteStatus("new", raw)
        if state == "6":
            return contract.RemoteStatus("resolved", raw)
        if state in ("7", "8"):
            return contract.RemoteStatus("closed", raw)
        return contract.RemoteStatus("open", raw)

    def check(self) -> list[contract.Problem]:
        """Probe with read-only calls: auth, the caller, the close code, the user's roles."""
        try:
            self._result("GET", INCIDENT, params={"sysparm_limit": "1", "sysparm_fields": "sys_id"})
        except contract.SinkError as exc:
            return [
                contract.problem_for(
                    exc, doing=f"GET {INCIDENT}", credential="`user` and `password`"
                )
            ]
        problems: list[contract.Problem] = []
        if self._config.caller_id:
            try:
                self._sys_id_of("sys_user", "user_name", self._config.caller_id)
            except contract.SinkError as exc:
                problems.append(
                    contract.Problem(
                        f"caller_id: {exc}", "set caller_id to a sys_id or an existing user_name"
                    )
                )
        problems += self._check_close_code()
        problems += self._check_roles()
        return problems

    def _check_close_code(self) -> list[contract.Problem]:
        query = "name=incident^element=close_code^inactive=false"
        try:
            rows = self._result(
                "GET",
                "/api/now/table/sys_choice",
                params={"sysparm_query": query, "sysparm_fields": "value,label"},
            )
        except contract.SinkError as exc:
            return [
                contract.Problem(
                    f"cannot read the close_code choices ({exc})",
                    "let the user read sys_choice, or check close_code by hand under "
                    "System Definition > Choice Lists (incident, close_code)",
                    "warning",
                )
            ]
        values = sorted({str(r.get("value")) for r in rows if isinstance(r, dict)})
        if self._config.close_code in values:
            return []
        return [
            contract.Problem(
                f"close_code {self._config.close_code!r} is not a choice of incident.close_code "
                "on this instance: resolving would be refused",
                f"set close_code to one of: {', '.join(values)}",
            )
        ]

    def _check_roles(self) -> list[contract.Problem]:
        try:
            me = self._sys_id_of("sys_user", "user_name", self._config.user)
            rows = self._result(
                "GET",
                "/api/now/table/sys_user_has_role",
                params={"sysparm_query": f"user={me}", "sysparm_fields": "role.name"},
            )
        except contract.SinkError as exc:
            return [
                contract.Problem(
                    f"cannot read the user's roles ({exc})",
                    "check by hand that the user has itil (and itil_admin for close_state: closed)",
                    "warning",
                )
            ]
        roles = {str(r.get("role.name")) for r in rows if isinstance(r, dict)}
        problems = []
        if not roles & {"itil", "sn_incident_write", "admin"}:
            problems.append(
                contract.Problem(
                    f"user {self._config.user!r} has none of itil, sn_incident_write, admin: "
                    "it cannot create or resolve incidents",
                    "grant the role itil to the integration user",
                )
            )
        if self._config.close_state == "closed" and not roles & {"itil_admin", "admin"}:
            problems.append(
                contract.Problem(
                    f"close_state is closed but user {self._config.user!r} has neither "
                    "itil_admin nor admin: closing would be refused",
                    "grant itil_admin, or set close_state: resolved (the instance's "
                    "auto-close then closes resolved incidents)",
                )
            )
        return problems

    def _sys_id_of(self, table: str, key: str, value: str) -> str:
        """`value` if it is a sys_id, else the sys_id of the `table` row whose `key` is it."""
        if _SYS_ID.match(value):
            return value
        cache = self._sys_ids
        if (table, value) not in cache:
            rows = self._result(
                "GET",
                f"/api/now/table/{table}",
                params={
                    "sysparm_query": f"{key}={value}",
                    "sysparm_fields": "sys_id",
                    "sysparm_limit": "1",
                },
            )
            if not rows:
                option = "caller_id" if table == "sys_user" else "the route's assignment_group"
                raise contract.SinkError(
                    f"servicenow: no {table} with {key} {value!r}; fix {option}", retryable=False
                )
            cache[(table, value)] = _sys_id(rows[0])
        return str(cache[(table, value)])

    def _patch(self, ref: contract.TicketRef, body: dict[str, str]) -> None:
        self._http.request(
            "PATCH", f"{INCIDENT}/{ref.remote_id}", json=body, params={"sysparm_fields": "sys_id"}
        )

    def _urgency_impact(self, priority: str) -> dict[str, str]:
        pair = urgency_impact(priority)
        if pair is None:
            raise contract.SinkError(
                f"servicenow: priority {priority!r} is not URGENCY,IMPACT such as "
                "1,2; fix the sink's priorities",
                retryable=False,
            )
        return {"urgency": pair[0], "impact": pair[1]}

    def _ref(self, sys_id: str) -> contract.TicketRef:
        return contract.TicketRef(sys_id, f"{self._http.base_url}/incident.do?sys_id={sys_id}")

    def _result(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise contract.SinkError(
                f"servicenow: {method} {self._http.base_url}{path} answered "
                f"{response.status_code} without JSON",
                retryable=False,
            ) from None
        if not isinstance(data, dict) or "result" not in data:
            raise contract.SinkError(
                f"servicenow: {method} {self._http.base_url}{path}: the answer has no 'result'",
                retryable=False,
            )
        return data["result"]


def _sys_id(record: Any) -> str:
    sys_id = record.get("sys_id") if isinstance(record, dict) else None
    if not isinstance(sys_id, str) or not sys_id:
        raise contract.SinkError("servicenow: unexpected answer: no sys_id", retryable=False)
    return sys_id


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
