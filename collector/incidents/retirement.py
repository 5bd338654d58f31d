"""A host's end of life: retired by an operator (its open calls resolved with who and why, its
series gone from the view and /metrics, its reports refused), and brought back by one."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from collector.errors import Rejection
from collector.incidents.calls import Call, fingerprint
from collector.incidents.manager import IncidentManager
from collector.store.protocols import Store
from collector.store.records import AuditEntry, HostRetirement
from collector.view.fleet import Fleet
from collector.view.replica import ReplicaSync
from runwatch import units

log = logging.getLogger(__name__)


def refusal(retirement: HostRetirement) -> Rejection:
    """What a retired host's agent is told when it reports (409: it stops sending it)."""
    host = retirement.host
    why = f" ({retirement.reason})" if retirement.reason else ""
    return Rejection(
        409,
        "retired",
        f"host {host} was retired on {units.timestamp(retirement.retired_at)} by "
        f"{retirement.retired_by}{why}; `runwatch host restore {host}` or a new deploy "
        "brings it back",
        "host",
    )


def retired_note(retirement: HostRetirement) -> str:
    """The note that resolves a retired host's calls."""
    why = f": {retirement.reason}" if retirement.reason else "."
    return f"Resolved: host {retirement.host} was retired by {retirement.retired_by}{why}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRetirements:
    """Retire and restore hosts, each change audited, in one transaction with its calls."""

    store: Store
    fleet: Fleet
    replica: ReplicaSync
    incidents: IncidentManager
    clock: Callable[[], float]
    forget_metrics: Callable[[str], None] = lambda host: None

    def retire(self, host: str, actor: str, reason: str = "", via: str = "api") -> HostRetirement:
        """Retire a host: resolve its open calls with a note, drop its series and states, and
        refuse its reports from now on. 404 for a host never heard of, 409 if retired."""
        reason = reason.strip()[:500]
        known = self.fleet.retired.get(host) or self.store.retirement_of(host)
        if known is not None:
            raise Rejection(
                409,
                "conflict",
                f"host {host} is already retired (on {units.timestamp(known.retired_at)} by "
                f"{known.retired_by})",
            )
        now = self.clock()
        calls: list[Call] = []
        with self.replica.hold([host], now) as held:
            retirement = self.store.retire_host(host, now, actor, reason)
            if retirement is not None:
                note = retired_note(retirement)
                calls = self.store.open_calls_of(host)
                for call in calls:
                    self.incidents.resolve_retired(call, note, now)
                self._leave_umbrellas(host, now)
                self.fleet.retire(retirement)
                for call in calls:
                    # Other hosts' states in these calls (a child silent behind its parent).
                    self.store.save_rule_states(self.fleet.release_call(call.id))
                self.store.add_audit(
                    AuditEntry(0, now, actor, "host.retire", f"host {host}", reason, via)
                )
                held.changed([host])
        if retirement is None:
            raise Rejection(404, "not_found", f"no host {host} has reported")
        self.forget_metrics(host)
        log.info(
            "%s retired host %s (%s); %d open call(s) resolved",
            actor,
            host,
            reason or "no reason given",
            len(calls),
        )
        return retirement

    def _leave_umbrellas(self, host: str, now: float) -> None:
        """Take the host's problems held back in a storm off their umbrella calls."""
        own = {call.id for call in self.store.open_calls_of(host)}
        for rule, _, key in self.fleet.states.keys_of(host):
            call_id = self.fleet.states[(rule, host, key)].call_id
            if call_id is not None and call_id not in own:
                member = fingerprint(host, rule, json.loads(key))
                self.incidents.drop_retired_member(call_id, member, now)

    def restore(self, host: str, actor: str, reason: str = "", via: str = "api") -> HostRetirement:
        """Bring a retired host back: its reports are taken again, and it has its staleness
        limit to send one. Returns the retirement that ended; 409 if it is not retired."""
        reason = reason.strip()[:500]
        if self.store.retirement_of(host) is None:
            self.fleet.retired.pop(host, None)
            raise Rejection(409, "conflict", f"host {host} is not retired")
        now = self.clock()
        with self.replica.hold([host], now) as held:
            ended = self.store.restore_host(host, now)
            if ended is not None and ended.record is not None:
                self.fleet.restore(replace(ended.record, last_report_at=now))
                self.store.add_audit(
                    AuditEntry(0, now, actor, "host.restore", f"host {host}", reason, via)
                )
                held.changed([host])
        if ended is None:
            raise Rejection(409, "conflict", f"host {host} is not retired")
        log.info("%s restored host %s", actor, host)
        return ended

    def retirements(self) -> list[HostRetirement]:
        """Every retired host, by name (the reports take each one's `retired_at`)."""
        return self.store.retirements()
