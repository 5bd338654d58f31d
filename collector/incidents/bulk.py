"""Many calls handled at once: acknowledged, commented on, resolved or silenced together.

Each call is done as its own action, through the same path as one call handled by hand
(`CallsByHand`, `Silences`): its own transaction, its own audit entry, its own refusal. A call
that is refused (already acknowledged, resolved, in an external help desk, unknown) does not
stop the others; the outcome says, call by call, what was done and what was refused.

Silencing a call holds back its host and rule (exactly, not a glob) for a while. A batch whose
calls lie on more than `silences.confirm_over` of the fleet's hosts needs the operator's
confirmation, as one wide silence does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from collector.config import SERVICE_RULE, STORM_RULE
from collector.errors import Rejection
from collector.evaluation.silences import MAX_SILENCE_SECONDS, Silences
from collector.incidents.by_hand import CallsByHand
from runwatch import units

BulkAction = Literal["acknowledge", "comment", "resolve", "silence"]
BULK_ACTIONS: tuple[BulkAction, ...] = ("acknowledge", "comment", "resolve", "silence")
# At most this many calls in one request: a page of the console, with room to spare.
MAX_BULK = 500

_DONE = {
    "acknowledge": "acknowledged",
    "comment": "commented on",
    "resolve": "resolved",
    "silence": "silenced",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkRequest:
    """One action for many calls. `text`: the comment, or the note to a resolution;
    `duration` (seconds) and `reason`: the silence."""

    action: BulkAction
    call_ids: tuple[int, ...]
    text: str = ""
    duration: float = 0.0
    reason: str = ""
    confirmed: bool = False  # the operator confirmed a silence over the fleet share


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """What became of one call: done, or refused and why."""

    call_id: int
    done: bool
    message: str
    status: int = 200
    silence_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.call_id,
            "done": self.done,
            "status": self.status,
            "message": self.message,
        }
        if self.silence_id is not None:
            out["silence_id"] = self.silence_id
        return out


def check_bulk(request: BulkRequest) -> None:
    """Refuse a request as a whole (Rejection) before any call is touched."""
    if request.action not in BULK_ACTIONS:
        raise Rejection(
            422, "invalid", f"no action {request.action!r}: one of {', '.join(BULK_ACTIONS)}"
        )
    if not request.call_ids:
        raise Rejection(422, "invalid", "no calls selected", "ids")
    if len(request.call_ids) > MAX_BULK:
        raise Rejection(422, "invalid", f"at most {MAX_BULK} calls at once", "ids")
    if request.action == "comment" and not request.text.strip():
        raise Rejection(422, "invalid", "the comment is empty", "text")
    if request.action == "silence":
        if not request.reason.strip():
            raise Rejection(422, "invalid", "say why the calls are silenced", "reason")
        if not 0 < request.duration <= MAX_SILENCE_SECONDS:
            raise Rejection(
                422,
                "invalid",
                "give how long to silence: more than 0s and at most ten years, e.g. 2h",
                "duration",
            )


def work_calls(
    by_hand: CallsByHand, silencing: Silences, request: BulkRequest, actor: str, via: str
) -> Iterator[BulkOutcome]:
    """Do `request.action` to each call, one by one, yielding each call's outcome in the given
    order (callers may serve other requests between two calls). Raises Rejection, before the
    first call, only for the request as a whole (see check_bulk; 409 `confirm` for a silence
    over the fleet share that was not confirmed)."""
    check_bulk(request)
    ids = tuple(dict.fromkeys(request.call_ids))  # each call once, in the order given
    if request.action == "silence":
        yield from _silence(by_hand, silencing, request, ids=ids, actor=actor, via=via)
        return
    for call_id in ids:
        try:
            if request.action == "acknowledge":
                call = by_hand.acknowledge_call(call_id, actor, via=via)
            elif request.action == "comment":
                call = by_hand.comment_call(call_id, actor, request.text, via=via)
            else:
                call = by_hand.resolve_call(call_id, actor, request.text, via=via)
        except Rejection as rejection:
            yield BulkOutcome(call_id, False, rejection.message, rejection.status)
            continue
        yield BulkOutcome(call_id, True, f"{_DONE[request.action]}: {call.summary}")


def _silence(
    by_hand: CallsByHand,
    silencing: Silences,
    request: BulkRequest,
    *,
    ids: tuple[int, ...],
    actor: str,
    via: str,
) -> Iterator[BulkOutcome]:
    calls = {call_id: by_hand.store.get_call(call_id) for call_id in ids}
    hosts = {
        c.host for c in calls.values() if c is not None and c.rule not in (STORM_RULE, SERVICE_RULE)
    }
    fleet = len(silencing.fleet_hosts())
    limit = silencing.config.silences.confirm_over
    if fleet and len(hosts) / fleet > limit and not request.confirmed:
        raise Rejection(
            409,
            "confirm",
            f"These calls lie on {len(hosts)} of {fleet} hosts "
            f"({units.percent(len(hosts) / fleet)} of the fleet): more than the "
            f"{units.percent(limit)} (silences.confirm_over) silences may hold back without "
            "a second confirmation.",
            "confirm_fleet_share",
        )
    set_for: dict[tuple[str, str], tuple[int, int]] = {}  # (host, rule) -> (silence, call)
    try:
        for call_id in ids:
            call = calls[call_id]
            if call is None:
                yield BulkOutcome(call_id, False, f"no call {call_id}", 404)
                continue
            if call.rule == SERVICE_RULE:
                yield BulkOutcome(
                    call_id,
                    False,
                    f"call {call_id} stands for a service: silence the hosts of its causes "
                    "(their calls are linked on its page)",
                    409,
                )
                continue
            if call.rule == STORM_RULE:
                yield (
                    BulkOutcome(
                        call_id,
                        False,
                        f"call {call_id} stands for a storm over many hosts: silence "
                        "those hosts on the silences page",
                        409,
                    )
                )
                continue
            key = (call.host, call.rule)
            if key in set_for:
                silence_id, first = set_for[key]
                yield (
                    BulkOutcome(
                        call_id,
                        True,
                        f"covered by silence {silence_id}, set for call {first} "
                        f"(host {call.host}, rule {call.rule})",
                        silence_id=silence_id,
                    )
                )
                continue
            silence = silencing.add_silence(
                actor,
                host=call.host,  # host and rule names hold no glob characters
                rule=call.rule,
                duration=request.duration,
                reason=f"call {call_id}: {request.reason.strip()}"[:1000],
                via=via,
                settle=False,
            )
            set_for[key] = (silence.id, call_id)
            yield (
                BulkOutcome(
                    call_id,
                    True,
                    f"silenced: host {call.host}, rule {call.rule} until "
                    f"{units.timestamp(silence.ends_at)} (silence {silence.id})",
                    silence_id=silence.id,
                )
            )
    finally:
        if set_for:  # the calendar follows once, after the last
            silencing.settle()
