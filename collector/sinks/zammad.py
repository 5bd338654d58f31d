"""Zammad tickets through its REST API as a ticket sink.

The fingerprint is the tag `rw-<fingerprint>`; `find` uses the ticket search with
`tags:"rw-…" AND state.name:(…)`, which needs Zammad's Elasticsearch (the plain database search
does not understand field queries) and sees a write only after the index refresh (about a
second), so for `trust_window` after a confirmed open or reopen the stored reference is trusted
instead of searching, and a ticket this sink closed is not taken for open from a stale search.
Texts become internal notes. Zammad has no resolved state: resolving closes.

The search answers in the shape of the Zammad release (docs archive-6.4 §Search; docs 6.5 and
later, api/intro.rst "Search via API"): up to 6.4 `{tickets: [ids], tickets_count, assets}`,
from 6.5 a JSON array of tickets, with `full=true` `{record_ids, assets, total_count}`, with
`with_total_count=true` `{records, total_count}`. `find` reads all of them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from checks.settings import Duration, field_error
from collector.sinks import contract

log = logging.getLogger(__name__)

DEFAULT_PRIORITIES = {
    "CRITICAL": "3 high",
    "STALE": "3 high",
    "WARNING": "2 normal",
    "UNKNOWN": "2 normal",
}
# The states a ticket can be found in: everything but closed, merged and removed.
OPEN_STATES = ("new", "open", "pending reminder", "pending close")
_FINGERPRINT = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_TITLE_CHARS = 250


class ZammadSinkConfig(
    contract.HttpSinkConfig, frozen=True, kw_only=True, tag_field="type", tag="zammad"
):
    """Zammad: the access token, and the group and customer new tickets get."""

    default_priorities: ClassVar[dict[str, str]] = DEFAULT_PRIORITIES
    route_keys: ClassVar[frozenset[str]] = frozenset({"group"})

    token: contract.Secret  # an agent's access token (ticket.agent)
    group: str  # group name new tickets go to unless a run group routes
    customer: str  # e-mail (or login) of an existing customer user
    # How long a confirmed open, resolve or reopen is trusted over search (which lags writes).
    trust_window: Duration = Duration(60)
    # `priorities` (inherited): severity -> value; severities left out keep DEFAULT_PRIORITIES.

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.group.strip():
            raise field_error("group", "give the name of a Zammad group")


class ZammadSink(contract.HttpSink[ZammadSinkConfig]):
    """Tickets in Zammad, found again by the tag `rw-<fingerprint>`."""

    name = "zammad"

    def __init__(
        self,
        config: ZammadSinkConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        # Written by this sink and not yet trusted to search.
        self._trusted = contract.TrustedWrites(float(config.trust_window), clock)
        # Tickets this sink made but could not tag: search cannot find them, so `find`
        # asks for them by id (for the life of the process).
        self._untagged: dict[str, contract.TicketRef] = {}

    def _auth_headers(self) -> Mapping[str, str]:
        # Read on every request so that a rotated token file takes effect without a restart.
        return {"Authorization": f"Token token={self._config.token.read()}"}

    def find(self, fingerprint: str) -> contract.TicketRef | None:
        states = " OR ".join(f'"{s}"' if " " in s else s for s in OPEN_STATES)
        query = f'tags:"{_tag(fingerprint)}" AND state.name:({states})'
        trusted = self._trusted.find(fingerprint)
        if trusted is not None:
            return trusted
        untagged = self._untagged.get(fingerprint)
        if untagged is not None:
            if self.status(untagged).raw in OPEN_STATES:
                return untagged
            del self._untagged[fingerprint]
        data = self._json("GET", "/api/v1/tickets/search", params={"query": query, "limit": "1"})
        ids = [i for i in search_ids(data) if not self._trusted.resolved(str(i))]
        return self._ref(ids[0]) if ids else None

    def open(self, ticket: contract.NewTicket) -> contract.TicketRef:
        contract.check_route(self.name, ticket.route, self._config.route_keys)
        tag = _tag(ticket.fingerprint)
        title = _one_line(ticket.summary, _TITLE_CHARS)
        body = {
            "title": title,
            "group": ticket.route.get("group", self._config.group),
            "customer": self._config.customer,
            "priority": ticket.priority
            or self._config.priority_values.get(ticket.severity, DEFAULT_PRIORITIES["WARNING"]),
            "state": "new",
            "article": _note(ticket.description, subject=title),
            # Zammad's create also takes tags; the documented tag call below makes sure.
            "tags": tag,
        }
        data = self._json("POST", "/api/v1/tickets", json=body)
        ref = self._ref(data.get("id") if isinstance(data, dict) else None)
        try:
            self._http.request(
                "POST",
                "/api/v1/tags/add",
                json={"item": tag, "object": "Ticket", "o_id": _ticket_id(ref)},
            )
        except contract.SinkError as exc:
            # The ticket exists; failing here would make the outbox open a second one. Without
            # the tag `find` cannot see it, so say loudly what to change (the self-check says
            # it before the first ticket: `runwatch outbox check-sinks`).
            log.error(
                "zammad: ticket %s was created but tagging it %s failed, so runwatch cannot "
                "find it again and may open another: Zammad creates a new tag only when "
                "Manage > Tags 'new tags' (tag_new) is on or the token's user has admin.tag; "
                "the user also needs change access to the ticket's group: %s",
                ref.remote_id,
                tag,
                exc,
            )
            self._untagged[ticket.fingerprint] = ref
        return self._trusted.opened(ticket.fingerprint, ref)

    def comment(self, ref: contract.TicketRef, text: str) -> None:
        self._http.request(
            "POST", "/api/v1/ticket_articles", json={"ticket_id": _ticket_id(ref), **_note(text)}
        )

    def update(self, ref: contract.TicketRef, *, priority: str, summary: str, text: str) -> None:
        body: dict[str, Any] = {"title": _one_line(summary, _TITLE_CHARS), "article": _note(text)}
        if priority:
            body["priority"] = priority
        self._put(ref, body)

    def resolve(self, ref: contract.TicketRef, text: str, *, close: bool) -> None:
        self._put(ref, {"state": "closed", "article": _note(text)})
        self._trusted.resolve(ref)

    def reopen(self, ref: contract.TicketRef, text: str) -> None:
        self._put(ref, {"state": "open", "article": _note(text)})
        self._trusted.reopen(ref)

    def status(self, ref: contract.TicketRef) -> contract.RemoteStatus:
        data = self._json("GET", f"/api/v1/tickets/{_ticket_id(ref)}", params={"expand": "true"})
        state = data.get("state") if isinstance(data, dict) else None
        if not isinstance(state, str):
            raise contract.SinkError(
                "zammad: unexpected ticket answer: no state name", retryable=False
            )
        if state == "new":
            return contract.RemoteStatus("new", state)
        if state in ("closed", "merged", "removed"):
            return contract.RemoteStatus("closed", state)
        if state == "pending close":
            return contract.RemoteStatus("resolved", state)
        return contract.RemoteStatus("open", state)

    def check(self) -> list[contract.Problem]:
        """Probe with read-only calls: the token, its permissions, the group, the priorities."""
        try:
            me = self._json("GET", "/api/v1/users/me", params={"expand": "true"})
        except contract.SinkError as exc:
            return [contract.problem_for(exc, doing="GET /api/v1/users/me", credential="`token`")]
        problems: list[contract.Problem] = []
        permissions = me.get("permissions") if isinstance(me, dict) else None
        if isinstance(permissions, list):
            if "ticket.agent" not in permissions:
                problems.append(
                    contract.Problem(
                        "the token's user lacks ticket.agent: it cannot create tickets",
                        "give the user the Agent role and create the token with ticket.agent",
                    )
                )
            if "admin.tag" not in permissions:
                problems.append(
                    contract.Problem(
                        "the token's user lacks admin.tag: the tag rw-<fingerprint> is created "
                        "only if Manage > Tags 'new tags' (tag_new) is on, otherwise runwatch "
                        "cannot find its tickets again",
                        "give the user admin.tag (a role with Admin > Tags), or keep tag_new on",
                        "warning",
                    )
                )
        try:
            groups = self._json("GET", "/api/v1/groups")
            names = {g.get("name") for g in groups if isinstance(g, dict)}
            if self._config.group not in names:
                problems.append(
                    contract.Problem(
                        f"group {self._config.group!r} is unknown or not visible to the user",
                        f"set `group` to one of {sorted(map(str, names))}, or give the user "
                        "create and change access to that group",
                    )
                )
            priorities = self._json("GET", "/api/v1/ticket_priorities")
            known = {p.get("name") for p in priorities if isinstance(p, dict)}
            for severity, value in sorted(self._config.priority_values.items()):
                if value not in known:
                    problems.append(
                        contract.Problem(
                            f"priority {value!r} (for {severity}) is not a Zammad priority",
                            f"set priorities.{severity} to one of {sorted(map(str, known))}",
                        )
                    )
        except contract.SinkError as exc:
            problems.append(contract.problem_for(exc, doing="reading groups", credential="`token`"))
        return problems

    def _put(self, ref: contract.TicketRef, body: dict[str, Any]) -> None:
        # One request changes the ticket and adds the note, so a retry cannot leave half of it.
        self._http.request("PUT", f"/api/v1/tickets/{_ticket_id(ref)}", json=body)

    def _ref(self, ticket_id: Any) -> contract.TicketRef:
        if (
            isinstance(ticket_id, bool)
            or not isinstance(ticket_id, int | str)
            or not str(ticket_id).isdigit()
        ):
            raise contract.SinkError("zammad: unexpected answer: no ticket id", retryable=False)
        return contract.TicketRef(str(ticket_id), f"{self._http.base_url}/#ticket/zoom/{ticket_id}")


def search_ids(data: Any) -> list[Any]:
    """The ticket ids of a search answer, in any shape a Zammad release answers with."""
    if isinstance(data, list):  # 6.5 and later, and expand=true
        records: Any = data
    elif isinstance(data, dict) and isinstance(data.get("records"), list):
        records = data["records"]  # with_total_count=true
    elif isinstance(data, dict) and isinstance(data.get("record_ids"), list):
        return list(data["record_ids"])  # full=true
    elif isinstance(data, dict) and isinstance(data.get("tickets"), list):
        return list(data["tickets"])  # 6.4 and older
    else:
        raise contract.SinkError(
            "zammad: unexpected search answer: neither a list of tickets nor "
            "tickets/record_ids/records",
            retryable=False,
        )
    ids = [record.get("id") if isinstance(record, dict) else None for record in records]
    if None in ids:
        raise contract.SinkError(
            "zammad: unexpected search answer: a ticket without id", retryable=False
        )
    return ids


def _note(text: str, subject: str | None = None) -> dict[str, Any]:
    """An internal plain-text note, the article type agents see but customers do not."""
    article: dict[str, Any] = {
        "body": text,
        "type": "note",
        "internal": True,
        "content_type": "text/plain",
    }
    if subject is not None:
        article["subject"] = subject
    return article


def _ticket_id(ref: contract.TicketRef) -> int:
    if not ref.remote_id.isdigit():
        raise contract.SinkError(f"zammad: {ref.remote_id!r} is not a ticket id", retryable=False)
    return int(ref.remote_id)


def _tag(fingerprint: str) -> str:
    if not _FINGERPRINT.match(fingerprint):
        raise contract.SinkError(
            f"zammad: fingerprint {fingerprint!r} cannot be a tag", retryable=False
        )
    return f"rw-{fingerprint}"


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
