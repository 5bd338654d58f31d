"""A person's rate limit: at most `messages` messages per `per`; the rest wait in a digest.

A channel that belongs to exactly one person in `notifications.people` counts against that
person, whatever other channels they have; any other channel (a team's) counts on its own.

The count is in the store (`notify_sent`), so replicas sharing it count against one limit and
a restart goes on where it stood. A notification past the limit is kept in the store
(`notify_folded`) and one digest per channel waits in the outbox until the window has room; it
takes in everything held back until the moment it is first sent (`seal_digest`), so a retry
after a crash sends the same digest with the same Message-ID. While a digest waits, every new
notification for its channel joins it, so nothing overtakes what was held back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from collector.incidents.calls import Call
from collector.notify.ack import recipients
from collector.notify.config import OUTBOX_PREFIX, NotifyConfig, RateLimit
from collector.notify.message import subject
from collector.store.digests import DIGEST_OP
from collector.store.protocols import DigestStore
from collector.store.records import OutboxOp

log = logging.getLogger(__name__)


def folded_line(payload: dict[str, Any]) -> str:
    """How a notification is listed in a digest: its subject, without the reply's `Re: `."""
    call = payload["call"]
    if payload.get("storm") and payload["event"] != "resolve":
        return f"[runwatch #{call['id']}] Storm in {call['group']}: new problems held back"
    return subject(payload).removeprefix("Re: ")


def count_keys(config: NotifyConfig) -> dict[str, str]:
    """Outbox sink -> what its messages count against: `person:<name>` for a channel of
    exactly one person; a sink not named here counts on its own."""
    return {
        OUTBOX_PREFIX + channel: f"person:{name}" for channel, name in recipients(config).items()
    }


class RateLimiter:
    """Decide, per message, whether it goes on its own or waits in its channel's digest."""

    def __init__(
        self,
        limit: RateLimit | None,
        store: DigestStore,
        on_enqueue: Callable[[], None],
        keys: dict[str, str] | None = None,
    ) -> None:
        self._limit = limit
        self._store = store
        self._on_enqueue = on_enqueue
        self._keys = keys or {}

    def admit(self, sink: str, call: Call, payload: dict[str, Any], at: float, now: float) -> bool:
        """Whether a message to `sink` that may go at `at` goes on its own (and is counted);
        if not, it is kept for the channel's digest, which is queued if none waits."""
        if self._limit is None:
            return True
        window, limit = float(self._limit.per), self._limit.messages
        waiting = self._store.pending_digest(sink)
        if waiting is None:
            key = self._keys.get(sink, sink)
            free_at = self._store.claim_notify_slot(key, at, window, limit)
            if free_at <= at:
                return True
        self._store.fold_notification(sink, call.id, None, folded_line(payload), now)
        if waiting is None:
            digest = {
                "event": "digest",
                "kind": "rate",
                "key": uuid.uuid4().hex[:16],
                "at": now,
                "messages": limit,
                "per": window,
            }
            self._store.enqueue(
                OutboxOp(0, call.id, sink, DIGEST_OP, digest, now, next_attempt_at=free_at)
            )
            self._on_enqueue()
            log.info(
                "%s: rate limit reached (%d per %.0f s): messages wait in a digest until %.0f",
                sink,
                limit,
                window,
                free_at,
            )
        return False
