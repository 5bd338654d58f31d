"""What every ticket sink shares: the operations, the values they exchange, and their errors.

A sink is an adapter to one help desk (Redmine, Request Tracker, Jira, ServiceNow, Zammad, a
webhook). The outbox worker calls it from its own thread, one operation at a time per call, and
retries what is retryable. Adapters are idempotent: the incident fingerprint is written into the
ticket (custom field, label, correlation id) and `find` is called before every `open`.
"""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Literal,
    Protocol,
    TypeGuard,
    TypeVar,
    runtime_checkable,
)

import msgspec

from checks.settings import Duration, field_error

if TYPE_CHECKING:  # httpx loads with the first adapter built, not with the config
    import httpx

RemoteState = Literal["new", "open", "resolved", "closed"]


@dataclass(frozen=True, slots=True)
class TicketRef:
    """A ticket in the help desk: its id there, and a link for people."""

    remote_id: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class NewTicket:
    """Everything a sink needs to create a ticket for one incident."""

    fingerprint: str
    summary: str
    description: str
    severity: str  # WARNING, CRITICAL, UNKNOWN, STALE
    priority: str  # the sink's own priority value, already mapped
    route: dict[str, str]  # where it goes in this sink (project, queue, group, …)
    host: str
    rule: str
    labels: dict[str, str] = field(default_factory=dict)
    # The same for every delivery of one outbox entry, by any replica: a receiver that keeps
    # the keys it has seen makes one ticket of an `open` sent again after a replica died
    # mid-delivery (sinks that can search for the fingerprint need no key).
    idempotency_key: str = ""


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    """Where the help desk says a ticket stands."""

    state: RemoteState  # new: nobody has touched it; open: someone is on it
    raw: str  # the help desk's own word for it ("In Progress", "resolved")


# What may count as a person engaging with a ticket (`acknowledge_on`); a close never does.
Engagement = Literal["comment", "assign", "status"]
ActivityKind = Literal[Engagement, "close"]
ACKNOWLEDGING: tuple[Engagement, ...] = ("comment", "assign", "status")


@dataclass(frozen=True, slots=True)
class DeskActivity:
    """One thing a person did to a ticket in the help desk (never runwatch's own changes)."""

    at: float  # when, by the help desk's clock (seconds since the epoch)
    kind: ActivityKind  # a note; a new assignee or owner; a new status; a resolve or close
    author: str  # the person, as the help desk names them
    text: str = ""  # the note; the new assignee's name; the new status's name


@dataclass(frozen=True, slots=True)
class TicketReading:
    """A ticket's status and what people did to it, read in one go."""

    status: RemoteStatus
    activity: tuple[DeskActivity, ...] = ()


@runtime_checkable
class ActivityReader(Protocol):
    """A sink that can also read a ticket's history (Redmine's journals, RT's transactions)."""

    def read_ticket(self, ref: TicketRef) -> TicketReading:
        """The ticket's status and what people other than runwatch did to it, oldest first."""
        ...


class SinkError(Exception):
    """A help desk refused or did not answer. Never carries a secret.

    `retryable` is true for timeouts, connection errors, 429 and 5xx: the outbox tries again
    later (after `retry_after` seconds if the server said so). Anything else is a dead letter.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class Sink(Protocol):
    """One help desk. Each method either succeeds or raises SinkError."""

    name: str

    def find(self, fingerprint: str) -> TicketRef | None:
        """The not-yet-closed ticket that carries this fingerprint, if any."""
        ...

    def open(self, ticket: NewTicket) -> TicketRef:
        """Create a ticket. The caller has already called `find`."""
        ...

    def comment(self, ref: TicketRef, text: str) -> None: ...

    def update(self, ref: TicketRef, *, priority: str, summary: str, text: str) -> None:
        """Change priority and summary after a severity change, with a comment saying why."""
        ...

    def resolve(self, ref: TicketRef, text: str, *, close: bool) -> None:
        """Mark resolved (or closed) with a note."""
        ...

    def reopen(self, ref: TicketRef, text: str) -> None: ...

    def status(self, ref: TicketRef) -> RemoteStatus: ...


class DescribingSink(Sink, Protocol):
    """A help desk that keeps each ticket's current state: `update`, `resolve` and `reopen` also
    take the call's description as it reads now (Redmine rewrites the issue's description; RT, which
    cannot edit a ticket's first message, puts it in the comment and an optional field)."""

    keeps_description: ClassVar[bool]

    def update(
        self,
        ref: TicketRef,
        *,
        priority: str,
        summary: str,
        text: str,
        description: str | None = None,
    ) -> None: ...

    def resolve(
        self, ref: TicketRef, text: str, *, close: bool, description: str | None = None
    ) -> None: ...

    def reopen(self, ref: TicketRef, text: str, *, description: str | None = None) -> None: ...


