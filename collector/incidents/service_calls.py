"""Service-level calls: while a service is out (or degraded, as its `call` says), one call for
its owner group, in the users' words ("Payroll: outage"), that names the calls of its causes.

- The call and the calls of its causes are linked both ways (in the store, on their console
  pages and in their tickets: each cause's call gets a comment naming the service call).
- At each evaluation tick it follows the service: a change of state changes its severity, a
  change of causes rewrites its description and tells the help desk; it resolves when the
  service is operational again (the owner group's `on_recovery` applies, as to any call).
- A service in maintenance (every problem a window covers) opens none.
- Exactly one per outage: its key is the fingerprint of ("*", SERVICE_RULE, {"service": name}),
  of which the register keeps at most one open call (a unique index), and only the replica
  holding the evaluation lead follows services (collector/evaluation/tick.py). So a restart or
  a second replica finds the call in the store and carries it on; a recurrence within the
  group's `reopen_within` reopens it.
- It does not count against storm control: there is at most one per service, and in a storm
  it is what the users' side needs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from collector.config import SERVICE_RULE, GroupConfig
from collector.incidents.calls import PRIORITY, Call, CallEvent, fingerprint
from collector.incidents.templates import CallTemplates
from collector.services.model import Service
from collector.services.state import ServiceState, ServiceStatus
from collector.store.protocols import Store
from collector.store.records import OutboxOp
from runwatch import units

if TYPE_CHECKING:
    from collector.incidents.manager import CallCounters, CallTimings

log = logging.getLogger(__name__)

# The state from which a service's `call` setting opens a call.
LEVELS = {"outage": ServiceState.OUTAGE, "degraded": ServiceState.DEGRADED}
# A service call's severity by the service's state (maintenance keeps the one it had).
SEVERITY = {ServiceState.OUTAGE: "CRITICAL", ServiceState.DEGRADED: "WARNING"}
# The causes named in the first line (the rest are in the description), and in all.
_CAUSES_IN_LINE = 10
_CAUSES_LISTED = 50

# (host, rule, labels key) -> the id of the call open for that rule state, if any.
CallOf = Callable[[str, str, str], int | None]


def service_fingerprint(service: str) -> str:
    """The key of a service's own call."""
    return fingerprint("*", SERVICE_RULE, {"service": service})


@dataclass(frozen=True, slots=True)
class Cause:
    """Something that bears on a service's state: a rule state on a member, or a service."""

    text: str  # "db01 filesystem_full {mountpoint=/} CRITICAL", "service Database: outage"
    call_id: int | None  # its call (a rule state's, or that service's own)

    @property
    def named(self) -> str:
        return f"{self.text} (call #{self.call_id})" if self.call_id else self.text


def causes(
    status: ServiceStatus,
    titles: Mapping[str, str],
    call_of: CallOf,
    service_calls: Mapping[str, int],
) -> list[Cause]:
    """What makes a service less than operational, each once, in the order of its components
    and then its dependencies."""
    found: dict[str, Cause] = {}

    def add(text: str, call_id: int | None) -> None:
        found.setdefault(text, Cause(text, call_id))

    for part in status.components:
        other = part.component.other
        if other is not None:
            if part.verdict.state is not ServiceState.OPERATIONAL:
                add(f"service {titles[other]}: {part.verdict.state.word}", service_calls.get(other))
            continue
        if part.total == 0:
            add(f"{part.component.title}: no host is a member", None)
        for host in sorted(part.members):
            for fact in part.members[host].problems:
                labels = json.loads(fact.labels_key)
                where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
                text = f"{fact.host} {fact.rule}{f' {{{where}}}' if where else ''}"
                text += f" {fact.severity.name}{' (in a window)' if fact.planned else ''}"
                add(text, call_of(fact.host, fact.rule, fact.labels_key))
    for name, state in status.dependencies:
        if state is not ServiceState.OPERATIONAL:
            add(f"service {titles[name]}: {state.word}", service_calls.get(name))
    return list(found.values())


def headline(title: str, state: ServiceState, found: Sequence[Cause]) -> str:
    """The first line of a service call's texts: "Payroll: outage — caused by: ..."."""
    if not found:
        return f"{title}: {state.word}"
    named = ", ".join(c.named for c in found[:_CAUSES_IN_LINE])
    more = len(found) - _CAUSES_IN_LINE
    tail = f", and {more} more" if more > 0 else ""
    return f"{title}: {state.word} — caused by: {named}{tail}"


@dataclass(frozen=True, slots=True)
class ServiceNow:
    """A service as this tick found it."""

    service: Service
    state: ServiceState
    causes: list[Cause]
    since: float  # when it entered this state

    @property
    def headline(self) -> str:
        return headline(self.service.title, self.state, self.causes)


