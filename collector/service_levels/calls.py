"""What happened to each call, read from its events, its help-desk link and the audit log."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from collector.config import CollectorConfig
from collector.incidents.calls import Call
from collector.service_levels.period import DAY, Period
from collector.store.protocols import Store
from collector.store.records import CallLink

# What a person does to a call through the API, the console or the CLI (all audited).
PERSON_ACTIONS = ("call.acknowledge", "call.comment", "call.resolve")
# Events that are a person's doing in the help desk: an acknowledgement seen there, a note
# written there, a close there (left closed by the group's policy, or reopened by runwatch).
DESK_ACTIONS = ("acknowledged", "desk_comment", "desk_closed", "desk_reopened")
# A desk-closed call is followed by its successor at the same evaluation; look that far back
# for the call a new one continues.
CONTINUATION_LOOKBACK = 31 * DAY


@dataclass(slots=True)
class CallFacts:
    """One call opened in the period, as it stood at the period's last instant."""

    call: Call
    first_response: float | None  # a person's first action: ack, comment, resolution
    first_resolved: float | None
    final_resolved: float | None  # None: still open
    reopened: int  # after runwatch had resolved it (the problem came back)
    desk_reopened: int  # while it was open here: the desk closed it, runwatch reopened it
    continues_desk_close: bool  # opened as the successor of a call closed in the desk


def call_facts(store: Store, config: CollectorConfig, period: Period) -> list[CallFacts]:
    """The facts of every call opened in [start, last)."""
    last = period.last
    audited: dict[str, list[float]] = defaultdict(list)
    for entry in store.audit_between(period.start, last, "call."):
        if entry.action in PERSON_ACTIONS:
            audited[entry.target].append(entry.at)
    earlier = store.calls_opened_between(period.start - CONTINUATION_LOOKBACK, last)
    ended_by_desk: set[tuple[str, float]] = set()
    out = []
    for call in earlier:
        link = _link(store, config, call)
        if link is not None and link.desk_closed_at is not None and call.resolved_at is not None:
            ended_by_desk.add((call.fingerprint, call.resolved_at))
        if call.opened_at < period.start:
            continue
        responses = list(audited.get(f"call {call.id}", []))
        if link is not None:
            responses += [
                t for t in (link.acknowledged_at, link.desk_closed_at) if t is not None and t < last
            ]
        first_resolved = final = None
        is_open, reopened, desk_reopened = True, 0, 0
        for event in store.call_events(call.id):
            if event.at >= last:
                break
            kind: str = event.kind  # desk_* kinds come with the two-way sync of issue 19
            if kind in DESK_ACTIONS:
                responses.append(event.at)
                desk_reopened += kind == "desk_reopened"
            elif kind == "resolved":
                is_open, final = False, event.at
                first_resolved = event.at if first_resolved is None else first_resolved
            elif kind == "reopened" and is_open:
                # Reopened while open here: the help desk closed it (a person did), and
                # runwatch reopened the ticket because the problem persisted (recorded so
                # before desk_reopened events existed).
                desk_reopened += 1
                responses.append(event.at)
            elif kind == "reopened":
                reopened += 1
                is_open, final = True, None
        out.append(
            CallFacts(
                call,
                min(responses, default=None),
                first_resolved,
                final,
                reopened,
                desk_reopened,
                (call.fingerprint, call.opened_at) in ended_by_desk,
            )
        )
    return out


def _link(store: Store, config: CollectorConfig, call: Call) -> CallLink | None:
    group = config.groups.get(call.group)
    return store.get_link(call.id, group.sink) if group is not None else None
