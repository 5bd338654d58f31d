"""One digest per call storm: people hear of storm control's umbrella call, not of each host.

The umbrella's open message is the storm's digest (its list is read when it is first sent), and
the thread every later message about the storm answers. When the umbrella opens, the messages
about the same group's calls that have not gone yet (the calls opened just before the storm
tripped, held by `notifications.storm.wait`) are taken into the digest instead; their calls'
later opens, severity changes and resolutions are not sent on their own either (the storm's
thread tells of them). Changes to the storm send one update at most every
`notifications.storm.update_every`; its end sends the resolution, which replaces an update that
has not gone yet.
"""

from __future__ import annotations

import logging
from typing import Any

from collector.config import STORM_RULE
from collector.incidents.calls import Call
from collector.notify.config import StormDigest
from collector.notify.ratelimit import folded_line
from collector.store.protocols import DigestStore

log = logging.getLogger(__name__)

# The events of a call taken into a storm's digest that still go on their own.
_STILL_SENT = ("escalation",)


class StormDigests:
    """The notification side of storm control's umbrella calls."""

    def __init__(self, config: StormDigest, store: DigestStore) -> None:
        self._config = config
        self._store = store

    @staticmethod
    def is_umbrella(call: Call) -> bool:
        return call.rule == STORM_RULE

    def taken_in(self, call: Call, event: str, sink: str) -> bool:
        """Whether this message about `call` stays unsent: a storm's digest took the call in.

        Once the storm is over, the call's reopening is news of its own: it goes, and so does
        what follows it."""
        if event in _STILL_SENT or self.is_umbrella(call):
            return False
        umbrella = self._store.folded_into(call.id, sink)
        if umbrella is None:
            return False
        if event == "open" and self._store.call_rule(umbrella) != (STORM_RULE, "open"):
            self._store.unfold(call.id, sink)
            return False
        return True

    def release(self, call: Call, event: str, at: float, now: float) -> float:
        """When a message may go: an open waits `wait`, so a storm can take it in."""
        if event == "open" and float(self._config.wait) > 0:
            return max(at, now + float(self._config.wait))
        return at

    def payload(self, call: Call) -> dict[str, Any] | None:
        """What an umbrella's message carries besides the call: read when it is sent."""
        if not self.is_umbrella(call):
            return None
        return {"umbrella": call.id, "listed": self._config.max_listed}

    def opened(self, umbrella: Call, sinks: list[str], now: float) -> None:
        """Take the unsent messages about the umbrella group's calls into the storm's digest."""
        for sink in sinks:
            ops = self._store.unsent_notifications(sink, umbrella.group, STORM_RULE)
            opening = {op.call_id for op in ops if op.payload.get("event") == "open"}
            taken = 0
            for op in ops:
                if op.call_id not in opening:
                    continue
                why = f"taken into the storm digest of call {umbrella.id}"
                if self._store.supersede_op(op.id, now, why) and op.payload["event"] == "open":
                    self._store.fold_notification(
                        sink, op.call_id, umbrella.id, folded_line(op.payload), now
                    )
                    taken += 1
            if taken:
                log.info(
                    "%s: %d call(s) opened before the storm go in the digest of call %d",
                    sink,
                    taken,
                    umbrella.id,
                )

    def resolving(self, umbrella: Call, sink: str, now: float) -> None:
        """The storm is over: an update that has not gone yet is replaced by the resolution."""
        for op in self._store.unsent_notifications(sink, umbrella.group, ""):
            if op.call_id == umbrella.id and op.payload.get("event") == "update":
                self._store.supersede_op(op.id, now, "replaced by the storm's resolution")

    def update_at(self, umbrella: Call, sink: str, now: float) -> float | None:
        """When the storm's next update to `sink` goes, or None: the channel was never told
        of the storm, or a message about it has still to go (it will read the list then)."""
        if not self._store.has_ops(umbrella.id, sink):
            return None
        if self._store.has_undelivered(umbrella.id, sink):
            return None
        last = self._store.last_planned_at(umbrella.id, sink) or now
        return max(now, last + float(self._config.update_every))
