"""Who is told of what: a call's events become notifications in the outbox.

The incident manager calls `NotificationPlanner.call_event` in the same transaction that
records the event, so a notification is queued exactly when the call changes, and a crash loses
neither. Each channel a rule chooses gets one outbox entry (`notify:<channel>`), delivered in
order per call and channel, retried and dead-lettered like a ticket's operations.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from collector.incidents.calls import Call
from collector.notify.config import OUTBOX_PREFIX, NotifyConfig
from collector.notify.oncall import on_call
from collector.notify.ratelimit import RateLimiter, count_keys
from collector.notify.storms import StormDigests
from collector.store.protocols import DigestStore
from collector.store.records import OutboxOp

log = logging.getLogger(__name__)

# A call event's kind -> the notification event it is.
EVENT_OF_KIND = {
    "opened": "open",
    "reopened": "open",
    "severity": "severity",
    "resolved": "resolve",
}


class NotificationPlanner:
    """Queue each call event for the channels the notification rules choose."""

    def __init__(
        self,
        config: NotifyConfig,
        store: DigestStore,
        *,
        ticket_sinks: dict[str, str] | None = None,
        on_enqueue: Callable[[], None] | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._ticket_sinks = ticket_sinks or {}  # group -> its help desk sink, for the link
        self._on_enqueue = on_enqueue or (lambda: None)
        # Digests: a channel's rate limit (ratelimit.py), one per storm (storms.py).
        self._limiter = RateLimiter(config.rate_limit, store, self._on_enqueue, count_keys(config))
        self._storms = StormDigests(config.storm, store)

    @property
    def enabled(self) -> bool:
        return bool(self._config.rules)

    def escalates(self, group: str) -> bool:
        """Whether the group's calls climb escalation levels (collector/notify/escalation.py)."""
        return group in self._config.escalation

    def call_event(
        self, call: Call, kind: str, text: str, now: float, *, was: str | None = None
    ) -> int:
        """Queue what the call's new event means for people; return how many were queued."""
        event = EVENT_OF_KIND.get(kind)
        if event is None:
            return 0  # comments: the ticket's business, not a reason to page anyone
        return self.notify(call, event, text, now, kind=kind, was=was)

    def notify(
        self,
        call: Call,
        event: str,
        text: str,
        now: float,
        *,
        kind: str = "",
        was: str | None = None,
        to: Sequence[str] = (),
    ) -> int:
        """Queue `event` (open, severity, escalation, resolve) of `call` for its channels, and
        at once for the channels `to` (an escalation level's people)."""
        targets = self._targets(call, event, now)
        for channel in to:
            targets[channel] = now
        if event == "open" and self._storms.is_umbrella(call):
            self._storms.opened(call, [OUTBOX_PREFIX + c for c in targets], now)
        for channel, wanted in list(targets.items()):
            sink = OUTBOX_PREFIX + channel
            if self._storms.taken_in(call, event, sink):
                del targets[channel]  # the storm's digest tells of it
                continue
            if event == "resolve" and self._storms.is_umbrella(call):
                self._storms.resolving(call, sink, now)
            release = self._storms.release(call, event, wanted, now)
            payload = self._payload(call, event, text, now, kind=kind, was=was)
            if not self._limiter.admit(sink, call, payload, release, now):
                continue  # in the channel's digest
            if release <= now:
                # An urgent message goes now, and what waited for the morning goes before it.
                self._store.release_held(call.id, sink, now)
            self._store.enqueue(
                OutboxOp(0, call.id, sink, "notify", payload, now, next_attempt_at=release)
            )
            if release > now:
                log.info(
                    "call %d: %s to %s held for %.0f s (%s)",
                    call.id,
                    event,
                    channel,
                    release - now,
                    "notifications.storm.wait" if release > wanted else "quiet hours",
                )
        if targets:
            self._on_enqueue()
        return len(targets)

    def storm_changed(self, umbrella: Call, now: float) -> int:
        """Storm control brought an umbrella's list up to date: queue an update of the storm's
        thread for each channel told of it, at most every `storm.update_every`."""
        queued = 0
        for channel in self._config.channels:
            sink = OUTBOX_PREFIX + channel
            at = self._storms.update_at(umbrella, sink, now)
            if at is None:
                continue
            payload = self._payload(umbrella, "update", umbrella.summary, now, kind="", was=None)
            if self._limiter.admit(sink, umbrella, payload, at, now):
                self._store.enqueue(
                    OutboxOp(0, umbrella.id, sink, "notify", payload, now, next_attempt_at=at)
                )
            queued += 1
        if queued:
            self._on_enqueue()
        return queued

    def _targets(self, call: Call, event: str, now: float) -> dict[str, float]:
        """Channel -> when its message may go, by every rule that matches."""
        targets: dict[str, float] = {}
        duty = on_call(self._config, call.group, now)
        for rule in self._config.rules:
            if (rule.groups and call.group not in rule.groups) or event not in rule.events:
                continue
            chosen = list(rule.channels)
            if rule.oncall and duty is not None:
                # Whoever was told of the call hears the rest of it, after a handover too.
                told = [] if event == "open" else self._told_on_call(call)
                chosen += [c for c in [*told, *duty.channels] if c not in chosen]
            for channel in chosen:
                if call.severity not in rule.severities and (
                    event == "open" or not self._store.has_ops(call.id, OUTBOX_PREFIX + channel)
                ):
                    # Below the rule's severities, and nothing told before that this follows.
                    continue
                release = (
                    rule.quiet_hours.release_at(call.severity, now) if rule.quiet_hours else now
                )
                targets[channel] = min(targets.get(channel, release), release)
        if event == "resolve":
            # Whoever an escalation reached hears that it is over.
            for channel in self._told_by_escalation(call):
                targets[channel] = now
        return targets

    def _told_by_escalation(self, call: Call) -> list[str]:
        """The channels the group's escalation levels may reach that were told of this call."""
        levels = self._config.escalation.get(call.group, ())
        rota = self._config.rotas.get(call.group)
        names = [n for level in levels for n in level.people]
        if rota is not None and any(level.next_on_call for level in levels):
            names += [*rota.people, *(o.person for o in rota.overrides)]
        people = [self._config.people[n] for n in dict.fromkeys(names) if n in self._config.people]
        reach = [c for level in levels for c in level.channels]
        reach += [c for person in people for c in person.channels]
        return [c for c in dict.fromkeys(reach) if self._store.has_ops(call.id, OUTBOX_PREFIX + c)]

    def _told_on_call(self, call: Call) -> list[str]:
        """The channels of the people in the group's rota that were told of this call."""
        rota = self._config.rotas.get(call.group)
        if rota is None:
            return []
        names = dict.fromkeys([*rota.people, *(o.person for o in rota.overrides)])
        people = [self._config.people[name] for name in names if name in self._config.people]
        return [
            channel
            for person in people
            for channel in person.channels
            if self._store.has_ops(call.id, OUTBOX_PREFIX + channel)
        ]

    def _payload(
        self, call: Call, event: str, text: str, now: float, *, kind: str, was: str | None
    ) -> dict[str, Any]:
        return {
            "event": event,
            "kind": kind or event,
            "text": text,
            "at": now,
            "was": was,
            # Unique per notification and kept with it: the mail's Message-ID at every attempt.
            "key": uuid.uuid4().hex[:16],
            "ticket_sink": self._ticket_sinks.get(call.group),
            "oncall": duty.person if (duty := on_call(self._config, call.group, now)) else None,
            "storm": self._storms.payload(call),
            "call": {
                "id": call.id,
                "fingerprint": call.fingerprint,
                "host": call.host,
                "rule": call.rule,
                "labels": dict(call.labels),
                "group": call.group,
                "assign": call.assign,
                "severity": call.severity,
                "summary": call.summary,
                "description": call.description,
                "opened_at": call.opened_at,
            },
        }