class ServiceLevelCalls:
    """The service calls' part of the incident manager (which supplies what is declared here,
    and the call history through `_event` and `_ticket`)."""

    _store: Store
    _groups: dict[str, GroupConfig]
    _external: Mapping[str, Callable[[str], str]]
    _on_enqueue: Callable[[], None]
    _templates: CallTemplates
    _timings: CallTimings
    counters: CallCounters

    def _event(
        self,
        call: Call,
        kind: str,
        text: str,
        now: float,
        payload: dict[str, Any] | None = None,
        *,
        was: str | None = None,
    ) -> None:
        raise NotImplementedError

    def _ticket(self, call: Call) -> dict[str, Any]:
        raise NotImplementedError

    def follow_services(
        self,
        services: Sequence[Service],
        statuses: Mapping[str, ServiceStatus],
        since: Mapping[str, float],
        call_of: CallOf,
        now: float,
    ) -> None:
        """Open, bring up to date or resolve each service's own call from its status now (the
        services in model order: each after those it rests on). Call inside a transaction."""
        open_calls = {
            c.fingerprint: c for c in self._store.open_calls_of("*") if c.rule == SERVICE_RULE
        }
        titles = {s.name: s.title for s in services}
        service_calls: dict[str, int] = {}
        known: set[str] = set()
        for service in services:
            key = service_fingerprint(service.name)
            known.add(key)
            status = statuses.get(service.name)
            if status is None or service.owner not in self._groups:
                continue
            call = open_calls.get(key)
            level = LEVELS.get(service.call)
            state = status.state
            if call is not None and (level is None or state is ServiceState.OPERATIONAL):
                self._service_recovered(call, service, now)
                continue
            if call is None and (level is None or state < level):
                continue  # no call, and none due: its causes are not worked out
            found = ServiceNow(
                service,
                state,
                causes(status, titles, call_of, service_calls),
                min(since.get(service.name, now), now),  # the tick's pass began at `now`
            )
            if call is not None:
                self._service_changed(call, found, now)
            else:
                call = self._service_out(key, found, now)
            service_calls[service.name] = call.id
            self._link_causes(call, found, now)
        for key, call in open_calls.items():
            if key not in known:  # the service is no longer configured
                self._service_recovered(call, None, now)

    # -- one service --------------------------------------------------------------------------

    def _service_out(self, key: str, found: ServiceNow, now: float) -> Call:
        """Open the service's call, or reopen the last one if it resolved within the group's
        `reopen_within`."""
        service, state = found.service, found.state
        group = self._groups[service.owner]
        recent = self._store.find_resolved_call(key, now - float(group.reopen_within))
        if recent is not None:
            self._write_texts(recent, found, found.since, now)
            recent.status, recent.resolved_at = "open", None
            recent.reopened += 1
            self._store.update_call(recent)
            text = (
                f"{found.headline}. Out again within "
                f"{units.duration(float(group.reopen_within))} of its last recovery."
            )
            self._event(
                recent, "reopened", text, now, {"text": text, "description": recent.description}
            )
            self.counters.bump(self.counters.reopened, service.owner)
            log.info("service call %d reopened: %s", recent.id, recent.summary)
            return recent
        call = Call(
            id=0,
            fingerprint=key,
            host="*",
            rule=SERVICE_RULE,
            labels={"service": service.name},
            group=service.owner,
            assign=group.assign,
            severity=SEVERITY[state],
            priority=PRIORITY[SEVERITY[state]],
            status="open",
            summary="",
            description="",
            first_seen=found.since,
            opened_at=now,
            updated_at=now,
            services=[service.name],
        )
        call.id = self._store.insert_call(call)
        self._write_texts(call, found, call.first_seen, now)
        self._store.update_call(call)
        ticket = self._ticket(call) if group.sink in self._external else {}
        self._event(call, "opened", call.summary, now, {"ticket": ticket})
        self.counters.bump(self.counters.opened, service.owner)
        log.info("service call %d opened for %s: %s", call.id, service.owner, call.summary)
        return call

    def _service_changed(self, call: Call, found: ServiceNow, now: float) -> None:
        """Bring an open service call up to date: a new state changes its severity (a
        service in maintenance keeps the one it had), new causes its texts."""
        before = call.description.split("\n", 1)[0]
        line = found.headline
        if line == before and call.summary == f"{found.service.title}: {found.state.word}":
            return
        old = call.severity
        self._write_texts(call, found, call.first_seen, now)
        self._store.update_call(call)
        sink = self._groups[call.group].sink
        priority = self._external[sink](call.severity) if sink in self._external else call.priority
        if call.severity != old:
            text = f"{line}. Severity changed from {old} to {call.severity}."
            payload = {
                "priority": priority,
                "summary": call.summary,
                "text": text,
                "description": call.description,
            }
            self._event(call, "severity", text, now, payload, was=old)
        else:
            # The causes changed: the history notes it, and the ticket gets the new texts.
            self._store.add_call_event(CallEvent(call.id, now, "comment", line))
            if sink in self._external:
                payload = {
                    "priority": priority,
                    "summary": call.summary,
                    "text": line,
                    "description": call.description,
                }
                self._store.enqueue(OutboxOp(0, call.id, sink, "update", payload, now))
                self._on_enqueue()
        self.counters.bump(self.counters.updated, call.group)

    def _service_recovered(self, call: Call, service: Service | None, now: float) -> None:
        """Resolve a service call: the service is operational again (or no longer has calls,
        or is no longer configured)."""
        # A service no longer configured: its title as the call's summary gave it.
        title = service.title if service is not None else call.summary.rpartition(": ")[0]
        lasted = units.duration(max(0.0, now - call.first_seen))
        if service is None:
            note = f"{title} is no longer a configured service"
        elif service.call == "never":
            note = f"{title} no longer has service calls (call: never)"
        else:
            note = f"{title} is operational again at {units.timestamp(now)}, after {lasted}"
        group = self._groups.get(call.group)
        summary = f"{title}: operational" if service is not None else call.summary
        if group is not None and group.on_recovery == "comment":
            if call.summary == summary:
                return  # said once already
            call.summary, call.updated_at = summary, now
            self._store.update_call(call)
            text = f"{note}. Left open by the group's policy.{self._console_link(call.id)}"
            self._event(call, "comment", text, now)
            self.counters.bump(self.counters.updated, call.group)
            return
        rest = call.description.partition("\n")[2]
        call.summary = summary
        call.description = f"{summary}\n\nRecovered:   {note}.\n{rest.lstrip(chr(10))}"
        call.status, call.resolved_at, call.updated_at = "resolved", now, now
        self._store.update_call(call)
        close = group is not None and group.on_recovery == "close"
        text = f"{note}.{self._console_link(call.id)}"
        payload = {"text": text, "close": close, "description": call.description}
        self._event(call, "resolved", text, now, payload)
        self.counters.bump(self.counters.resolved, call.group)
        self._timings.resolved(call.group, now - call.opened_at)
        log.info("service call %d resolved: %s", call.id, note)

    def _link_causes(self, call: Call, found: ServiceNow, now: float) -> None:
        """Link the calls of the causes to the service call; each newly linked call is told
        (in its history and its ticket) which service call it is part of."""
        service, state = found.service, found.state
        group = self._groups[service.owner]
        for cause in found.causes[:_CAUSES_LISTED]:
            if cause.call_id is None or cause.call_id == call.id:
                continue
            if not self._store.link_service_call(call.id, cause.call_id, now):
                continue
            part = self._store.get_call(cause.call_id)
            if part is None or part.status != "open":
                continue
            text = (
                f"{service.title}: {state.word}. This problem is one of its causes: service "
                f"call #{call.id} tells {group.assign} and follows {service.title} for its "
                f"users.{self._console_link(call.id)}"
            )
            self._event(part, "comment", text, now)

    # -- texts --------------------------------------------------------------------------------

    def _write_texts(self, call: Call, seen: ServiceNow, first_seen: float, now: float) -> None:
        """The call's severity, summary and description for the service's state now."""
        service, state, found = seen.service, seen.state, seen.causes
        if state in SEVERITY:
            call.severity = SEVERITY[state]
            call.priority = PRIORITY[call.severity]
        call.summary = f"{service.title}: {state.word}"
        group = self._groups[service.owner]
        listed = "\n".join(f"- {c.named}" for c in found[:_CAUSES_LISTED])
        more = len(found) - _CAUSES_LISTED
        if more > 0:
            listed += f"\n… and {more} more"
        lines = [
            seen.headline,
            "",
            f"Service:     {service.title} ({service.name})",
        ]
        if service.description:
            lines.append(f"For users:   {service.description}")
        lines += [
            f"State:       {state.word}",
            f"Owner group: {service.owner} ({group.assign})",
            f"First seen:  {units.timestamp(first_seen)}",
            f"As of:       {units.timestamp(now)}",
        ]
        url = self._templates.call_url(call.id)
        if url:
            lines.append(f"Console:     {url}")
        lines += [
            "",
            "Caused by:" if found else "Caused by: nothing known (see the service's page).",
            *([listed] if found else []),
            "",
            f"This call is {service.title}'s own: it follows the service and resolves when "
            "the service is operational again. Each cause has its own call.",
        ]
        call.description = "\n".join(lines)
        call.updated_at = now

    def _console_link(self, call_id: int) -> str:
        url = self._templates.call_url(call_id)
        return f"\nConsole: {url}" if url else ""
