"""Storm control: past `storm.max_calls` new calls within `storm.window` on one help desk,
new problems are held back on their group's umbrella call, whose list and ticket are brought
up to date in batches (at most every `storm.update_every`) and which resolves when the last
member has recovered."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from collector.config import STORM_RULE, GroupConfig, StormConfig
from collector.incidents.calls import Call, CallEvent, Problem, fingerprint
from collector.incidents.templates import CallTemplates
from collector.store.protocols import Store
from collector.store.records import OutboxOp
from runwatch import units

if TYPE_CHECKING:
    from collector.incidents.manager import CallCounters, CallTimings
    from collector.notify.plan import NotificationPlanner

# The storm warnings keep the logger they had before this module was split off the manager.
log = logging.getLogger("collector.incidents.manager")


class StormUmbrellas:
    """The storm umbrella's part of the incident manager (which supplies what is declared
    here, and the call history through `_event` and `_ticket`)."""

    _store: Store
    _groups: dict[str, GroupConfig]
    _external: Mapping[str, Callable[[str], str]]
    _on_enqueue: Callable[[], None]
    _storm: StormConfig
    _templates: CallTemplates
    _timings: CallTimings
    counters: CallCounters
    _storms: dict[int, _StormTally]  # umbrella call id -> its members here
    _notifications: NotificationPlanner | None

    def _event(
        self, call: Call, kind: str, text: str, now: float, payload: dict[str, Any] | None = None
    ) -> None:
        raise NotImplementedError

    def _ticket(self, call: Call) -> dict[str, Any]:
        raise NotImplementedError

    def _storming(self, sink: str, now: float) -> bool:
        """Whether a new call on this sink would pass the storm limit; if not, count it (in
        the store: replicas sharing it count against one limit)."""
        return not self._store.claim_storm_slot(
            sink, now, float(self._storm.window), self._storm.max_calls
        )

    def _hold_back(self, problem: Problem, key: str, now: float) -> int:
        """List the problem on its group's umbrella call instead of opening a call of its own;
        return the umbrella's id.

        Each held-back problem costs a row and a history entry, whatever the storm's size: the
        umbrella's texts and its ticket are brought up to date in batches (`_due`)."""
        group = self._groups[problem.group]
        line = self._templates.summary(problem)
        umbrella_key = fingerprint("*", STORM_RULE, {"group": problem.group})
        umbrella_id = self._store.find_open_call_id(umbrella_key)
        if umbrella_id is None:
            umbrella = Call(
                id=0,
                fingerprint=umbrella_key,
                host="*",
                rule=STORM_RULE,
                labels={"group": problem.group},
                group=problem.group,
                assign=group.assign,
                severity="CRITICAL",
                priority="high",
                status="open",
                summary="",
                description="",
                first_seen=now,
                opened_at=now,
                updated_at=now,
            )
            self._umbrella_text(umbrella, 1, 0, [line])
            umbrella.id = umbrella_id = self._store.insert_call(umbrella)
            self._store.put_storm_member(umbrella.id, key, line)
            self._storms[umbrella.id] = _StormTally({key}, set(), sent_at=now)
            ticket = self._ticket(umbrella) if group.sink in self._external else {}
            self._event(umbrella, "opened", umbrella.summary, now, {"ticket": ticket})
            self.counters.bump(self.counters.opened, problem.group)
            log.warning(
                "call storm for %s: more than %d new calls within %s; holding back "
                "new calls on umbrella call %d",
                problem.group,
                self._storm.max_calls,
                units.duration(float(self._storm.window)),
                umbrella.id,
            )
        else:
            self._store.put_storm_member(umbrella_id, key, line)
            tally = self._tally(umbrella_id, now)
            tally.active.add(key)
            tally.recovered.discard(key)
            tally.dirty = True
            # Recorded here; the desk hears of it with the next update of the umbrella.
            self._store.add_call_event(CallEvent(umbrella_id, now, "comment", f"Held back: {line}"))
            self._flush_storm(umbrella_id, tally, now)
        self.counters.bump(self.counters.suppressed, problem.group)
        return umbrella_id

    def flush_storms(self, now: float) -> int:
        """Bring every umbrella with news up to date, in the register and in its help desk,
        where its last update is old enough (`_due`); return how many were."""
        due = [umbrella_id for umbrella_id, tally in self._storms.items() if self._due(tally, now)]
        flushed = 0
        for umbrella_id in due:
            with self._store.transaction():
                if self._flush_storm(umbrella_id, self._storms[umbrella_id], now) is not None:
                    flushed += 1
        return flushed

    def _due(self, tally: _StormTally, now: float) -> bool:
        """Whether the umbrella's texts and ticket are due for an update: something changed,
        and the last update is `storm.update_every` old, or for a list of more than
        `_LINES_PER_UPDATE` lines, that many times longer. A storm's updates then write about
        as many lines per second however large it grows, so each held-back problem costs
        about the same."""
        if not tally.dirty:
            return False
        listed = min(len(tally.active) + len(tally.recovered), _SHOWN_MEMBERS)
        wait = float(self._storm.update_every) * max(1.0, listed / _LINES_PER_UPDATE)
        return now - tally.sent_at >= wait

    def _tally(self, umbrella_id: int, now: float) -> _StormTally:
        """The umbrella's members, read once per process (then kept up to date here)."""
        tally = self._storms.get(umbrella_id)
        if tally is None:
            members = self._store.storm_members(umbrella_id)
            recovered = {key for key, line in members if line.startswith(RECOVERED)}
            active = {key for key, _ in members} - recovered
            tally = self._storms[umbrella_id] = _StormTally(active, recovered, sent_at=now)
        return tally

    def _flush_storm(
        self, umbrella_id: int, tally: _StormTally, now: float, *, force: bool = False
    ) -> Call | None:
        """Write the umbrella's count and list, and send them to its ticket as one update, if
        due (`_due`, or `force`d with news); return the umbrella, if it was (None if not, or
        if it is no longer open). Reads the first `_SHOWN_MEMBERS` lines of the list and two
        counts, however many problems it holds."""
        if not (tally.dirty and force) and not self._due(tally, now):
            return None
        umbrella = self._store.get_call(umbrella_id)
        if umbrella is None or umbrella.status != "open":
            self._storms.pop(umbrella_id, None)
            return None
        tally.dirty, tally.sent_at = False, now
        total, recovered, shown = self._store.storm_list(umbrella_id, _SHOWN_MEMBERS, RECOVERED)
        self._umbrella_text(umbrella, total, recovered, shown)
        umbrella.updated_at = now
        self._store.update_call(umbrella)
        sink = self._groups[umbrella.group].sink if umbrella.group in self._groups else None
        if sink is not None and sink in self._external:
            text = f"{umbrella.summary}. Every problem held back now:\n\n" + _member_lines(
                shown, total
            )
            payload = {
                "priority": self._external[sink](umbrella.severity),
                "summary": umbrella.summary,
                "text": text,
                "brief": f"{umbrella.summary}. The list below is current.",
                "description": umbrella.description,
            }
            self._store.enqueue(OutboxOp(0, umbrella.id, sink, "update", payload, now))
            self._on_enqueue()
        if self._notifications is not None:
            # People hear of it in the storm's thread, less often (collector/notify/storms.py).
            self._notifications.storm_changed(umbrella, now)
        return umbrella

    def _umbrella_text(self, umbrella: Call, total: int, recovered: int, shown: list[str]) -> None:
        still = f", {recovered} of them recovered" if recovered else ""
        umbrella.summary = (
            f"[storm] {total} problem(s) for {umbrella.assign} held back{still}: "
            f"more than {self._storm.max_calls} new calls within "
            f"{units.duration(float(self._storm.window))}"
        )
        umbrella.description = (
            "Too many problems at once to open a call for each (a network or power failure "
            "often looks like this). Each one is still watched; this call lists them and "
            "resolves when the last one has recovered.\n\n" + _member_lines(shown, total)
        )

    def _umbrella_of(self, call_id: int, problem: Problem) -> bool:
        """Whether the call is an open storm umbrella on which the problem is held back; read
        without the umbrella's texts, which grow with the storm."""
        return problem.rule != STORM_RULE and self._store.call_rule(call_id) == (
            STORM_RULE,
            "open",
        )

    def _storm_member_changed(
        self, umbrella_id: int, problem: Problem, recovered: bool, now: float
    ) -> None:
        key = fingerprint(problem.host, problem.rule, problem.labels)
        line = self._templates.summary(problem)
        tally = self._tally(umbrella_id, now)
        if recovered:
            self._store.put_storm_member(umbrella_id, key, f"{RECOVERED}{line}")
            tally.active.discard(key)
            tally.recovered.add(key)
        else:
            self._store.put_storm_member(umbrella_id, key, line)
        self._storm_members_left(umbrella_id, tally, recovered, now)

    def drop_retired_member(self, umbrella_id: int, member: str, now: float) -> None:
        """Take a retired host's problem off its storm umbrella (resolved once none is left)."""
        if self._store.call_rule(umbrella_id) != (STORM_RULE, "open"):
            return
        self._store.drop_storm_member(umbrella_id, member)
        tally = self._tally(umbrella_id, now)
        tally.active.discard(member)
        tally.recovered.discard(member)
        self._storm_members_left(umbrella_id, tally, True, now)

    def _storm_members_left(
        self, umbrella_id: int, tally: _StormTally, recovered: bool, now: float
    ) -> None:
        """An umbrella after a member changed: resolved when none still fails, else its list
        and ticket brought up to date (batched)."""
        tally.dirty = True
        if recovered and not tally.active:
            # Another replica may have held problems back on it since: the store decides.
            self._storms.pop(umbrella_id, None)
            tally = self._tally(umbrella_id, now)
            tally.dirty = True
        if recovered and not tally.active:
            umbrella = self._flush_storm(umbrella_id, tally, now, force=True)  # the final list
            self._storms.pop(umbrella_id, None)
            if umbrella is None:
                return
            umbrella.status, umbrella.resolved_at, umbrella.updated_at = "resolved", now, now
            self._store.update_call(umbrella)
            self._event(
                umbrella,
                "resolved",
                "Recovered: every problem listed here has.",
                now,
                {"text": "Recovered: every problem listed here has.", "close": False},
            )
            self.counters.bump(self.counters.resolved, umbrella.group)
            self._timings.resolved(umbrella.group, now - umbrella.opened_at)
            return
        self._flush_storm(umbrella_id, tally, now)


# How a held-back problem that has recovered is listed on its umbrella.
RECOVERED = "[recovered] "
# The umbrella's texts list this many problems at most (those still failing first).
_SHOWN_MEMBERS = 500
# Past this many lines, an umbrella's list is rewritten less often (see `_due`).
_LINES_PER_UPDATE = 200


@dataclass(slots=True)
class _StormTally:
    """An umbrella's members as this process knows them, and when its ticket last heard."""

    active: set[str]  # fingerprints of the problems still held back
    recovered: set[str]
    sent_at: float
    dirty: bool = False  # members changed since the last update


def _member_lines(shown: list[str], total: int) -> str:
    """One line per member shown (those still failing first, recovered ones marked), and how
    many more there are."""
    more = total - len(shown)
    return "\n".join(f"- {text}" for text in shown) + (f"\n… and {more} more" if more > 0 else "")
