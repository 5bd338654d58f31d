"""The evaluation tick: time-based rules over the fleet, in slices between reports, by the one
replica holding the `evaluation` lead; and the garbage collector kept out of the way."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import Counter

from collector.config import STALE_RULE, CollectorConfig
from collector.evaluation.evaluator import RuleEvaluator
from collector.evaluation.maintenance import MaintenanceCalendar
from collector.incidents.calls import CallEvent
from collector.services.watch import ServiceWatch
from collector.store.protocols import Store
from collector.view.fleet import Fleet
from collector.view.replica import ReplicaSync

log = logging.getLogger(__name__)


def settle_garbage_collector() -> None:
    """Keep Python's full collections short: collect the young generations, then move what
    survived out of the collector's sight (gc.freeze).

    A large fleet is millions of long-lived objects; a full collection over them stalls the
    event loop for half a second or more (572 ms at 10,000 hosts), and reports wait. Frozen
    objects are still freed by reference counting when replaced; only a reference cycle that
    survived two collections before a freeze would be kept: once an hour everything is
    unfrozen and collected in full, so such garbage cannot pile up.
    """
    now = time.monotonic()
    if now - _full_collection["at"] >= _FULL_COLLECTION_EVERY_SECONDS:
        _full_collection["at"] = now
        gc.unfreeze()
        gc.collect()
    else:
        gc.collect(1)
    gc.freeze()


_FULL_COLLECTION_EVERY_SECONDS = 3600.0

# Young collections every this many allocations (Python's default is 700), and never a full
# one of the garbage collector's own accord (the tick does one an hour, above).
GC_THRESHOLDS = (10_000, 10, 2**31 - 1)


def tune_garbage_collector() -> None:
    """Leave full collections to the tick. After gc.freeze() the collector counts almost
    nothing as long-lived, so Python's rule (a full collection once the objects promoted
    since the last one outnumber a quarter of the long-lived) fired every 70,000 allocations
    or so: 40-80 ms stalls of the event loop several times a minute at 167 reports/s, each
    one scanning the objects made since the last tick, which the next tick freezes anyway.
    Young collections are rarer too (10,000 allocations, not 700): fewer, not longer pauses.
    Reference cycles are still collected: in the young generations as before, and in full
    once an hour."""
    gc.set_threshold(*GC_THRESHOLDS)


_full_collection = {"at": time.monotonic()}  # when everything was last collected

# Hosts the tick evaluates in one transaction at most (fewer when a slice's time runs out).
TICK_HOSTS = 64

# A tick held up by a busy event loop is still a watching collector; a longer pause is not.
WATCH_GAP_SECONDS = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationTick:
    """Run the evaluator's time-based pass; on failure, count it and rebuild the view."""

    config: CollectorConfig
    store: Store
    fleet: Fleet
    evaluator: RuleEvaluator
    calendar: MaintenanceCalendar
    replica: ReplicaSync
    failures: Counter
    clock: Callable[[], float]
    reload: Callable[[], None]  # rebuild the view from the store (after a failure)
    # Bring storm umbrellas with news up to date (every replica: each holds its own news).
    flush_storms: Callable[[float], int] | None = None
    # Services' states, worked out from the view at the end of each tick (every replica).
    services: ServiceWatch | None = None
    # Load the hosts of replicas that died, in bulk and in slices (view/takeover.py).
    take_over: Callable[[float], Iterator[None]] | None = None
    # Open, update or resolve service-level calls from the services' states (the lead only).
    service_calls: Callable[[float], None] | None = None
    # Climb the escalation levels of calls nobody acknowledged (collector/notify/escalation.py).
    escalate: Callable[[float, float], Iterator[None]] | None = None

    def tick(self) -> None:
        """Evaluate time-based rules now, all at once (tests and tools; the API uses slices)."""
        for _ in self.tick_slices():
            pass

    def tick_slices(self, slice_seconds: float = 0.01) -> Iterator[None]:
        """Evaluate time-based rules, yielding every `slice_seconds` of work.

        The API runs one tick every `evaluation_interval`, and serves reports between the
        slices, so a tick over a large fleet never holds an agent's report up for long. The
        hosts due are evaluated in transactions of up to TICK_HOSTS. Only one replica of
        those sharing a store evaluates time (the one holding the `evaluation` lead).
        """
        now = self.clock()
        try:
            if self.flush_storms is not None:
                self.flush_storms(now)
            if self.take_over is not None:
                yield from self.take_over(now)
            if not self.store.try_lead("evaluation"):
                # Its view of each host catches up when the host reports through it. Its
                # view grows with those reports all the same: without this, full collections
                # over it stalled a follower for 200-400 ms every half minute.
                settle_garbage_collector()
                yield from self._services(slice_seconds)
                if self.services is not None:
                    self.services.take_changes()  # the replica with the lead stores them
                return
            with self.store.transaction():
                # What the service-level report counts as watched time (see service_levels).
                self.store.record_evaluation(now, self._watch_gap())
                self._follow_desk_closures(now)
                self.evaluator.prune_history(now)
            yield
            shared = self.store.shared
            # Finding the hosts due walks every host and rule state: in slices too.
            due = yield from self.evaluator.due_in_order_steps(now, slice_seconds)
            if shared:
                # Silences set through another replica's API are in the store.
                self.calendar.reload(self.store, now)
                # From this view only the hosts it holds current; the others' silence and
                # pending problems are read from the database.
                due = self.replica.current_of(due)
                due += sorted(
                    set(
                        self.store.hosts_to_tick(
                            now, self.config.staleness.after_intervals, STALE_RULE
                        )
                    )
                    - set(due)
                )
            yield from self._tick_hosts(due, now, slice_seconds)
            yield from self._services(slice_seconds)
            self._store_services(now)
            yield from self._escalate(now, slice_seconds)
            settle_garbage_collector()
        except Exception:
            self.failures.inc()
            log.exception("evaluation tick failed; reloading state")
            self.reload()

    def _store_services(self, now: float) -> None:
        """Store the services' state changes, and follow their own calls (the lead only)."""
        if self.services is None:
            return
        changes = self.services.take_changes()
        if changes or self.service_calls is not None:
            with self.store.transaction():
                self.store.add_service_changes(changes)
                if self.service_calls is not None:
                    self.service_calls(now)

    def _escalate(self, now: float, slice_seconds: float) -> Iterator[None]:
        """Take the escalation steps due; a failure waits for the next tick, the view stays."""
        if self.escalate is None:
            return
        try:
            yield from self.escalate(now, slice_seconds)
        except Exception:
            self.failures.inc()
            log.exception("escalating calls failed; the next tick tries again")

    def _tick_hosts(self, due: list[str], now: float, slice_seconds: float) -> Iterator[None]:
        """Evaluate the hosts due, yielding every `slice_seconds`. The hosts of one slice
        share a transaction: a few round trips and a commit for up to TICK_HOSTS of them,
        not for each (most change nothing at all)."""
        began = time.perf_counter()
        position = 0
        while position < len(due):
            chunk = due[position : position + TICK_HOSTS]
            with self.replica.hold(chunk, now) as held:
                for host in chunk:
                    position += 1
                    if not held.missing(host) and self.evaluator.tick_host(host, now):
                        held.changed([host])
                    if time.perf_counter() - began >= slice_seconds:
                        break
            if time.perf_counter() - began >= slice_seconds:
                yield
                began = time.perf_counter()

    def _services(self, slice_seconds: float) -> Iterator[None]:
        """Every service's state from the view as this tick left it."""
        if self.services is not None:
            yield from self.services.steps(self.clock(), slice_seconds)

    def _watch_gap(self) -> float:
        """A pause between evaluations longer than this is time nobody watched."""
        return max(WATCH_GAP_SECONDS, 3 * float(self.config.evaluation_interval))

    def _follow_desk_closures(self, now: float) -> None:
        """Calls the help desk closed while failing, under the `new_call` policy: once the
        group's `new_call_after` has passed, retire the old call; the problem, if it still
        holds, opens a new one at this very evaluation."""
        for link in self.store.open_links():
            if link.desk_closed_at is None:
                continue
            call = self.store.get_call(link.call_id)
            group = self.config.groups.get(call.group) if call else None
            if (
                call is None
                or group is None
                or now - link.desk_closed_at < float(group.new_call_after)
            ):
                continue
            self.store.retire_call(call.id, now)
            self.store.add_call_event(
                CallEvent(
                    call.id,
                    now,
                    "resolved",
                    "Closed in the help desk while the problem persisted; a new call follows.",
                )
            )
            self.store.save_rule_states(self.fleet.release_call(call.id))
            log.info("call %d closed in %s while failing; a new call follows", call.id, link.sink)
