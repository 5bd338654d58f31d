"""Request Tracker 5 through its REST2 API: one ticket per incident, found by a custom field.

RT answers most updates with 200 and a list of messages, even when a change was refused (its
REST2 code says so: "Figure out how to return success/failure?"). So a status or priority change
that does not read as done is checked against the ticket itself before it counts.
"""

from __future__ import annotations

import html
import logging
import re
from typing import TYPE_CHECKING, Any, ClassVar

from checks.settings import field_error
from collector.sinks import contract

if TYPE_CHECKING:  # httpx loads with the first adapter built, not with the config
    pass


log = logging.getLogger(__name__)

API = "/REST/2.0"
DEFAULT_PRIORITIES = {"CRITICAL": "80", "STALE": "80", "WARNING": "50", "UNKNOWN": "50"}
# RT's own statuses that end a ticket without resolving it (default lifecycle).
CLOSED_STATUSES = frozenset({"rejected", "deleted"})
SUBJECT_MAX_CHARS = 200  # RT's Tickets.Subject column; RT cuts longer subjects silently
# "Ticket 5: Status changed from 'open' to 'resolved'": the one message that says a change took.
_CHANGED = re.compile(r"\b\w+ changed from '.*' to '.*'$", re.S)
# What RT says, with 200, to a change the user has no right to make.
_DENIED = re.compile(r"\bPermission Denied\b", re.I)
# Characters that would end the quoted `'CF.{NAME}'` in TicketSQL.
_BAD_FIELD_CHARS = frozenset("'\"\\{}")
_MAX_PAGES = 20  # of 100 transactions or attachments: a ticket's history read back
# RT 5 cannot edit a ticket's first message (REST2 transactions and attachments are read-only),
# so the description says it is the first sight, and later comments carry the current state.
FIRST_SEEN_NOTE = (
    "As first seen. runwatch keeps the subject and priority current and adds the current "
    "state to each of its later comments.\n\n"
)
CURRENT_STATE = "\n\nThe call as it stands now:\n\n"


class RTSinkConfig(contract.HttpSinkConfig, frozen=True, kw_only=True, tag_field="type", tag="rt"):
    """Options for a Request Tracker 5 help desk (REST2, token authentication)."""

    # A run group routes to a queue, and optionally to an owner (an RT user name).
    default_priorities: ClassVar[dict[str, str]] = DEFAULT_PRIORITIES
    route_keys: ClassVar[frozenset[str]] = frozenset({"queue", "owner"})
    subject_max_chars: ClassVar[int] = SUBJECT_MAX_CHARS

    token: contract.Secret
    queue: str  # where tickets go when the group names no queue
    fingerprint_field: str = "DedupKey"  # ticket custom field applied to every routed queue
    resolved_status: str = "resolved"
    closed_status: str = "resolved"  # RT's "closed" is usually resolved; or e.g. "rejected"
    reopen_status: str = "open"
    # `priorities` (inherited): severity -> RT priority, a number (RT 5's REST2 does not take
    # the names Low/Medium/High); the severities named there replace the defaults.

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.queue.strip():
            raise field_error("queue", "must name an RT queue")
        if not self.fingerprint_field or _BAD_FIELD_CHARS & set(self.fingerprint_field):
            raise field_error(
                "fingerprint_field",
                f"must be a custom field name without quotes, backslashes or "
                f"braces, got {self.fingerprint_field!r}",
            )
        for key in ("resolved_status", "closed_status", "reopen_status"):
            if not getattr(self, key).strip():
                raise field_error(key, "must name an RT status")
        for severity, value in self.priorities.items():
            if not value.isdigit():
                raise field_error(
                    "priorities", f"{severity}: RT priorities are numbers, got {value!r}"
                )

    @property
    def type(self) -> str:
        return "rt"


