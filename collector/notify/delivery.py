"""Deliver one queued notification: render it with the links known now, send it on its channel.

The outbox worker calls `Notifications.deliver` for entries whose sink is `notify:<channel>`;
a SinkError is retried or dead-lettered by the worker as for a ticket.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from collector.notify.ack import AckLinks
from collector.notify.config import OUTBOX_PREFIX, EmailChannelConfig, NotifyConfig
from collector.notify.message import Message, render
from collector.sinks.contract import SinkError
from collector.store.protocols import OutboxStore
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
    ) -> None:
        self._channels = channels
        self._console = console_url.rstrip("/") if console_url else ""
        self._ack_links = ack_links

    def deliver(self, op: OutboxOp, store: OutboxStore) -> None:
        name = op.sink.removeprefix(OUTBOX_PREFIX)
        channel = self._channels.get(name)
        if channel is None:
            raise SinkError(
                f"no notification channel named {name!r} is configured", retryable=False
            )
        channel.send(self.message(op, store))

    def message(self, op: OutboxOp, store: OutboxStore) -> Message:
        payload = op.payload
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
