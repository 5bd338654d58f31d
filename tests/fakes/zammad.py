"""A stand-in for Zammad's REST API (tickets, articles, tags, search).

Only what the runwatch adapter uses, in the documented shapes:

    POST /api/v1/tickets                 {title, group, customer, article, …} -> 201 ticket
    GET  /api/v1/tickets/{id}[?expand=true]                                    -> 200 ticket
    PUT  /api/v1/tickets/{id}            {title?, state?, priority?, article?} -> 200 ticket
    POST /api/v1/ticket_articles         {ticket_id, body, type, internal, …}  -> 201 article
    POST /api/v1/tags/add                {item, object: "Ticket", o_id}        -> 201 true
    GET  /api/v1/tickets/search?query=…&limit=…  -> 200, in the shape of `version`:
         6.4 and older: {tickets: [ids], tickets_count, assets}   (docs archive-6.4, §Search)
         6.5 and newer: [ticket, …]; full=true: {record_ids, assets, total_count}
                        (docs 6.5/main, api/intro.rst "Search via API")
         expand=true, any version: [ticket with names, …]
    GET  /api/v1/users/me                -> 200 the token's user, with its permissions
    GET  /api/v1/groups                  -> 200 [group, …]
    GET  /api/v1/ticket_priorities       -> 200 [priority, …]

Relations are given by name (group, customer e-mail, state, priority "2 normal") as the docs
show; answers carry ids, and names too with expand=true. Auth is `Authorization: Token
token=<token>`. Errors are {"error", "error_human"}; lookups and validation fail with 422 as
Zammad's do. Search understands only `tags:"…" AND state.name:(a OR "b c" …)`; anything else is
refused with 400. `tags` on create is accepted as Zammad's ticket controller takes it (a comma
separated string), and as in Zammad since 2024 a tag that does not exist yet is only created
when the setting `tag_new` is on or the user has `admin.tag`: tags/add answers 403 otherwise,
create skips the tag silently (`Tag.tag_allowed?`).

Search runs on Elasticsearch, whose index refresh makes it lag writes (about a second): it
matches tags and state as indexed `search_lag_seconds` ago (as told by `clock`), so a new ticket
is not found at first and a closed one is still found. The tickets it answers are read from
the database, current, as Zammad loads them by the ids the index returns.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import BadRequest, FakeHelpDesk, RecordedRequest, Refusal, Reply, expect_query

STATES = {
    1: "new",
    2: "open",
    3: "pending reminder",
    4: "closed",
    5: "merged",
    6: "removed",
    7: "pending close",
}
PRIORITIES = {1: "1 low", 2: "2 normal", 3: "3 high"}
ARTICLE_TYPES = {"email": 1, "phone": 5, "note": 10, "web": 11}
SENDERS = {"Agent": 1, "Customer": 2, "System": 3}
AGENT_ID = 3
VERSIONS = ("6.4", "6.5", "7.0")
_SEARCH = re.compile(r'^tags:"(?P<tag>[^"]+)" AND state\.name:\((?P<states>[^()]+)\)$')
_STATE_TERM = re.compile(r'^(?:"(?P<quoted>[^"]+)"|(?P<bare>[A-Za-z]+))$')
_NOW = "2026-01-01T00:00:00.000Z"


class Unprocessable(Refusal):
    def __init__(self, message: str) -> None:
        super().__init__(422, message)


# The ticket attributes Zammad's controller takes on create and on update.
_TICKET_ATTRIBUTES = {"title", "group", "state", "state_id", "priority", "priority_id", "article"}
CREATE_ATTRIBUTES = frozenset(_TICKET_ATTRIBUTES | {"customer", "tags", "note"})
UPDATE_ATTRIBUTES = frozenset(_TICKET_ATTRIBUTES | {"id"})


def _expect_attributes(body: dict[str, Any], allowed: frozenset[str]) -> None:
    if unknown := set(body) - allowed:
        raise Unprocessable(f"unknown ticket attributes {sorted(unknown)}")


@dataclass
class ZammadTicket:
    id: int
    number: str
    title: str
    group_id: int
    customer_id: int
    priority_id: int = 2
    state_id: int = 1
    articles: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        return STATES[self.state_id]

    @property
    def priority(self) -> str:
        return PRIORITIES[self.priority_id]


class FakeZammad(FakeHelpDesk):
    """A Zammad instance with a few groups and one customer."""

    vendor = "zammad"

    def __init__(
        self,
        token: str = "zammad-secret-77aa",
        groups: tuple[str, ...] = ("Users", "Systems Administration", "Computer Operations"),
        customers: tuple[str, ...] = ("monitoring@example.com",),
        *,
        version: str = VERSIONS[-1],
        permissions: tuple[str, ...] = ("ticket.agent",),
        tag_new: bool = True,
        search_lag_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        assert version in VERSIONS, version
        self.token = token
        self.version = version
        self.permissions = set(permissions)
        self.tag_new = tag_new  # Manage > Tags: "new tags can be created by agents"
        self.known_tags: set[str] = set()
        self.groups = {name: number for number, name in enumerate(groups, start=1)}
        self.customers = {email: number for number, email in enumerate(customers, start=10)}
        self.tickets: dict[int, ZammadTicket] = {}
        self.search_lag_seconds = search_lag_seconds
        self.clock = clock
        # ticket id -> [(when, tags, state)]: what search sees, after the lag
        self._index: dict[int, list[tuple[float, tuple[str, ...], str]]] = {}
        self._article_ids = 0
        self.route("POST", "/api/v1/tickets", self._create)
        self.route("GET", "/api/v1/tickets/search", self._search)
        self.route("GET", r"/api/v1/tickets/(?P<id>\d+)", self._get)
        self.route("PUT", r"/api/v1/tickets/(?P<id>\d+)", self._update)
        self.route("POST", "/api/v1/ticket_articles", self._create_article)
        self.route("POST", "/api/v1/tags/add", self._add_tag)
        self.route("GET", "/api/v1/users/me", self._me)
        self.route("GET", "/api/v1/groups", self._groups)
        self.route("GET", "/api/v1/ticket_priorities", self._priorities)

    # -- for tests ----------------------------------------------------------------------------

    def ticket(self, ticket_id: int | str) -> ZammadTicket:
        return self.tickets[int(ticket_id)]

    def group_name(self, group_id: int) -> str:
        return next(name for name, number in self.groups.items() if number == group_id)

    def set_state(self, ticket_id: int | str, state: str) -> None:
        """What an agent in the Zammad UI would do."""
        self.ticket(ticket_id).state_id = _lookup(STATES, state, "state")
        self._reindex(self.ticket(ticket_id))

    def _reindex(self, ticket: ZammadTicket) -> None:
        entry = (self.clock(), tuple(ticket.tags), ticket.state)
        self._index.setdefault(ticket.id, []).append(entry)

    def _searchable(self, ticket: ZammadTicket) -> tuple[tuple[str, ...], str] | None:
        """What search sees of a ticket: its last state indexed before the lag, if any."""
        seen = self.clock() - self.search_lag_seconds
        entries = [e for e in self._index.get(ticket.id, []) if e[0] <= seen]
        return (entries[-1][1], entries[-1][2]) if entries else None

    # -- protocol -----------------------------------------------------------------------------

    def authorized(self, request: RecordedRequest) -> bool:
        return request.headers.get("authorization") == f"Token token={self.token}"

    def error_body(
        self, request: RecordedRequest, status: int, message: str, details: dict[str, Any]
    ) -> Any:
        if status == 401:
            message = "Authentication failed"
        return {"error": message, "error_human": message}

    def _ticket(self, ticket_id: Any) -> ZammadTicket:
        if isinstance(ticket_id, str) and ticket_id.isdigit():
            ticket_id = int(ticket_id)
        if not isinstance(ticket_id, int) or ticket_id not in self.tickets:
            raise Refusal(404, f"Couldn't find Ticket with 'id'={ticket_id}")
        return self.tickets[ticket_id]

    def _ticket_json(self, ticket: ZammadTicket, *, expand: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": ticket.id,
            "group_id": ticket.group_id,
            "priority_id": ticket.priority_id,
            "state_id": ticket.state_id,
            "organization_id": None,
            "number": ticket.number,
            "title": ticket.title,
            "owner_id": 1,
            "customer_id": ticket.customer_id,
            "note": None,
            "first_response_at": None,
            "close_at": None,
            "last_contact_at": None,
            "create_article_type_id": ARTICLE_TYPES["note"],
            "create_article_sender_id": SENDERS["Agent"],
            "article_count": len(ticket.articles),
            "pending_time": None,
            "type": None,
            "preferences": {},
            "updated_by_id": AGENT_ID,
            "created_by_id": AGENT_ID,
            "created_at": _NOW,
            "updated_at": _NOW,
            "article_ids": [a["id"] for a in reversed(ticket.articles)],
            "ticket_time_accounting_ids": [],
        }
        if expand:
            customer = next(e for e, n in self.customers.items() if n == ticket.customer_id)
            out.update(
                group=self.group_name(ticket.group_id),
                state=ticket.state,
                priority=ticket.priority,
                customer=customer,
                owner="-",
                organization=None,
                created_by="runwatch@example.com",
                updated_by="runwatch@example.com",
            )
        return out

    def _article(self, ticket: ZammadTicket, value: Any, *, standalone: bool) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Unprocessable("article must be an object")
        allowed = {"body", "type", "internal", "subject", "content_type", "sender"}
        if standalone:
            allowed.add("ticket_id")
        if unknown := set(value) - allowed:
            raise Unprocessable(f"unknown article attributes {sorted(unknown)}")
        body = value.get("body")
        if not isinstance(body, str) or not body:
            raise Unprocessable("Need at least an article body")
        kind = value.get("type", "note")
        if kind not in ARTICLE_TYPES:
            raise Unprocessable(f"No lookup value found for 'type': {kind!r}")
        sender = value.get("sender", "Agent")
        if sender not in SENDERS:
            raise Unprocessable(f"No lookup value found for 'sender': {sender!r}")
        internal = value.get("internal", False)
        if not isinstance(internal, bool):
            raise Unprocessable("internal must be true or false")
        content_type = value.get("content_type", "text/plain")
        if content_type not in ("text/plain", "text/html"):
            raise Unprocessable(f"content_type {content_type!r} is not text/plain or text/html")
        subject = value.get("subject")
        if subject is not None and not isinstance(subject, str):
            raise Unprocessable("subject must be a string")
        self._article_ids += 1
        article = {
            "id": self._article_ids,
            "ticket_id": ticket.id,
            "type_id": ARTICLE_TYPES[kind],
            "sender_id": SENDERS[sender],
            "from": "runwatch",
            "to": None,
            "cc": None,
            "subject": subject,
            "reply_to": None,
            "message_id": None,
            "content_type": content_type,
            "body": body,
            "internal": internal,
            "preferences": {},
            "updated_by_id": AGENT_ID,
            "created_by_id": AGENT_ID,
            "created_at": _NOW,
            "updated_at": _NOW,
            "type": kind,
            "sender": sender,
            "created_by": "runwatch@example.com",
            "updated_by": "runwatch@example.com",
            "attachments": [],
        }
        ticket.articles.append(article)
        return article

    def _set_relations(self, ticket: ZammadTicket, body: dict[str, Any]) -> None:
        if "title" in body:
            if not isinstance(body["title"], str) or not body["title"].strip():
                raise Unprocessable("title must be a non-empty string")
            ticket.title = body["title"]
        if "group" in body:
            ticket.group_id = _lookup(
                {v: k for k, v in self.groups.items()}, body["group"], "group"
            )
        if "state" in body:
            ticket.state_id = _lookup(STATES, body["state"], "state")
        if "state_id" in body:
            ticket.state_id = _known_id(STATES, body["state_id"], "state_id")
        if "priority" in body:
            ticket.priority_id = _lookup(PRIORITIES, body["priority"], "priority")
        if "priority_id" in body:
            ticket.priority_id = _known_id(PRIORITIES, body["priority_id"], "priority_id")

    # -- REST API -----------------------------------------------------------------------------

    def _create(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed=set())
        body = request.body
        if not isinstance(body, dict):
            raise Unprocessable("the body must be an object")
        _expect_attributes(body, CREATE_ATTRIBUTES)
        for name in ("title", "group", "customer", "article"):
            if name not in body:
                raise Unprocessable(f"Missing required attribute '{name}'")
        customer = body["customer"]
        if isinstance(customer, str) and customer.startswith("guess:"):
            customer = customer.removeprefix("guess:")
        if customer not in self.customers:
            raise Unprocessable(f"No lookup value found for 'customer': {body['customer']!r}")
        tags = body.get("tags", "")
        if not isinstance(tags, str):
            raise Unprocessable("tags must be a comma separated string")
        ticket = ZammadTicket(
            id=len(self.tickets) + 1,
            number=str(31001 + len(self.tickets)),
            title="",
            group_id=0,
            customer_id=self.customers[customer],
        )
        self._set_relations(ticket, body)
        self._article(ticket, body["article"], standalone=False)
        # Zammad's controller skips a tag it may not create, without an error.
        ticket.tags = [t.strip() for t in tags.split(",") if self._tag_allowed(t.strip())]
        self.known_tags.update(ticket.tags)
        self.tickets[ticket.id] = ticket
        self._reindex(ticket)
        return Reply(201, self._ticket_json(ticket))

    def _get(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed={"expand", "all"})
        ticket = self._ticket(int(match["id"]))
        return Reply(200, self._ticket_json(ticket, expand=request.query.get("expand") == "true"))

    def _update(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed=set())
        ticket = self._ticket(int(match["id"]))
        body = request.body
        if not isinstance(body, dict) or not body:
            raise Unprocessable("the body must be a non-empty object")
        _expect_attributes(body, UPDATE_ATTRIBUTES)
        if "id" in body and body["id"] != ticket.id:
            raise Unprocessable("id does not match the ticket")
        self._set_relations(ticket, body)
        if "article" in body:
            self._article(ticket, body["article"], standalone=False)
        self._reindex(ticket)
        return Reply(200, self._ticket_json(ticket))

    def _create_article(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed=set())
        body = request.body
        if not isinstance(body, dict) or "ticket_id" not in body:
            raise Unprocessable("Missing required attribute 'ticket_id'")
        ticket = self._ticket(body["ticket_id"])
        return Reply(201, self._article(ticket, body, standalone=True))

    def _add_tag(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        body = request.body
        if not isinstance(body, dict) or set(body) != {"item", "object", "o_id"}:
            raise Unprocessable("give item, object and o_id")
        if body["object"] != "Ticket":
            raise Unprocessable(f"No lookup value found for 'object': {body['object']!r}")
        if not isinstance(body["item"], str) or not body["item"].strip():
            raise Unprocessable("item must be a tag name")
        if not self.permissions & {"ticket.agent", "admin.tag"}:
            raise Refusal(403, "Not authorized (user)!")
        ticket = self._ticket(body["o_id"])
        if not self._tag_allowed(body["item"]):
            raise Refusal(403, "Not authorized")  # Exceptions::Forbidden, tags_controller.rb
        if body["item"] not in ticket.tags:
            ticket.tags.append(body["item"])
            self._reindex(ticket)
        self.known_tags.add(body["item"])
        return Reply(201, True)

    def _tag_allowed(self, name: str) -> bool:
        """Tag.tag_allowed?: new tags need the setting tag_new or admin.tag."""
        return bool(name) and (
            self.tag_new or "admin.tag" in self.permissions or name in self.known_tags
        )

    def _me(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed={"expand", "full"})
        return Reply(
            200,
            {
                "id": AGENT_ID,
                "login": "runwatch@example.com",
                "email": "runwatch@example.com",
                "active": True,
                "role_ids": [2],
                "group_ids": {str(n): ["full"] for n in self.groups.values()},
                # With expand=true Zammad answers the names of roles and the permissions.
                "permissions": sorted(self.permissions),
            },
        )

    def _groups(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed={"expand", "per_page", "page"})
        return Reply(
            200, [{"id": n, "name": name, "active": True} for name, n in self.groups.items()]
        )

    def _priorities(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(request, allowed={"expand", "per_page", "page"})
        return Reply(
            200, [{"id": n, "name": name, "active": True} for n, name in PRIORITIES.items()]
        )

    def _search(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        expect_query(
            request,
            allowed={"query", "limit", "per_page", "page", "expand", "full", "with_total_count"},
        )
        if "term" in request.query or "label" in request.query:
            raise BadRequest("term/label answer the autocomplete shape; the fake does not")
        query = _SEARCH.match(request.query.get("query", ""))
        if query is None:
            raise BadRequest(
                f'the fake understands only tags:"…" AND state.name:(…), '
                f"got {request.query.get('query')!r}"
            )
        states = set()
        for term in query["states"].split(" OR "):
            state = _STATE_TERM.match(term.strip())
            if state is None:
                raise BadRequest(f"cannot read the state term {term!r}")
            states.add(state["quoted"] or state["bare"])
        limit = request.query.get("limit", "10")
        if not limit.isdigit():
            raise BadRequest(f"limit must be a number, got {limit!r}")
        found = [
            t
            for t in self.tickets.values()
            if (seen := self._searchable(t)) is not None
            and query["tag"] in seen[0]
            and seen[1] in states
        ][: int(limit)]
        assets = {"Ticket": {str(t.id): self._ticket_json(t) for t in found}}
        if request.query.get("expand") == "true":
            return Reply(200, [self._ticket_json(t, expand=True) for t in found])
        if self.version == "6.4":
            ids = [t.id for t in found]
            return Reply(200, {"tickets": ids, "tickets_count": len(found), "assets": assets})
        if request.query.get("full") == "true":
            ids = [t.id for t in found]
            return Reply(200, {"record_ids": ids, "assets": assets, "total_count": len(found)})
        return Reply(200, [self._ticket_json(t) for t in found])


def _lookup(table: dict[int, str], name: Any, attribute: str) -> int:
    for number, known in table.items():
        if known == name:
            return number
    raise Unprocessable(f"No lookup value found for '{attribute}': {name!r}")


def _known_id(table: dict[int, str], value: Any, attribute: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in table:
        raise Unprocessable(f"No lookup value found for '{attribute}': {value!r}")
    return value
