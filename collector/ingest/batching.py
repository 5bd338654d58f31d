"""Reports that arrive together are stored together: one transaction for a batch of them.

A shared store (PostgreSQL) costs a few round trips and a commit per transaction, whatever it
holds. The event loop serves one thing at a time, so while it stores a batch, or runs a slice
of a tick, more reports arrive and wait; the next batch takes all of them. A quiet collector
stores each report alone, at once; a busy one stores many per transaction, and each costs less.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from checks.schema import Report
from collector.ingest.ingestor import IngestResult

IngestMany = Callable[[Sequence[tuple[str, Report, float | None]]], list[IngestResult | Exception]]
# The most reports in one transaction: it bounds how long the event loop is held by one batch.
MAX_BATCH = 64

_Waiting = tuple[str, Report, float, "asyncio.Future[IngestResult | Exception]"]


class IngestQueue:
    """Hands reports to `ingest_many` in batches, at most one report per host in each, and
    gives every caller its own outcome."""

    def __init__(self, ingest_many: IngestMany, max_batch: int = MAX_BATCH) -> None:
        self._ingest_many = ingest_many
        self._max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._scheduled = False

    async def submit(self, token_host: str, report: Report, started: float) -> IngestResult:
        """Ingest a report with the next batch. Raises what refused it (a Rejection, the
        store's error), as a call of its own would."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IngestResult | Exception] = loop.create_future()
        self._waiting.append((token_host, report, started, future))
        self._schedule(loop)
        # Shielded: an agent that hangs up does not take its report out of a batch under way.
        outcome = await asyncio.shield(future)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run_batch)

    def _run_batch(self) -> None:
        self._scheduled = False
        batch: list[_Waiting] = []
        later: list[_Waiting] = []
        hosts: set[str] = set()
        for item in self._waiting:
            # A second report of a host (an agent's retry) waits for the next batch: the
            # first must be stored before the second can be told from a duplicate.
            if len(batch) < self._max_batch and item[1].host not in hosts:
                hosts.add(item[1].host)
                batch.append(item)
            else:
                later.append(item)
        self._waiting = later
        if later:
            self._schedule(asyncio.get_running_loop())
        if not batch:
            return
        try:
            outcomes = self._ingest_many(
                [(host, report, started) for host, report, started, _ in batch]
            )
        except Exception as exc:  # noqa: BLE001 - every caller in the batch gets it
            outcomes = [exc] * len(batch)
        for (_, _, _, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
