"""ServiceNow incidents through the Table API as a ticket sink.

The fingerprint is the incident's `correlation_id`; `find` looks for it among incidents that are not
Resolved (6), Closed (7) or Canceled (8). Priority is not written directly: ServiceNow derives it
from urgency and impact, so each configured priority is a pair `URGENCY,IMPACT` (1 high … 3 low),
or one digit for both.
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
    caller_id: str | None = None  # sys_id or user name of the caller
    comment_field: Literal["work_notes", "comments"] = "work_notes"  # work notes stay internal
    close_code: str = "Solution provided"  # the Resolution code choice to set
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
            body["assignment_group"] = ticket.route["assignment_group"]
        if self._config.caller_id:
            body["caller_id"] = self._config.caller_id
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
        self._patch(
            ref,
            {
                "state": "7" if close else "6",
                "close_code": self._config.close_code,
                "close_notes": text,
            },
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