def keeps_description(sink: Sink) -> TypeGuard[DescribingSink]:
    """Whether the sink takes the call's current description with update, resolve and reopen."""
    return getattr(sink, "keeps_description", False) is True


class Secret(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A secret named by where it lives, never written in the config itself."""

    env: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if (self.env is None) == (self.file is None):
            raise field_error("env", "give exactly one of `env` (a variable) or `file`")

    def read(self) -> str:
        """Return the secret; raise SinkError (not retryable) naming where it was looked for."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise SinkError(f"environment variable {self.env} is not set", retryable=False)
            return value.strip()
        assert self.file is not None
        try:
            return Path(self.file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SinkError(
                f"cannot read secret file {self.file}: {exc.strerror}", retryable=False
            ) from None


SEVERITIES = ("CRITICAL", "WARNING", "UNKNOWN", "STALE")


class HttpSinkConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Options every HTTP help desk adapter takes.

    Subclasses inherit `forbid_unknown_fields`; `frozen`, `kw_only` and the tag they set.
    """

    # Each adapter's own severity -> priority map; `priorities` overrides it per severity.
    default_priorities: ClassVar[dict[str, str]] = {}
    # The longest subject (title, summary) the help desk keeps; a call's summary is fitted to
    # it by shortening label values, never the host or the rule.
    subject_max_chars: ClassVar[int] = 250

    url: str
    timeout: Duration = Duration(10)
    ca_file: str | None = None
    verify_tls: bool = True
    # Severity -> this help desk's priority value (name or id, as its API wants it).
    priorities: dict[str, str] = {}
    # What a person does to a ticket that counts as acknowledging its call; where a desk's
    # history cannot be read, only a status change out of "new" is seen.
    acknowledge_on: list[Engagement] = msgspec.field(default_factory=lambda: list(ACKNOWLEDGING))

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise field_error("url", f"must start with http:// or https://, got {self.url!r}")
        check_keys("priorities", self.priorities, SEVERITIES, "severity")

    @property
    def priority_values(self) -> dict[str, str]:
        """Severity -> priority value: `priorities` over the adapter's defaults."""
        return {**self.default_priorities, **self.priorities}


class TrustedWrites:
    """What a sink wrote lately, trusted over a search that lags writes (issue 20).

    For `window` seconds after a confirmed open or reopen, `find` answers the stored reference
    instead of searching, and a ticket the sink resolved is not taken for open from a search
    that still shows it so. A person's change within the window is seen once it passes.
    """

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        # fingerprint -> (until, ref), and remote id -> until for tickets resolved
        self._opened: dict[str, tuple[float, TicketRef]] = {}
        self._resolved: dict[str, float] = {}

    def find(self, fingerprint: str) -> TicketRef | None:
        """The ticket this sink opened for the fingerprint within the window, if still open."""
        opened = self._opened.get(fingerprint)
        if opened is None or opened[0] <= self._clock() or self.resolved(opened[1].remote_id):
            return None
        return opened[1]

    def resolved(self, remote_id: str) -> bool:
        """Whether this sink resolved the ticket within the window."""
        return self._resolved.get(remote_id, 0.0) > self._clock()

    def opened(self, fingerprint: str, ref: TicketRef) -> TicketRef:
        now = self._clock()
        for old in [fp for fp, (until, _) in self._opened.items() if until <= now]:
            del self._opened[old]
        self._opened[fingerprint] = (now + self._window, ref)
        self._resolved.pop(ref.remote_id, None)
        return ref

    def resolve(self, ref: TicketRef) -> None:
        now = self._clock()
        for remote_id in [i for i, until in self._resolved.items() if until <= now]:
            del self._resolved[remote_id]
        self._resolved[ref.remote_id] = now + self._window

    def reopen(self, ref: TicketRef) -> None:
        self._resolved.pop(ref.remote_id, None)
        for fingerprint, (_, opened) in list(self._opened.items()):
            if opened.remote_id == ref.remote_id:  # trust the reopen over a stale search too
                self.opened(fingerprint, ref)


def desk_time(sink: str, text: str) -> float:
    """Seconds since the epoch of a help desk's ISO 8601 time (`2026-12-02T05:00:00Z`)."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise SinkError(
            f"{sink}: unexpected time {text!r} in a ticket's history", retryable=False
        ) from None


def check_keys(option: str, given: Iterable[str], known: Collection[str], what: str) -> None:
    """Refuse a key of `given` that is not one of `known`, naming `option`."""
    for key in given:
        if key not in known:
            raise field_error(option, f"unknown {what} {key!r}: expected one of {', '.join(known)}")


def check_route(sink: str, route: Mapping[str, str], known: frozenset[str]) -> None:
    """Refuse a run group's `route` that sets a key this sink does not know (final)."""
    if unknown := set(route) - known:
        raise SinkError(
            f"{sink}: cannot route by {sorted(unknown)}; known keys: {sorted(known)}",
            retryable=False,
        )


def retry_after_seconds(header: str | None, now: float | None = None) -> float | None:
    """Parse Retry-After: delta seconds or an HTTP date."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def error_for_status(
    sink: str,
    method: str,
    url: str,
    status: int,
    body: str,
    *,
    retry_after: str | None = None,
    redact: Callable[[str], str] = str,
    retry_statuses: Collection[int] = (),
    retry_answer: Callable[[int, str], bool] | None = None,
) -> SinkError:
    """Classify an HTTP error: 429, 5xx and `retry_statuses` are retried, the rest is final,
    unless `retry_answer(status, body)` knows the answer as the desk's "try again".

    `redact` removes the request's credentials from the quoted body, before it is cut (a cut
    credential would no longer match) and again from the whole message.
    """
    retryable = (
        status == 429
        or status >= 500
        or status in retry_statuses
        or (retry_answer is not None and retry_answer(status, body))
    )
    text = " ".join(redact(body).split())[:300]
    return SinkError(
        redact(f"{sink}: {method} {url} answered {status}: {text}"),
        retryable=retryable,
        status=status,
        retry_after=retry_after_seconds(retry_after),
    )


C = TypeVar("C", bound=HttpSinkConfig)


class HttpSink(Generic[C]):
    """What the help-desk adapters share: their config, and one keep-alive client that sends
    the credential headers `_auth_headers` returns, read for each request so that a rotated
    secret file takes effect without a restart."""

    name: str
    # Statuses besides 429 and 5xx that this help desk documents as passing (Jira: 409).
    retry_statuses: ClassVar[frozenset[int]] = frozenset()

    @staticmethod
    def retry_answer(status: int, body: str) -> bool:
        """Whether an answer outside those statuses still means "try again" (Redmine: 422)."""
        return False

    def __init__(self, config: C, *, transport: httpx.BaseTransport | None = None) -> None:
        self._config = config
        from collector.sinks.transport import HttpClient

        self._http = HttpClient(
            self.name,
            config,
            auth=self._auth_headers,
            transport=transport,
            retry_statuses=self.retry_statuses,
            retry_answer=self.retry_answer,
        )

    def _auth_headers(self) -> Mapping[str, str]:
        raise NotImplementedError

    @property
    def acknowledge_on(self) -> frozenset[str]:
        """What a person does to a ticket that counts as acknowledging its call."""
        return frozenset(self._config.acknowledge_on)

    def close(self) -> None:
        """Close the keep-alive connections."""
        self._http.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request and return its decoded JSON body; an answer without JSON is final."""
        response = self._http.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise SinkError(
                f"{self.name}: {method} {self._http.base_url}{path} answered "
                f"{response.status_code} without JSON",
                retryable=False,
            ) from None


# -- the self-check -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing a help desk's self-check found wrong, and how to fix it.

    An `error` will make deliveries fail; a `warning` may, depending on a setting the
    integration user cannot read.
    """

    what: str
    fix: str
    severity: Literal["error", "warning"] = "error"


def problem_for(error: SinkError, *, doing: str, credential: str) -> Problem:
    """A Problem for a request of the self-check that failed, with the usual fixes."""
    if error.status == 401:
        return Problem(
            f"{doing}: authentication failed ({error})",
            f"check {credential}: the secret must be current and belong to the integration user",
        )
    if error.status == 403:
        return Problem(
            f"{doing}: the integration user is not allowed ({error})",
            "give the integration user the permissions listed in the help desk's page of the docs",
        )
    if error.retryable:
        return Problem(
            f"{doing}: the help desk did not answer ({error})",
            "check `url`, the network path and the help desk's status",
        )
    return Problem(f"{doing}: {error}", "check the sink's config against the help desk")


def run_checks(
    steps: Iterable[tuple[str, Callable[[], object]]], *, credential: str
) -> list[Problem]:
    """Run each read-only step; a SinkError becomes a Problem. Stop after an auth failure."""
    problems: list[Problem] = []
    for doing, step in steps:
        try:
            step()
        except SinkError as exc:
            problems.append(problem_for(exc, doing=doing, credential=credential))
            if exc.status == 401 or (exc.retryable and exc.status is None):
                break  # nothing further can pass
    return problems
