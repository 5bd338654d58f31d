"""Operators' silences: set, ended (both audited) and listed with the config's weekly windows.

Before a silence is saved, its reach can be previewed: the hosts and rules its globs match now,
and the share of the fleet's hosts that is. A silence over `silences.confirm_over` of the fleet
is saved only when the operator confirmed that share (`add_confirmed_silence`).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from collector.config import BUILTIN_RULES, SERVICE_RULE, CollectorConfig
from collector.errors import Rejection
from collector.evaluation.maintenance import MaintenanceCalendar, weekly_occurrence
from collector.store.protocols import Store
from collector.store.records import AuditEntry, Silence
from runwatch import units

log = logging.getLogger(__name__)

# A preview names at most this many hosts (the counts are always whole).
PREVIEW_HOSTS = 200
# The longest silence: ten years.
MAX_SILENCE_SECONDS = 10 * 366 * 86400.0


@dataclass(frozen=True, slots=True)
class SilenceReach:
    """What a silence's globs match now: hosts of the fleet, rules of the config."""

    host_pattern: str
    rule_pattern: str
    hosts: list[str]  # every matched host, by name
    fleet_size: int
    rules: list[str]  # every matched rule, by name
    confirm_over: float

    @property
    def share(self) -> float:
        """The share of the fleet's hosts the silence holds back (none when no rule matches)."""
        if not self.fleet_size or not self.rules:
            return 0.0
        return len(self.hosts) / self.fleet_size

    @property
    def needs_confirmation(self) -> bool:
        return bool(self.hosts and self.rules) and self.share > self.confirm_over

    def summary(self) -> str:
        """One line: `3 of 20 hosts (15.0%) and 2 rules`."""
        hosts = f"{len(self.hosts)} of {self.fleet_size} host{'s' if self.fleet_size != 1 else ''}"
        rules = f"{len(self.rules)} rule{'s' if len(self.rules) != 1 else ''}"
        return f"{hosts} ({units.percent(self.share)} of the fleet) and {rules}"

    def confirmation(self) -> str:
        """Why a second confirmation is asked."""
        return (
            f"This silence matches {self.summary()}: more than the "
            f"{units.percent(self.confirm_over)} of the fleet (silences.confirm_over) "
            "a silence may hold back without a second confirmation."
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host_pattern,
            "rule": self.rule_pattern,
            "host_count": len(self.hosts),
            "fleet_size": self.fleet_size,
            "share": self.share,
            "confirm_over": self.confirm_over,
            "needs_confirmation": self.needs_confirmation,
            "hosts": self.hosts[:PREVIEW_HOSTS],
            "hosts_not_listed": max(0, len(self.hosts) - PREVIEW_HOSTS),
            "rules": self.rules,
        }


def check_pattern(value: str, what: str) -> str:
    """A host or rule glob as given, stripped; a Rejection naming the field when it is empty."""
    value = value.strip()
    if not value:
        raise Rejection(
            422,
            "invalid",
            f"give the {what}s to silence: a name, or a glob such as "
            f"{'web*' if what == 'host' else 'filesystem_*'} (* is every {what})",
            what,
        )
    if len(value) > 255 or "\x00" in value:
        raise Rejection(422, "invalid", f"the {what} glob is too long or holds a NUL", what)
    return value


@dataclass(eq=False)
class Silences:
    """Maintenance windows operators set; the calendar follows each change at once."""

    config: CollectorConfig
    store: Store
    calendar: MaintenanceCalendar
    clock: Callable[[], float]
    # Evaluate now: a window that ended lets held-back calls open at once.
    tick: Callable[[], None]
    # The names of the fleet's hosts now (retired ones not among them).
    fleet_hosts: Callable[[], Collection[str]] = tuple

    def reach(self, host: str, rule: str) -> SilenceReach:
        """The hosts and rules a silence with these globs would match now."""
        # A service's own call follows the service, not a rule state: no silence reaches it.
        known_rules = sorted(
            {r.name for r in self.config.rules} | (set(BUILTIN_RULES) - {SERVICE_RULE})
        )
        return SilenceReach(
            host,
            rule,
            sorted(h for h in self.fleet_hosts() if fnmatch.fnmatchcase(h, host)),
            len(self.fleet_hosts()),
            [r for r in known_rules if fnmatch.fnmatchcase(r, rule)],
            self.config.silences.confirm_over,
        )

    def add_confirmed_silence(
        self,
        operator: str,
        *,
        host: str,
        rule: str,
        duration: float,
        reason: str,
        confirmed: bool,
        starts_at: float | None = None,
        via: str = "api",
    ) -> Silence:
        """add_silence for a person: empty globs are refused, and a silence over
        `silences.confirm_over` of the fleet needs `confirmed` (409 `confirm` otherwise)."""
        host, rule = check_pattern(host, "host"), check_pattern(rule, "rule")
        reach = self.reach(host, rule)
        if reach.needs_confirmation and not confirmed:
            raise Rejection(409, "confirm", reach.confirmation(), "confirm_fleet_share")
        return self.add_silence(
            operator,
            host=host,
            rule=rule,
            duration=duration,
            reason=reason,
            starts_at=starts_at,
            via=via,
        )

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
        settle: bool = True,
    ) -> Silence:
        """Hold back calls for matching hosts and rules for `duration` seconds from the start.
        With `settle` false the calendar follows only at the next `settle()` (many at once)."""
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
        if settle:
            self._silences_changed(now)
        return silence

    def settle(self) -> None:
        """Let the calendar follow silences added with `settle=False`, and evaluate."""
        self._silences_changed(self.clock())

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
