"""Operators' messages on the status page ("we are on it, expected back by 14:00"): posted,
changed and ended by operators, each change in the audit log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collector.store.protocols import Store
from collector.store.records import AuditEntry, StatusMessage

log = logging.getLogger(__name__)


class UnknownService(ValueError):
    """A message about a service the config does not have."""


@dataclass(eq=False)
class StatusMessages:
    store: Store
    services: frozenset[str]  # the configured services
    clock: Callable[[], float]
    changed: Callable[[], None]  # the status page shows it at once (its cache is dropped)

    def post(self, operator: str, text: str, service: str = "", via: str = "api") -> StatusMessage:
        """A new message about `service` ("" for every service)."""
        if service and service not in self.services:
            known = ", ".join(sorted(self.services)) or "none"
            raise UnknownService(f"unknown service {service!r} (services: {known})")
        now = self.clock()
        message = StatusMessage(0, service, text, operator, now, now, operator)
        with self.store.transaction():
            message.id = self.store.add_status_message(message)
            self._audit(now, operator, "status.post", message, text, via=via)
        log.info("operator %s posted status message %d: %s", operator, message.id, text)
        self.changed()
        return message

    def update(
        self, message_id: int, operator: str, text: str, via: str = "api"
    ) -> StatusMessage | None:
        """New text for a message that has not ended; None if there is none."""
        return self._change(message_id, operator, text, via)

    def end(self, message_id: int, operator: str, via: str = "api") -> StatusMessage | None:
        """Take a message off the page; None if there is none that has not ended."""
        return self._change(message_id, operator, None, via)

    def _change(
        self, message_id: int, operator: str, text: str | None, via: str
    ) -> StatusMessage | None:
        now = self.clock()
        with self.store.transaction():
            message = self.store.change_status_message(message_id, text, operator, now)
            if message is not None:
                action = "status.end" if text is None else "status.update"
                self._audit(now, operator, action, message, message.text, via=via)
        if message is not None:
            log.info("operator %s changed status message %d", operator, message_id)
            self.changed()
        return message

    def _audit(
        self, now: float, operator: str, action: str, message: StatusMessage, text: str, *, via: str
    ) -> None:
        about = message.service or "every service"
        self.store.add_audit(
            AuditEntry(
                0, now, operator, action, f"status message {message.id}", f"{about}: {text}", via
            )
        )

    def listed(self, include_ended: bool = False) -> list[dict[str, Any]]:
        return [message_json(m) for m in self.store.status_messages(include_ended)]


def message_json(message: StatusMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "service": message.service or None,
        "text": message.text,
        "posted_by": message.posted_by,
        "posted_at": message.posted_at,
        "updated_at": message.updated_at,
        "updated_by": message.updated_by,
        "ended_at": message.ended_at,
        "ended_by": message.ended_by,
    }
