"""Carry out what evaluation decided: calls through the incident manager, records into the store.

Call inside the store transaction of the pass that decided it.
"""

from __future__ import annotations

from typing import Protocol

from collector.evaluation.outcome import Note, Outcome, Settled
from collector.evaluation.rules import OpenCall
from collector.incidents.manager import IncidentManager
from collector.store.protocols import AuditStore, HistoryStore, ReportedStore


class EvaluationStore(ReportedStore, HistoryStore, AuditStore, Protocol):
    """What the writer stores: series and check statuses, rule states, history, changes."""


class DecisionWriter:
    """Write an evaluation pass's outcome, one batch per table (a large fleet ticks often)."""

    def __init__(self, store: EvaluationStore, incidents: IncidentManager) -> None:
        self._store = store
        self._incidents = incidents

    def apply(self, outcome: Outcome) -> list[int | None]:
        """Carry out the calls, notes and removals; return the id of each call opened (None
        where none opened, e.g. held back in a storm), in the order of the decisions."""
        store = self._store
        if outcome.history:
            store.add_history(list(outcome.history))
        if outcome.steps:
            store.add_steps(list(outcome.steps))
        if outcome.dropped_series:
            store.delete_series(list(outcome.dropped_series))
        if outcome.forgotten_checks:
            store.delete_check_statuses(list(outcome.forgotten_checks))
        opened: list[int | None] = []
        now = outcome.now
        for order in outcome.calls:
            if isinstance(order, Note):
                self._incidents.note(order.call_id, order.text, now)
                continue
            call_id = self._incidents.apply(order.decision, order.problem, now)
            if isinstance(order.decision, OpenCall):
                opened.append(call_id)
        return opened

    def save(self, settled: Settled) -> None:
        """Store the pass's state changes and rule states (after apply(): they hold call ids)."""
        if settled.changes:
            self._store.add_state_changes(list(settled.changes))
        if settled.states:
            self._store.save_rule_states(list(settled.states))

    def prune_history(self, before: float) -> None:
        """Drop forecast history older than `before`."""
        self._store.prune_history(before)

    def prune_steps(self, before: float, after: str, hosts: int) -> str | None:
        """Drop graph history older than `before` of the `hosts` hosts after `after`."""
        return self._store.prune_steps(before, after, hosts)
