"""Reports stored in batches: each gets its own answer, a bad one fails alone, nothing is lost.

On both stores (the service's part), and the queue that gathers the reports on the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from checks.schema import Report
from collector.app import CollectorService
from collector.errors import Rejection
from collector.ingest.batching import IngestQueue
from collector.ingest.ingestor import IngestResult
from tests.helpers import FS_RULE, FakeClock, Reporter

BREACH_NOW = {**FS_RULE, "for": "0s"}


def kind(outcome: object) -> str:
    """ "accepted" or "duplicate", or the name of the exception that refused the report."""
    return outcome.status if isinstance(outcome, IngestResult) else type(outcome).__name__


def test_a_batch_answers_each_report_and_stores_them_all(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service([BREACH_NOW])
    web, db, mail = (Reporter(host, clock) for host in ("web01", "db01", "mail01"))
    first = web.report({"fs_used_ratio": 0.5})
    service.ingest("web01", first)
    outcomes = service.ingest_many(
        [
            ("web01", first, None),  # sent again: a duplicate
            ("db01", db.report({"fs_used_ratio": 0.99}), None),  # a breach: a call opens
            ("web01", mail.report({"fs_used_ratio": 0.5}), None),  # mail01's report, web01's token
        ]
    )
    assert [kind(o) for o in outcomes] == ["duplicate", "accepted", "Rejection"]
    assert isinstance(outcomes[2], Rejection) and outcomes[2].status == 403
    assert [call.host for call in service.calls("open", None)] == ["db01"]
    assert sorted(service.fleet.hosts) == ["db01", "web01"]
    # What the batch stored is what a restart finds.
    stored = {record.host: record.last_seq for record in service.store.load_hosts()}
    assert stored == {"web01": 1, "db01": 1}
    assert service.registry.get_sample_value("runwatch_ingest_batch_reports_count") == 2


def test_a_report_the_store_refuses_fails_alone(
    make_service: Callable[..., CollectorService], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service([BREACH_NOW])
    hosts = ["web01", "bad01", "db01"]
    reporters = {host: Reporter(host, clock) for host in hosts}
    real = service.store.save_series

    def save_series(series: list[Any]) -> None:
        if any(s.host == "bad01" for s in series):
            raise ValueError("the store cannot take bad01's series")
        real(series)

    monkeypatch.setattr(service.store, "save_series", save_series)
    outcomes = service.ingest_many(
        [(host, reporters[host].report({"fs_used_ratio": 0.99}), None) for host in hosts]
    )
    assert [kind(o) for o in outcomes] == ["accepted", "ValueError", "accepted"]
    assert sorted(call.host for call in service.calls("open", None)) == ["db01", "web01"]
    assert sorted(record.host for record in service.store.load_hosts()) == ["db01", "web01"]
    assert sorted(service.fleet.hosts) == ["db01", "web01"], "the view agrees with the store"
    assert service.registry.get_sample_value("runwatch_reports_failed_total") == 2  # batch, alone


class AdminShutdown(sqlite3.OperationalError):
    """A kind of OperationalError, as psycopg's errors by SQLSTATE are."""


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(sqlite3.OperationalError("database or disk is full"), id="disk full"),
        pytest.param(AdminShutdown("terminating connection"), id="server shut down"),
        pytest.param(OSError(28, "No space left on device"), id="no space"),
    ],
)
def test_a_store_that_cannot_write_at_all_is_not_tried_report_by_report(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    service = make_service([BREACH_NOW])
    tries = []

    def full(reports: Sequence[Report], now: float) -> list[IngestResult]:
        tries.append(len(reports))
        raise error

    monkeypatch.setattr(service.ingestor, "ingest_many", full)
    outcomes = service.ingest_many(
        [
            (host, Reporter(host, clock).report({"fs_used_ratio": 0.5}), None)
            for host in ("web01", "db01", "mail01")
        ]
    )
    # The batch, then the first report alone: the store fails as a whole, and the others
    # would fail the same way (each try reloads the fleet, seconds at 10,000 hosts).
    assert tries == [3, 1]
    assert all(o is error for o in outcomes)


class Recorder:
    """An ingest_many that records its batches and accepts everything (a duplicate when the
    host's seq was seen), optionally failing for one host."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.seen: dict[str, int] = {}

    def __call__(
        self, items: Sequence[tuple[str, Report, float | None]]
    ) -> list[IngestResult | Exception]:
        self.batches.append([report.host for _, report, _ in items])
        out: list[IngestResult | Exception] = []
        for _, report, _ in items:
            if report.host == "bad01":
                out.append(ValueError("bad01 fails"))
                continue
            duplicate = report.seq <= self.seen.get(report.host, 0)
            self.seen[report.host] = max(report.seq, self.seen.get(report.host, 0))
            out.append(IngestResult("duplicate" if duplicate else "accepted", report.seq, 1))
        return out


def test_reports_arriving_together_share_a_batch_with_one_report_per_host(clock: FakeClock) -> None:
    recorder = Recorder()

    async def run() -> list[Any]:
        queue = IngestQueue(recorder, max_batch=3)
        web = Reporter("web01", clock)
        again = web.report({"fs_used_ratio": 0.5})
        reports = [again, again] + [
            Reporter(f"h{i}", clock).report({"fs_used_ratio": 0.5}) for i in range(4)
        ]
        reports.append(Reporter("bad01", clock).report({"fs_used_ratio": 0.5}))
        return await asyncio.gather(
            *(queue.submit(r.host, r, 0.0) for r in reports), return_exceptions=True
        )

    outcomes = asyncio.run(run())
    # Seven at once: batches of at most three, web01's second copy never beside its first.
    assert recorder.batches == [["web01", "h0", "h1"], ["web01", "h2", "h3"], ["bad01"]]
    assert [kind(o) for o in outcomes] == [
        "accepted",
        "duplicate",
        "accepted",
        "accepted",
        "accepted",
        "accepted",
        "ValueError",
    ], "each caller gets its own outcome"


def test_a_quiet_collector_stores_each_report_at_once(clock: FakeClock) -> None:
    recorder = Recorder()

    async def run() -> None:
        queue = IngestQueue(recorder)
        for number in range(3):
            host = f"h{number}"
            result = await queue.submit(host, Reporter(host, clock).report({}), 0.0)
            assert result.status == "accepted"

    asyncio.run(run())
    assert recorder.batches == [["h0"], ["h1"], ["h2"]]
