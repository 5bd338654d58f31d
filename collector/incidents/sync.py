"""Two-way sync: what the help desk did with open calls, and what runwatch does about it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from checks.settings import format_duration
from collector.config import GroupConfig
from collector.incidents.calls import Call, CallEvent
from collector.incidents.manager import CallTimings
from collector.sinks.contract import RemoteStatus, Sink, SinkError, TicketRef
from collector.store.protocols import Store
from collector.store.records import CallLink, OutboxOp

log = logging.getLogger(__name__)


class TicketSync:
    """Read the status of every open call's ticket, then, per the owner group's policy:

    - record when the call was acknowledged (its ticket left the "new" state);
    - if the help desk resolved or closed it while the problem persists, reopen it with a
      comment that says why (the call is still open here: the problem has not cleared);
    - if nobody acknowledged it within the group's `respond_within`, escalate once: a comment
      and the priority of a CRITICAL call.

    Runs in the outbox worker's thread and touches only the store: its actions go out
    through the outbox like every other call operation.
    """

    def __init__(
        self,
        store: Store,
        sinks: Mapping[str, Sink],
        groups: Mapping[str, GroupConfig],
        priorities: Mapping[str, Callable[[str], str]],
        *,
        timings: CallTimings | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._timings = timings or CallTimings()
        self._on_error = on_error or (lambda sink: None)
        self._sinks = sinks
        self._groups = groups
        self._priorities = priorities

    def run_once(self, now: float) -> int:
        """Check every open call's ticket once; return how many actions were taken."""
        actions = 0
        for link in self._store.open_links():
            sink = self._sinks.get(link.sink)
            call = self._store.get_call(link.call_id)
            if sink is None or call is None or call.status != "open":
                continue
            if self._store.has_undelivered(link.call_id, link.sink):
                continue  # our own change is still on its way; judge after it lands
            try:
                remote = sink.status(TicketRef(link.remote_id, link.url))
            except SinkError as exc:
                self._on_error(link.sink)
                log.warning(
                    "cannot read the status of %s ticket %s (call %d): %s",
                    link.sink,
                    link.remote_id,
                    link.call_id,
                    exc,
                )
                continue
            group = self._groups.get(call.group)
            link.checked_at = now
            events = self._acknowledge(link, remote, call, now)
            closed_here = remote.state in ("resolved", "closed") and link.remote_state not in (
                "resolved",
                "closed",
            )
            if closed_here and group is not None and group.on_desk_close == "new_call":
                link.desk_closed_at = now
                events.append(
                    (
                        "comment",
                        f"{remote.raw} in the help desk while the problem "
                        f"persists; a new call opens if it still holds in "
                        f"{group.new_call_after}. {call.summary}",
                        {},
                    )
                )
                remote_state = remote.state
            elif closed_here:
                text = (
                    f"runwatch reopened this ticket: it was {remote.raw} in the help desk, "
                    f"but the problem persists. {call.summary}"
                )
                events.append(("reopened", text, {"text": text}))
                remote_state = "open"
            else:
                remote_state = remote.state
            if (
                group is not None
                and link.acknowledged_at is None
                and link.escalated_at is None
                and now - call.opened_at > float(group.respond_within)
            ):
                link.escalated_at = now
                text = (
                    f"Not acknowledged within {group.respond_within} "
                    f"({group.assign}): escalated to high priority. {call.summary}"
                )
                priority = self._priorities[link.sink]("CRITICAL")
                events.append(
                    (
                        "severity",
                        text,
                        {"priority": priority, "summary": call.summary, "text": text},
                    )
                )
            link.remote_state = remote_state
            with self._store.transaction():
                self._store.save_link(link)
                for kind, text, payload in events:
                    self._store.add_call_event(CallEvent(call.id, now, kind, text))  # type: ignore[arg-type]
                    op = {"reopened": "reopen", "severity": "update"}.get(kind)
                    op = op if payload else None  # local notes (acknowledged, …) stay here
                    if op is not None:
                        self._store.enqueue(OutboxOp(0, call.id, link.sink, op, payload, now))
                        actions += 1
            for _, text, _ in events:
                log.info("call %d: %s", call.id, text)
        return actions

    def _acknowledge(
        self, link: CallLink, remote: RemoteStatus, call: Call, now: float
    ) -> list[tuple[str, str, dict[str, object]]]:
        """Record the acknowledgement when the ticket has just left the "new" state."""
        if remote.state == "new" or link.acknowledged_at is not None:
            return []
        link.acknowledged_at = now
        self._timings.acknowledged(call.group, now - call.opened_at)
        return [
            (
                "acknowledged",
                f"Acknowledged in {link.sink} ({remote.raw}) after "
                f"{format_duration(now - call.opened_at)}",
                {},
            )
        ]
