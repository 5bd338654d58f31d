"""A webhook as a ticket sink: every operation POSTs one JSON event to a URL.

A webhook cannot be searched, so `find` always answers None and `status` cannot tell anything:
duplicates are kept out by the outbox alone, which records the ticket of each call once `open`
succeeded and sends every later event for that call to the same ticket id.

The body is the default template below or `body_template`, a Jinja2 template (sandboxed, no HTML
escaping) that must render JSON. It sees these variables; those an event does not carry are null:

    event        open, comment, update, resolve or reopen
    ticket_id    null for open; then the receiver's `id` from its answer to open, or else the
                 fingerprint
    fingerprint  the incident key (open)
    summary      one line (open, update)
    description  the full text (open)
    severity     WARNING, CRITICAL, UNKNOWN or STALE (open)
    priority     the configured priority value (open, update)
    host, rule   where the problem is (open)
    labels       the series labels, an object (open)
    route        what the run group routes, e.g. {"channel": "#ops"} (open)
    text         what to say with this event (for open: the description)
    close        true when a resolve also closes (resolve)

`tojson` turns any of them into a JSON value: `{"text": {{ text | tojson }}}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import jinja2
import msgspec
from jinja2.sandbox import SandboxedEnvironment

from checks.settings import field_error
from collector.sinks import contract

if TYPE_CHECKING:  # httpx loads with the first adapter built, not with the config
    import httpx


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FIELDS = (
    "ticket_id",
    "fingerprint",
    "summary",
    "description",
    "severity",
    "priority",
    "host",
    "rule",
    "labels",
    "route",
    "text",
    "close",
)
# The default body: the event and every value a template gets, as one JSON object.
DEFAULT_TEMPLATE = (
    "{\n"
    + ",\n".join(f'  "{name}": {{{{ {name} | tojson }}}}' for name in ("event", *_FIELDS))
    + "\n}\n"
)


def _tojson(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# Users write the template, so it runs sandboxed; JSON is not HTML, so nothing is escaped.
_ENV = SandboxedEnvironment(
    autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
)
_ENV.filters["tojson"] = _tojson


class WebhookSinkConfig(
    contract.HttpSinkConfig, frozen=True, kw_only=True, tag_field="type", tag="webhook"
):
    """A URL that receives one JSON event per ticket operation."""

    route_keys: ClassVar[frozenset[str]] = frozenset({"channel"})

    headers: dict[str, str] = msgspec.field(default_factory=dict)
    secret_header: str | None = None  # e.g. X-Webhook-Token; sent with the secret as value
    secret: contract.Secret | None = None
    body_template: str | None = None  # Jinja2 rendering JSON; default: DEFAULT_TEMPLATE

    def __post_init__(self) -> None:
        super().__post_init__()
        if "@" in urlsplit(self.url).netloc:
            raise field_error("url", "put credentials in secret_header and secret, not in the URL")
        if (self.secret_header is None) != (self.secret is None):
            raise field_error("secret", "give both secret_header and secret, or neither")
        for name in [*self.headers, *([self.secret_header] if self.secret_header else [])]:
            if not _HEADER_NAME.match(name):
                raise field_error("headers", f"{name!r} is not a valid HTTP header name")
        if self.secret_header and self.secret_header.lower() in {h.lower() for h in self.headers}:
            raise field_error("headers", f"{self.secret_header} is already the secret_header")
        if self.body_template is not None:
            try:
                _ENV.from_string(self.body_template)
            except jinja2.TemplateSyntaxError as exc:
                raise field_error(
                    "body_template",
                    f"not a valid Jinja2 template: {exc.message} (line {exc.lineno})",
                ) from None


class WebhookSink:
    """POST one JSON event per operation. Cannot search: dedup relies on the outbox."""

    name = "webhook"

    def __init__(
        self, config: WebhookSinkConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._config = config
        # HttpClient joins paths onto a base URL, which would add a slash to a bare hook URL.
        parts = urlsplit(config.url)
        self._path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        origin = contract.HttpSinkConfig(
            url=f"{parts.scheme}://{parts.netloc}",
            timeout=config.timeout,
            ca_file=config.ca_file,
            verify_tls=config.verify_tls,
        )
        auth = self._auth_headers if config.secret is not None else None
        from collector.sinks.transport import HttpClient

        self._http = HttpClient(self.name, origin, auth=auth, transport=transport)
        self._template = _ENV.from_string(config.body_template or DEFAULT_TEMPLATE)

    def _auth_headers(self) -> Mapping[str, str]:
        assert self._config.secret is not None and self._config.secret_header is not None
        return {self._config.secret_header: self._config.secret.read()}

    def close(self) -> None:
        self._http.close()

    def find(self, fingerprint: str) -> contract.TicketRef | None:
        return None

    def open(self, ticket: contract.NewTicket) -> contract.TicketRef:
        contract.check_route(self.name, ticket.route, self._config.route_keys)
        response = self._send(
            "open",
            {"Idempotency-Key": ticket.idempotency_key} if ticket.idempotency_key else {},
            fingerprint=ticket.fingerprint,
            summary=ticket.summary,
            description=ticket.description,
            severity=ticket.severity,
            priority=ticket.priority,
            host=ticket.host,
            rule=ticket.rule,
            labels=dict(ticket.labels),
            route=dict(ticket.route),
            text=ticket.description,
        )
        try:
            data = response.json()
        except ValueError:
            data = None
        remote = data.get("id") if isinstance(data, dict) else None
        if isinstance(remote, bool) or not isinstance(remote, str | int) or remote == "":
            return contract.TicketRef(ticket.fingerprint)
        return contract.TicketRef(str(remote))

    def comment(self, ref: contract.TicketRef, text: str) -> None:
        self._send("comment", ticket_id=ref.remote_id, text=text)

    def update(self, ref: contract.TicketRef, *, priority: str, summary: str, text: str) -> None:
        self._send("update", ticket_id=ref.remote_id, priority=priority, summary=summary, text=text)

    def resolve(self, ref: contract.TicketRef, text: str, *, close: bool) -> None:
        self._send("resolve", ticket_id=ref.remote_id, text=text, close=close)

    def reopen(self, ref: contract.TicketRef, text: str) -> None:
        self._send("reopen", ticket_id=ref.remote_id, text=text)

    def status(self, ref: contract.TicketRef) -> contract.RemoteStatus:
        return contract.RemoteStatus("open", "unknown")

    def render(self, event: str, **values: Any) -> Any:
        """Render the body for one event and parse it; raise SinkError (final) if it is not JSON."""
        context = dict.fromkeys(_FIELDS) | values | {"event": event}
        try:
            rendered = self._template.render(context)
        except Exception as exc:  # noqa: BLE001 - a user's template may raise anything
            raise contract.SinkError(
                f"webhook: body_template failed for event {event}: {type(exc).__name__}: {exc}",
                retryable=False,
            ) from None
        try:
            return json.loads(rendered)
        except json.JSONDecodeError as exc:
            raise contract.SinkError(
                f"webhook: body_template rendered invalid JSON for event {event}: "
                f"{exc.msg} at line {exc.lineno} column {exc.colno}",
                retryable=False,
            ) from None

    def _send(
        self, event: str, extra_headers: Mapping[str, str] | None = None, **values: Any
    ) -> httpx.Response:
        body = self.render(event, **values)
        return self._http.request(
            "POST", self._path, json=body, headers={**self._config.headers, **(extra_headers or {})}
        )
