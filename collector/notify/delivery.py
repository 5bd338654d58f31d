"""Deliver one queued notification: render it with the links known now, send it on its channel.

The outbox worker calls `Notifications.deliver` for entries whose sink is `notify:<channel>`;
a SinkError is retried or dead-lettered by the worker as for a ticket.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from collector.incidents.storm import RECOVERED
from collector.notify.ack import AckLinks
from collector.notify.config import OUTBOX_PREFIX, EmailChannelConfig, NotifyConfig
from collector.notify.message import Message, render, render_digest
from collector.sinks.contract import SinkError
from collector.store.digests import DIGEST_OP
from collector.store.protocols import DigestStore
from collector.store.records import OutboxOp


class Channel(Protocol):
    name: str

    def send(self, message: Message) -> None:
        """Send, or raise SinkError."""
        ...


def build_channels(config: NotifyConfig) -> dict[str, Channel]:
    """An adapter per configured channel (apprise loads only when one uses it)."""
    channels: dict[str, Channel] = {}
    for name, channel in config.channels.items():
        if isinstance(channel, EmailChannelConfig):
            from collector.notify.mail import EmailChannel

            channels[name] = EmailChannel(name, channel)
        else:
            from collector.notify.chat import AppriseChannel

            channels[name] = AppriseChannel(name, channel)
    return channels


class Notifications:
    """The channels, and how a queued notification becomes a message on one of them."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        *,
        console_url: str | None = None,
        ack_links: AckLinks | None = None,
        count_keys: Mapping[str, str] | None = None,
    ) -> None:
        self._channels = channels
        # What a sent digest counts against in the rate limit (notify/ratelimit.py).
        self._count_keys = dict(count_keys or {})
        self._console = console_url.rstrip("/") if console_url else ""
        self._ack_links = ack_links

    def deliver(self, op: OutboxOp, store: DigestStore) -> None:
        name = op.sink.removeprefix(OUTBOX_PREFIX)
        channel = self._channels.get(name)
        if channel is None:
            raise SinkError(
                f"no notification channel named {name!r} is configured", retryable=False
            )
        channel.send(self.message(op, store))

    def message(self, op: OutboxOp, store: DigestStore) -> Message:
        payload = self._sealed(op, store)
        if op.op == DIGEST_OP:
            return render_digest(
                payload, console_url=f"{self._console}/calls" if self._console else ""
            )
        call_id = int(payload["call"]["id"])
        link = (
            store.get_link(call_id, payload["ticket_sink"]) if payload.get("ticket_sink") else None
        )
        return render(
            payload,
            console_url=f"{self._console}/calls/{call_id}" if self._console else "",
            ticket_url=(link.url or "") if link else "",
            ticket_id=link.remote_id if link else "",
            ack_url=(
                self._ack_links.url_for(payload, op.sink.removeprefix(OUTBOX_PREFIX))
                if self._ack_links
                else ""
            ),
        )

    def _sealed(self, op: OutboxOp, store: DigestStore) -> dict[str, Any]:
        """The payload with what a digest carries, read from the store when it is first sent
        and kept with it: every retry sends the same text under the same Message-ID."""
        payload = op.payload
        storm = payload.get("storm")
        if op.op != DIGEST_OP and not (storm and "total" not in storm):
            return payload
        if op.op == DIGEST_OP and "lines" in payload:
            return payload
        payload = dict(payload)
        with store.transaction():
            if op.op == DIGEST_OP:
                # It goes when the window has room again: it takes that room.
                sealed_at = max(op.created_at, op.next_attempt_at)
                payload["lines"] = store.seal_digest(op.id, op.sink)
                payload["sealed_at"] = sealed_at
                store.count_notify_sent(self._count_keys.get(op.sink, op.sink), sealed_at)
            else:
                assert storm is not None
                listed = int(storm["listed"])
                total, recovered, shown = store.storm_list(
                    int(storm["umbrella"]), listed, RECOVERED
                )
                folded_total, folded_resolved, folded = store.storm_folded(
                    int(storm["umbrella"]), op.sink, listed
                )
                payload["storm"] = {
                    **storm,
                    "total": total,
                    "recovered": recovered,
                    "shown": shown,
                    "folded_total": folded_total,
                    "folded_resolved": folded_resolved,
                    "folded": folded,
                }
            store.set_payload(op.id, payload)
        return payload