def ticketsql_quote(value: str) -> str:
    """Quote a value for TicketSQL: backslash-escape backslashes and single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class RTSink(contract.HttpSink[RTSinkConfig]):
    """Tickets in Request Tracker 5, one per incident fingerprint."""

    name = "rt"
    keeps_description: ClassVar[bool] = True

    @property
    def _base_url(self) -> str:
        return self._http.base_url  # without user info: it goes into errors and links

    def _auth_headers(self) -> dict[str, str]:
        # Read on every request, so a rotated token file takes effect without a restart.
        return {"Authorization": f"token {self._config.token.read()}"}

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        """Send one request to the REST2 API and return its decoded JSON body."""
        response = self._http.request(method, API + path, **kw)
        try:
            return response.json()
        except ValueError:
            raise contract.SinkError(
                f"rt: {method} {self._base_url}{API}{path} answered "
                f"{response.status_code} with a body that is not JSON",
                retryable=response.status_code >= 500,
                status=response.status_code,
            ) from None

    def _ticket(self, remote_id: str) -> dict[str, Any]:
        body = self._request("GET", f"/ticket/{_ticket_id(remote_id)}")
        if not isinstance(body, dict):
            raise contract.SinkError(
                f"rt: ticket {remote_id}: unexpected answer {body!r:.200}", retryable=False
            )
        return body

    def _url(self, remote_id: str) -> str:
        return f"{self._base_url}/Ticket/Display.html?id={remote_id}"

    def find(self, fingerprint: str) -> contract.TicketRef | None:
        """The newest active, unresolved ticket in any queue that carries this fingerprint."""
        field = self._config.fingerprint_field
        # Not limited to one queue: routing spreads an installation's tickets over queues.
        query = (
            f"'CF.{{{field}}}' = {ticketsql_quote(fingerprint)}"
            f" AND Status = '__Active__'"
            f" AND Status != {ticketsql_quote(self._config.resolved_status)}"
        )
        body = self._request(
            "GET",
            "/tickets",
            params={"query": query, "fields": "Status", "orderby": "id", "order": "DESC"},
        )
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise contract.SinkError(
                f"rt: ticket search answered without items: {body!r:.200}", retryable=False
            )
        ids = [
            int(item["id"])
            for item in items
            if isinstance(item, dict)
            and str(item.get("id", "")).isdigit()
            and item.get("Status") != self._config.resolved_status
        ]
        if not ids:
            return None
        newest = str(max(ids))
        return contract.TicketRef(remote_id=newest, url=self._url(newest))

    def open(self, ticket: contract.NewTicket) -> contract.TicketRef:
        """Create a ticket in the routed queue (and owner), carrying the fingerprint."""
        queue = ticket.route.get("queue") or self._config.queue
        owner = ticket.route.get("owner")
        field = self._config.fingerprint_field
        data: dict[str, Any] = {
            "Queue": queue,
            "Subject": _subject(ticket.summary),
            "Content": FIRST_SEEN_NOTE + ticket.description,
            "ContentType": "text/plain",
            "CustomFields": {field: ticket.fingerprint},
        }
        if ticket.priority:
            data["Priority"] = ticket.priority
        if owner:
            data["Owner"] = owner
        body = self._request("POST", "/ticket", json=data)
        remote_id = str(body.get("id", "")) if isinstance(body, dict) else ""
        if not remote_id.isdigit():
            raise contract.SinkError(
                f"rt: creating a ticket in queue {queue!r} answered without an id: {body!r:.200}",
                retryable=False,
            )
        # RT drops unknown custom fields and owners without a word, and a ticket without its
        # fingerprint would be opened again on every evaluation: check what it stored.
        created = self._ticket(remote_id)
        values = [
            value
            for cf in created.get("CustomFields") or []
            if isinstance(cf, dict) and cf.get("name") == field
            for value in cf.get("values") or []
        ]
        if ticket.fingerprint not in values:
            raise contract.SinkError(
                f"rt: ticket {remote_id} in queue {queue!r} was created without "
                f"its fingerprint: apply the custom field {field!r} to that queue",
                retryable=False,
            )
        got_owner = (created.get("Owner") or {}).get("id")
        if owner and got_owner != owner:
            log.warning(
                "rt: ticket %s in queue %r has owner %r, not %r: check that the user "
                "exists and has OwnTicket on the queue",
                remote_id,
                queue,
                got_owner,
                owner,
            )
        return contract.TicketRef(remote_id=remote_id, url=self._url(remote_id))

    def comment(self, ref: contract.TicketRef, text: str) -> None:
        """Add a comment (not a reply: requestors get no mail)."""
        self._request(
            "POST",
            f"/ticket/{_ticket_id(ref.remote_id)}/comment",
            json={"Content": text, "ContentType": "text/plain"},
        )

    def update(
        self,
        ref: contract.TicketRef,
        *,
        priority: str,
        summary: str,
        text: str,
        description: str | None = None,
    ) -> None:
        """Change priority and subject, then comment why, with the current state."""
        changes = {"Subject": _subject(summary)}
        if priority:
            changes["Priority"] = priority
        self._set(ref, changes)
        self.comment(ref, text + CURRENT_STATE + description if description else text)

    def resolve(
        self, ref: contract.TicketRef, text: str, *, close: bool, description: str | None = None
    ) -> None:
        """Set the resolved (or closed) status, then comment, with the state at recovery."""
        status = self._config.closed_status if close else self._config.resolved_status
        self._set(ref, {"Status": status})
        self.comment(ref, text + CURRENT_STATE + description if description else text)

    def reopen(self, ref: contract.TicketRef, text: str, *, description: str | None = None) -> None:
        """Set the reopen status, then comment, with the current state."""
        self._set(ref, {"Status": self._config.reopen_status})
        self.comment(ref, text + CURRENT_STATE + description if description else text)

    def status(self, ref: contract.TicketRef) -> contract.RemoteStatus:
        """Map RT's status: new, resolved, rejected/deleted (closed), anything else open."""
        return self._remote_status(str(self._ticket(ref.remote_id).get("Status", "")))

    def read_ticket(self, ref: contract.TicketRef) -> contract.TicketReading:
        """The status, and the transactions of people other than the ticket's creator
        (runwatch's own user): comments and replies, owner changes, status changes."""
        remote_id = _ticket_id(ref.remote_id)
        ticket = self._ticket(remote_id)
        status = self._remote_status(str(ticket.get("Status", "")))
        own = _user(ticket.get("Creator"))
        owner = _user(ticket.get("Owner"))
        notes = self._notes(remote_id)
        activity: list[contract.DeskActivity] = []
        for item in self._pages(
            f"/ticket/{remote_id}/history", "Type,Creator,Created,Field,NewValue"
        ):
            author = _user(item.get("Creator"))
            kind = str(item.get("Type", ""))
            if not author or author in (own, "RT_System"):
                continue
            at = contract.desk_time("rt", str(item.get("Created", "")))
            new = str(item.get("NewValue") or "")
            if kind in ("Comment", "Correspond"):
                text = notes.get(str(item.get("id", "")), "")
                activity.append(contract.DeskActivity(at, "comment", author, text))
            elif kind in ("Take", "Steal", "Give") or (
                kind == "Set" and item.get("Field") == "Owner"
            ):
                activity.append(contract.DeskActivity(at, "assign", author, owner or new))
            elif kind == "Status" and new:
                state = self._remote_status(new).state
                activity.append(
                    contract.DeskActivity(
                        at, "close" if state in ("resolved", "closed") else "status", author, new
                    )
                )
        return contract.TicketReading(status, tuple(activity))

    def _notes(self, remote_id: str) -> dict[str, str]:
        """Transaction id -> the plain text of what it said, for the ticket's attachments."""
        plain: dict[str, str] = {}
        rich: dict[str, str] = {}  # RT's web UI writes HTML only, with rich text on
        for item in self._pages(
            f"/ticket/{remote_id}/attachments", "TransactionId,ContentType,Content"
        ):
            txn = _user(item.get("TransactionId"))
            content = item.get("Content")  # as text, when selected by `fields`
            if not txn or not isinstance(content, str):
                continue
            if item.get("ContentType") == "text/plain":
                plain.setdefault(txn, content)
            elif item.get("ContentType") == "text/html":
                rich.setdefault(txn, _html_text(content))
        return {**rich, **plain}

    def _pages(self, path: str, fields: str) -> list[dict[str, Any]]:
        """Every item of a REST2 collection, page by page (at most _MAX_PAGES of 100)."""
        items: list[dict[str, Any]] = []
        for page in range(1, _MAX_PAGES + 1):
            body = self._request(
                "GET", path, params={"fields": fields, "per_page": 100, "page": page}
            )
            found = body.get("items") if isinstance(body, dict) else None
            if not isinstance(found, list):
                raise contract.SinkError(
                    f"rt: {path} answered without items: {body!r:.200}", retryable=False
                )
            items.extend(item for item in found if isinstance(item, dict))
            if len(found) < 100:
                break
        return items

    def _remote_status(self, raw: str) -> contract.RemoteStatus:
        if raw == "new":
            return contract.RemoteStatus(state="new", raw=raw)
        if raw == self._config.resolved_status:
            return contract.RemoteStatus(state="resolved", raw=raw)
        if raw in CLOSED_STATUSES or raw == self._config.closed_status:
            return contract.RemoteStatus(state="closed", raw=raw)
        return contract.RemoteStatus(state="open", raw=raw)

    def _set(self, ref: contract.TicketRef, changes: dict[str, str]) -> None:
        """PUT field changes; unless RT's messages confirm every one, check the ticket itself."""
        remote_id = _ticket_id(ref.remote_id)
        answer = self._request("PUT", f"/ticket/{remote_id}", json=changes)
        messages = [str(msg) for msg in (answer if isinstance(answer, list) else [answer])]
        # [] means every field already had its value; "X changed from 'a' to 'b'" means done.
        if all(_CHANGED.search(msg) for msg in messages):
            return
        current = self._ticket(remote_id)
        wrong = [
            key
            for key, value in changes.items()
            if _normal(str(current.get(key, ""))) != _normal(value)
        ]
        if wrong:
            want = ", ".join(f"{key} {changes[key]!r}" for key in wrong)
            said = "; ".join(messages)
            # RT's answer names no right; every field runwatch changes needs the same one.
            fix = (
                ": grant the token's user ModifyTicket on the ticket's queue"
                if _DENIED.search(said)
                else ""
            )
            raise contract.SinkError(
                f"rt: ticket {remote_id}: RT did not set {want}; it said: {said}{fix}",
                retryable=False,
            )

    def check(self) -> list[contract.Problem]:
        """Probe with read-only calls: the token, and the queue tickets go to."""
        from urllib.parse import quote

        queue = self._config.queue
        problems = contract.run_checks(
            [(f"queue {queue!r}", lambda: self._request("GET", f"/queue/{quote(queue, safe='')}"))],
            credential="`token`",
        )
        rights = (
            "grant the token's user SeeQueue, ShowTicket, CreateTicket, ModifyTicket and "
            "CommentOnTicket on the queue, and SeeCustomField and ModifyCustomField on the "
            f"custom field {self._config.fingerprint_field!r}"
        )
        return [
            contract.Problem(
                f"queue {queue!r} does not exist or the token's user may not see it",
                f"set `queue` to an RT queue, and {rights}",
            )
            if "404" in p.what
            else contract.Problem(p.what, rights)
            if "is not allowed" in p.what
            else p
            for p in problems
        ]


def _subject(summary: str) -> str:
    """One line, at most SUBJECT_MAX_CHARS (RT cuts longer ones silently), with an ellipsis."""
    line = " ".join(summary.split())
    return line if len(line) <= SUBJECT_MAX_CHARS else line[: SUBJECT_MAX_CHARS - 1] + "…"


def _user(value: object) -> str:
    """The id of a REST2 object reference (`{"id": "root", "type": "user", ...}`) or value."""
    if isinstance(value, dict):
        value = value.get("id")
    return "" if value is None else str(value)


def _html_text(markup: str) -> str:
    """The words of an HTML note, one paragraph or line break per line."""
    broken = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", markup)
    text = html.unescape(re.sub(r"<[^>]*>", "", broken))
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def _normal(text: str) -> str:
    # RT may trim a subject; only a real difference should count as a refusal.
    return " ".join(text.split())


def _ticket_id(remote_id: str) -> str:
    """A ticket number, checked so that it cannot change the request path."""
    if not remote_id.isdigit():
        raise contract.SinkError(f"rt: {remote_id!r} is not an RT ticket number", retryable=False)
    return remote_id
