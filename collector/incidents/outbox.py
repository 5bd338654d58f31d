"""Deliver the outbox to help desks: in order per call, idempotent, retried, never dropped."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from collector.notify.config import OUTBOX_PREFIX
from collector.notify.delivery import Notifications
from collector.sinks.contract import NewTicket, Sink, SinkError, TicketRef, keeps_description
from collector.store.protocols import DigestStore
from collector.store.records import CallLink, OutboxOp

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; Retry-After wins when it is longer."""

    base_seconds: float = 2.0
    max_seconds: float = 600.0

    def delay(self, attempts: int, retry_after: float | None) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** min(attempts, 20))
        delay = random.uniform(self.base_seconds, max(self.base_seconds, ceiling))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_seconds))
        return delay


class DeliveryMetrics:
    """What the worker reports; the default does nothing (tests, tools)."""

    def delivered(self, sink: str, op: str, result: str, latency: float | None) -> None:
        pass

    def sink_error(self, sink: str, operation: str) -> None:
        """A request to a help desk failed (`operation`: an outbox op, or `status`)."""


class OutboxWorker:
    """Deliver due operations, one call's operations strictly in order.

    Runs in its own thread with its own store connection. An operation that fails in a way
    that may pass (timeout, 429, 5xx) is retried with backoff; any other failure makes it a
    dead letter, which holds back the later operations of the same call until someone retries
    it (`runwatch outbox retry`).
    """

    def __init__(
        self,
        store: DigestStore,
        sinks: Mapping[str, Sink],
        *,
        clock: Callable[[], float] = time.time,
        policy: RetryPolicy | None = None,
        metrics: DeliveryMetrics | None = None,
        batch: int = 50,
        sync: Callable[[float], int] | None = None,
        sync_interval: float = 60.0,
        notifications: Notifications | None = None,
    ) -> None:
        self._store = store
        self._notifications = notifications
        self._sinks = sinks
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._metrics = metrics or DeliveryMetrics()
        self._batch = batch
        self._sync = sync
        self._sync_interval = sync_interval
        self._next_sync = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="outbox", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New operations were written: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
                if self._sync is not None and self._clock() >= self._next_sync:
                    self._next_sync = self._clock() + self._sync_interval
                    if self._sync(self._clock()):
                        continue  # it queued operations: deliver them now
            except Exception:
                log.exception("outbox pass failed; retrying in 5 s")
                self._stop.wait(5)
            next_at = self._store.next_due_at()
            wait = 1.0 if next_at is None else min(1.0, max(0.05, next_at - self._clock()))
            self._wake.wait(wait)
            self._wake.clear()

    def deliver_due(self) -> int:
        """Deliver everything that is due now; return how many operations were delivered.

        Each pass sees only the first operation of each call; the next becomes due once the
        one before it is delivered, so passes repeat while they make progress.
        """
        delivered = 0
        failed: set[int] = set()
        while not self._stop.is_set():
            progress = 0
            for op in self._store.due_ops(self._clock(), self._batch):
                if op.id in failed:
                    continue
                if self._deliver(op):
                    progress += 1
                else:
                    failed.add(op.id)
            delivered += progress
            if not progress:
                return delivered
        return delivered

    def _deliver(self, op: OutboxOp) -> bool:
        if op.sink.startswith(OUTBOX_PREFIX):
            return self._notify(op)
        sink = self._sinks.get(op.sink)
        if sink is None:
            with self._store.transaction():
                self._store.mark_dead(op.id, f"no sink named {op.sink!r} is configured")
            log.error(
                "outbox op %d (%s for call %d): no sink %r configured; dead letter",
                op.id,
                op.op,
                op.call_id,
                op.sink,
            )
            self._metrics.delivered(op.sink, op.op, "dead", None)
            return False
        try:
            link = self._apply(sink, op)
        except SinkError as exc:
            return self._failed(op, exc)
        now = self._clock()
        with self._store.transaction():
            if link is not None:
                self._store.save_link(link)
            self._store.mark_done(op.id, now)
        self._metrics.delivered(op.sink, op.op, "ok", now - op.created_at)
        log.info("delivered %s for call %d to %s", op.op, op.call_id, op.sink)
        return True

    def _notify(self, op: OutboxOp) -> bool:
        """Send one notification to a person's channel (collector/notify/)."""
        try:
            if self._notifications is None:
                raise SinkError("no notification channels are configured", retryable=False)
            self._notifications.deliver(op, self._store)
        except SinkError as exc:
            return self._failed(op, exc)
        now = self._clock()
        with self._store.transaction():
            self._store.mark_done(op.id, now)
        self._metrics.delivered(op.sink, op.op, "ok", now - op.created_at)
        log.info("notified %s of call %d on %s", op.payload.get("event"), op.call_id, op.sink)
        return True

    def _apply(self, sink: Sink, op: OutboxOp) -> CallLink | None:
        link = self._store.get_link(op.call_id, op.sink)
        payload = op.payload
        if op.op == "open":
            if link is not None:
                return None  # delivered before a crash, recorded after: nothing to do
            ticket = NewTicket(
                **payload["ticket"], idempotency_key=f"{payload['ticket']['fingerprint']}-{op.id}"
            )
            # Idempotent create: a ticket made before a crash carries the fingerprint.
            ref = sink.find(ticket.fingerprint) or sink.open(ticket)
            return CallLink(op.call_id, op.sink, ref.remote_id, ref.url, "new", self._clock())
        if link is None:
            raise SinkError(
                f"call {op.call_id} has no ticket in {op.sink} to {op.op}", retryable=False
            )
        ref = TicketRef(link.remote_id, link.url)
        if op.op == "comment":
            sink.comment(ref, payload["text"])
        elif op.op == "update":
            change = {k: payload[k] for k in ("priority", "summary", "text")}
            described = _described(sink, payload)
            if described:
                # `brief`: the note to send when the description carries the rest (a storm
                # umbrella's list, which would otherwise be in the ticket twice).
                change["text"] = payload.get("brief", change["text"])
            sink.update(ref, **change, **described)
        elif op.op == "resolve":
            close = bool(payload.get("close"))
            sink.resolve(ref, payload["text"], close=close, **_described(sink, payload))
            link.remote_state = "closed" if close else "resolved"
            return link
        elif op.op == "reopen":
            sink.reopen(ref, payload["text"], **_described(sink, payload))
            link.remote_state = "open"
            return link
        else:
            raise SinkError(f"unknown outbox operation {op.op!r}", retryable=False)
        return None

    def _failed(self, op: OutboxOp, exc: SinkError) -> bool:
        message = str(exc)
        self._metrics.sink_error(op.sink, op.op)
        with self._store.transaction():
            if exc.retryable:
                delay = self._policy.delay(op.attempts, exc.retry_after)
                self._store.mark_retry(op.id, self._clock() + delay, message)
            else:
                self._store.mark_dead(op.id, message)
        if exc.retryable:
            log.warning(
                "outbox op %d (%s for call %d) failed, retry %d in %.0fs: %s",
                op.id,
                op.op,
                op.call_id,
                op.attempts + 1,
                delay,
                message,
            )
            self._metrics.delivered(op.sink, op.op, "retry", None)
        else:
            log.error(
                "outbox op %d (%s for call %d) refused by %s, now a dead letter "
                "(runwatch outbox retry %d once fixed): %s",
                op.id,
                op.op,
                op.call_id,
                op.sink,
                op.id,
                message,
            )
            self._metrics.delivered(op.sink, op.op, "dead", None)
        return False


def _described(sink: Sink, payload: dict[str, Any]) -> dict[str, str]:
    """The call's current description, for a sink that keeps it (Redmine, RT); else nothing."""
    if keeps_description(sink) and payload.get("description"):
        return {"description": str(payload["description"])}
    return {}
