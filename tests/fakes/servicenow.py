"""A stand-in for ServiceNow's Table API on the incident table.

Only what the runwatch adapter uses, in the documented shapes:

    POST  /api/now/table/incident                  {flat strings} -> 201 {"result": {...}}
    GET   /api/now/table/incident?sysparm_query=…  -> 200 {"result": [...]}
    GET   /api/now/table/incident/{sys_id}         -> 200 {"result": {...}}
    PATCH /api/now/table/incident/{sys_id}         {flat strings} -> 200 {"result": {...}}
    GET   /api/now/table/sys_user?sysparm_query=user_name=…           -> 200 {"result": [...]}
    GET   /api/now/table/sys_user_group?sysparm_query=name=…          -> 200 {"result": [...]}
    GET   /api/now/table/sys_user_has_role?sysparm_query=user=…       -> 200 {"result": [...]}
    GET   /api/now/table/sys_choice?sysparm_query=name=incident^element=…^inactive=false

Reference fields (caller_id, assignment_group) are stored as given, as the Table API does
without sysparm_input_display_value=true (a user name in caller_id is a broken reference);
with it, a display value (a user's or group's name) is stored as its sys_id. Closing (7) needs
itil_admin or admin ("Resolve and close an incident"): for other users the fake answers 403
(`close_refusal="acl"`) or, as some instances do, 200 with the state left as it was
(`close_refusal="silent"`). The close_code choices are those of `release`: "old" (Solved
(Permanently) …) or "new" (Utah and later: Solution provided …).

Every value in and out is a string; reference fields come back as {"link", "value"} unless
sysparm_exclude_reference_link=true. Errors are {"error": {"message", "detail"}, "status":
"failure"}. Auth is Basic user:password. As in the base system, Resolved (6) and Closed (7) need a
resolution code and notes (a data policy, 403), and a Closed incident cannot be changed (ACL, 403).
Stricter than the real thing, on purpose: unknown columns and encoded queries other than
`correlation_id=…^stateNOT IN…` are refused with 400 (ServiceNow would silently ignore them,
and an ignored query condition matches every incident).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.fakes import BadRequest, FakeHelpDesk, RecordedRequest, Refusal, Reply, expect_query

COLUMNS = {
    "short_description",
    "description",
    "urgency",
    "impact",
    "assignment_group",
    "correlation_id",
    "correlation_display",
    "caller_id",
    "work_notes",
    "comments",
    "state",
    "close_code",
    "close_notes",
    "category",
    "subcategory",
    "contact_type",
}
JOURNALS = {"work_notes", "comments"}
REFERENCES = {"assignment_group": "sys_user_group", "caller_id": "sys_user"}
OLD_CLOSE_CODES = (
    "Solved (Work Around)",
    "Solved (Permanently)",
    "Solved Remotely (Work Around)",
    "Solved Remotely (Permanently)",
    "Not Solved (Not Reproducible)",
    "Not Solved (Too Costly)",
    "Closed/Resolved by Caller",
)
CLOSE_CODES = {
    "Duplicate",
    "Known error",
    "No resolution provided",
    "Resolved by caller",
    "Resolved by change",
    "Resolved by problem",
    "Resolved by request",
    "Solution provided",
    "Workaround provided",
    "User error",
}
STATES = {"1", "2", "3", "6", "7", "8"}
# Priority is derived: the base system's urgency x impact lookup.
PRIORITY = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("2", "1"): "2",
    ("1", "3"): "3",
    ("2", "2"): "3",
    ("3", "1"): "3",
    ("2", "3"): "4",
    ("3", "2"): "4",
    ("3", "3"): "5",
}
_INCIDENT = "/api/now/table/incident"
_ONE = _INCIDENT + r"/(?P<sys_id>[^/]+)"
_QUERY_PARAMS = {
    "sysparm_fields",
    "sysparm_exclude_reference_link",
    "sysparm_display_value",
    "sysparm_input_display_value",
}
USERS = {"monitoring": "Monitoring System", "runwatch.integration": "runwatch integration"}
GROUPS = ("Database Administration", "Service Desk", "Network")
_CLOSERS = {"itil_admin", "admin"}


class FakeServiceNow(FakeHelpDesk):
    """A ServiceNow instance with an incident table."""

    vendor = "servicenow"

    def __init__(
        self,
        user: str = "runwatch.integration",
        password: str = "snow-secret-8812",
        *,
        roles: tuple[str, ...] = ("itil",),
        close_refusal: str = "acl",
        release: str = "new",
    ) -> None:
        super().__init__()
        assert close_refusal in ("acl", "silent") and release in ("old", "new")
        self.user = user
        self.password = password
        self.roles = set(roles)
        self.close_refusal = close_refusal
        self.close_codes = set(OLD_CLOSE_CODES) if release == "old" else set(CLOSE_CODES)
        self.users = {name: uuid.uuid5(uuid.NAMESPACE_DNS, name).hex for name in USERS}
        self.groups = {name: uuid.uuid5(uuid.NAMESPACE_URL, name).hex for name in GROUPS}
        self.incidents: dict[str, dict[str, str]] = {}
        self.journal: dict[str, list[tuple[str, str]]] = {}
        self.route("POST", _INCIDENT, self._create)
        self.route("GET", _INCIDENT, self._list)
        self.route("GET", _ONE, self._get)
        self.route("PATCH", _ONE, self._patch)
        self.route("GET", "/api/now/table/sys_user", self._users)
        self.route("GET", "/api/now/table/sys_user_group", self._groups)
        self.route("GET", "/api/now/table/sys_user_has_role", self._user_roles)
        self.route("GET", "/api/now/table/sys_choice", self._choices)

    # -- for tests ----------------------------------------------------------------------------

    def incident(self, sys_id: str) -> dict[str, str]:
        return self.incidents[sys_id]

    def group_name(self, sys_id: str) -> str | None:
        """The group a stored assignment_group points at; None for a broken reference."""
        return next((n for n, i in self.groups.items() if i == sys_id), None)

    def user_name(self, sys_id: str) -> str | None:
        """The user a stored caller_id points at; None for a broken reference."""
        return next((n for n, i in self.users.items() if i == sys_id), None)

    def set_state(self, sys_id: str, state: str) -> None:
        """What an agent in the ServiceNow UI would do."""
        assert state in STATES
        self.incidents[sys_id]["state"] = state

    # -- protocol -----------------------------------------------------------------------------

    def authorized(self, request: RecordedRequest) -> bool:
        return self.has_basic_auth(request, self.user, self.password)

    def error_body(
        self, request: RecordedRequest, status: int, message: str, details: dict[str, Any]
    ) -> Any:
        if status == 401:
            return {
                "error": {
                    "message": "User Not Authenticated",
                    "detail": "Required to provide Auth information",
                },
                "status": "failure",
            }
        return {
            "error": {"message": details.get("title", message), "detail": message},
            "status": "failure",
        }

    def _record(self, sys_id: str) -> dict[str, str]:
        if sys_id not in self.incidents:
            raise Refusal(
                404,
                "Record doesn't exist or ACL restricts the record retrieval",
                title="No Record found",
            )
        return self.incidents[sys_id]

    def _render(self, request: RecordedRequest, record: dict[str, str]) -> dict[str, Any]:
        if request.query.get("sysparm_display_value", "false") != "false":
            raise BadRequest("the fake serves only sysparm_display_value=false")
        fields = request.query.get("sysparm_fields")
        chosen = fields.split(",") if fields else sorted(record)
        plain = request.query.get("sysparm_exclude_reference_link") == "true"
        out: dict[str, Any] = {}
        for name in chosen:
            value: Any = "" if name in JOURNALS else record.get(name, "")
            if name in REFERENCES and value and not plain:
                value = {
                    "link": f"{self.url}/api/now/table/{REFERENCES[name]}/{value}",
                    "value": value,
                }
            out[name] = value
        return out

    def _values(self, request: RecordedRequest, current: dict[str, str] | None) -> dict[str, str]:
        body = request.body
        if not isinstance(body, dict):
            raise BadRequest(
                "the body must be a JSON object", title="Exception while reading request"
            )
        for name, value in body.items():
            if name not in COLUMNS:
                raise BadRequest(f"'{name}' is not a column of incident", title="Invalid field")
            if not isinstance(value, str):
                raise BadRequest(
                    f"'{name}' must be a string, got {type(value).__name__}", title="Invalid value"
                )
        for name in ("urgency", "impact"):
            if name in body and body[name] not in ("1", "2", "3"):
                raise BadRequest(
                    f"'{name}' must be 1, 2 or 3, got {body[name]!r}", title="Invalid value"
                )
        if "state" in body and body["state"] not in STATES:
            raise BadRequest(f"'state' {body['state']!r} is not a choice", title="Invalid value")
        if len(body.get("short_description", "")) > 160:
            raise BadRequest("short_description holds 160 characters", title="Invalid value")
        if len(body.get("correlation_id", "")) > 100:
            raise BadRequest("correlation_id holds 100 characters", title="Invalid value")
        body = dict(body)
        if request.query.get("sysparm_input_display_value") == "true":
            # Display values in: a reference given by its display name is stored as its sys_id.
            names = {
                "caller_id": {USERS[n]: i for n, i in self.users.items()},
                "assignment_group": self.groups,
            }
            for name, table in names.items():
                if name in body and body[name] in table:
                    body[name] = table[body[name]]
        merged = {**(current or {}), **body}
        if body.get("state") in ("6", "7") and (
            merged.get("close_code") not in self.close_codes or not merged.get("close_notes")
        ):
            raise Refusal(
                403,
                "Data Policy Exception: Resolution code, Resolution notes are mandatory",
                title="Operation Failed",
            )
        return body

    def _apply(self, sys_id: str, record: dict[str, str], values: dict[str, str]) -> None:
        for name, value in values.items():
            if name in JOURNALS:
                self.journal[sys_id].append((name, value))
            else:
                record[name] = value
        record["priority"] = PRIORITY[(record["urgency"], record["impact"])]
        record["active"] = "false" if record["state"] in ("6", "7", "8") else "true"

    # -- Table API ----------------------------------------------------------------------------

    def _create(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed=_QUERY_PARAMS)
        values = self._values(request, None)
        if not values.get("short_description"):
            raise BadRequest("short_description is mandatory", title="Invalid value")
        sys_id = uuid.uuid4().hex
        record = {name: "" for name in COLUMNS - JOURNALS}
        record.update(
            sys_id=sys_id,
            number=f"INC{10001 + len(self.incidents):07d}",
            state="1",
            urgency="3",
            impact="3",
            sys_created_on="2026-01-01 00:00:00",
        )
        self.incidents[sys_id] = record
        self.journal[sys_id] = []
        self._apply(sys_id, record, values)
        return Reply(
            201,
            {"result": self._render(request, record)},
            {"Location": f"{self.url}{_INCIDENT}/{sys_id}"},
        )

    def _list(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed=_QUERY_PARAMS | {"sysparm_query", "sysparm_limit"})
        conditions = []
        query = request.query.get("sysparm_query")
        for part in query.split("^") if query is not None else []:
            if m := re.fullmatch(r"correlation_id=([^^=]+)", part):
                conditions.append(("correlation_id", {m[1]}, True))
            elif m := re.fullmatch(r"stateNOT IN(\d+(?:,\d+)*)", part):
                conditions.append(("state", set(m[1].split(",")), False))
            else:
                raise BadRequest(
                    f"the fake does not understand the query part {part!r}", title="Invalid query"
                )
        limit = request.query.get("sysparm_limit", "10000")
        if not limit.isdigit():
            raise BadRequest(f"sysparm_limit must be a number, got {limit!r}")
        found = [
            r
            for r in self.incidents.values()
            if all((r[name] in values) == wanted for name, values, wanted in conditions)
        ]
        return Reply(200, {"result": [self._render(request, r) for r in found[: int(limit)]]})

    def _get(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed=_QUERY_PARAMS)
        return Reply(200, {"result": self._render(request, self._record(match["sys_id"]))})

    def _patch(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed=_QUERY_PARAMS)
        record = self._record(match["sys_id"])
        if record["state"] == "7":
            raise Refusal(
                403,
                "ACL Exception Update Failed due to security constraints",
                title="Operation Failed",
            )
        values = self._values(request, record)
        if values.get("state") == "7" and not self.roles & _CLOSERS:
            if self.close_refusal == "acl":
                raise Refusal(
                    403,
                    "ACL Exception Update Failed due to security constraints",
                    title="Operation Failed",
                )
            values.pop("state")  # a field the user may not write is silently left as it was
        self._apply(match["sys_id"], record, values)
        return Reply(200, {"result": self._render(request, record)})

    # -- the tables the self-check and the caller lookup read ------------------------------------

    def _table(self, request: RecordedRequest, rows: list[dict[str, str]], *keys: str) -> Reply:
        expect_query(request, allowed=_QUERY_PARAMS | {"sysparm_query", "sysparm_limit"})
        conditions = {}
        for part in request.query.get("sysparm_query", "").split("^"):
            name, equals, value = part.partition("=")
            if not equals or name not in keys:
                raise BadRequest(f"the fake does not understand {part!r}", title="Invalid query")
            conditions[name] = value
        found = [r for r in rows if all(r.get(k) == v for k, v in conditions.items())]
        fields = request.query.get("sysparm_fields")
        if fields:
            found = [{f: r.get(f, "") for f in fields.split(",")} for r in found]
        limit = int(request.query.get("sysparm_limit", "10000"))
        return Reply(200, {"result": found[:limit]})

    def _users(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        rows = [
            {"sys_id": i, "user_name": n, "name": USERS[n], "active": "true"}
            for n, i in self.users.items()
        ]
        return self._table(request, rows, "user_name", "sys_id")

    def _groups(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        rows = [{"sys_id": i, "name": n, "active": "true"} for n, i in self.groups.items()]
        return self._table(request, rows, "name", "sys_id")

    def _user_roles(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        me = self.users.get(self.user, "")
        rows = [{"user": me, "role.name": role, "state": "active"} for role in sorted(self.roles)]
        return self._table(request, rows, "user")

    def _choices(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        rows = [
            {
                "name": "incident",
                "element": "close_code",
                "inactive": "false",
                "value": code,
                "label": code,
                "language": "en",
            }
            for code in sorted(self.close_codes)
        ]
        return self._table(request, rows, "name", "element", "inactive")
