"""Operators' silences: set, ended (both audited) and listed with the config's weekly windows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collector.config import CollectorConfig
from collector.evaluation.maintenance import MaintenanceCalendar, weekly_occurrence
from collector.store.protocols import Store
from collector.store.records import AuditEntry, Silence
from runwatch import units

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Silences:
    """Maintenance windows operators set; the calendar follows each change at once."""

    config: CollectorConfig
    store: Store
    calendar: MaintenanceCalendar
    clock: Callable[[], float]
    # Evaluate now: a window that ended lets held-back calls open at once.
    tick: Callable[[], None]

    def add_silence(
        self,
        operator: str,
        *,
        host: str,
        rule: str,
        duration: float,
        reason: str,
        starts_at: float | None = None,
        via: str = "api",
    ) -> Silence:
        """Hold back calls for matching hosts and rules for `duration` seconds from the start."""
        now = self.clock()
        start = now if starts_at is None else starts_at
        silence = Silence(0, host, rule, start, start + duration, reason, operator, now)
        with self.store.transaction():
            silence.id = self.store.add_silence(silence)
            self.store.add_audit(
                AuditEntry(
                    0,
                    now,
                    operator,
                    "silence.add",
                    f"silence {silence.id}",
                    f"host {host} rule {rule} until {units.timestamp(silence.ends_at)}: {reason}",
                    via,
                )
            )
        log.info(
            "operator %s silenced host %r rule %r until %s: %s",
            operator,
            host,
            rule,
            units.timestamp(silence.ends_at),
            reason,
        )
        self._silences_changed(now)
        return silence

    def end_silence(self, silence_id: int, operator: str, via: str = "api") -> Silence | None:
        """End a silence now; the next evaluation opens calls for problems still there."""
        now = self.clock()
        with self.store.transaction():
            ended = self.store.end_silence(silence_id, now, operator)
            if ended is not None:
                self.store.add_audit(
                    AuditEntry(
                        0,
                        now,
                        operator,
                        "silence.end",
                        f"silence {silence_id}",
                        f"host {ended.host_pattern} rule {ended.rule_pattern}",
                        via,
                    )
                )
        if ended is not None:
            log.info(
                "operator %s ended silence %d (host %r rule %r)",
                operator,
                silence_id,
                ended.host_pattern,
                ended.rule_pattern,
            )
            self._silences_changed(now)
        return ended

    def _silences_changed(self, now: float) -> None:
        self.calendar.reload(self.store, now)
        self.tick()  # a window that ended lets held-back calls open at once

    def silences(self, include_ended: bool = False) -> list[dict[str, Any]]:
        """Operators' silences (current and future, or all) and the weekly windows."""
        now = self.clock()
        out: list[dict[str, Any]] = [
            {
                "id": s.id,
                "source": "silence",
                "host": s.host_pattern,
                "rule": s.rule_pattern,
                "starts_at": s.starts_at,
                "ends_at": s.ends_at,
                "reason": s.reason,
                "created_by": s.created_by,
                "created_at": s.created_at,
                "ended_by": s.ended_by,
                "active": s.active(now),
            }
            for s in self.store.list_silences(None if include_ended else now)
        ]
        for window in self.config.maintenance:
            span = weekly_occurrence(window, now)
            out.append(
                {
                    "id": None,
                    "source": "config",
                    "name": window.name,
                    "host": window.hosts,
                    "rule": window.rules,
                    "starts_at": span[0] if span else None,
                    "ends_at": span[1] if span else None,
                    "reason": window.reason,
                    "created_by": "config",
                    "active": span is not None,
                    "weekly": [
                        {"days": list(w.days), "start": w.start, "duration": float(w.duration)}
                        for w in window.weekly
                    ],
                    "timezone": window.timezone,
                }
            )
        return out
