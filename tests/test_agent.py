"""The agent's runner, spool and shipper: failures become data, and nothing is dropped."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from agent.runner import CheckRunner
from agent.shipper import ReportShipper, RetryLater, SendResult
from agent.spool import SEQ_BLOCK, Spool
from checks.base import CheckFailed, CheckOptions
from checks.schema import Measurement
from tests.helpers.runner import run_checks_for


class _Options(CheckOptions, frozen=True, tag="test"):
    pass


class CountingCheck:
    name: ClassVar[str] = "counting"

    def __init__(self, label: str) -> None:
        self.label = label
        self.runs = 0

    def collect(self) -> list[Measurement]:
        self.runs += 1
        return [Measurement(check=self.label, name="runs", value=self.runs, timestamp=time.time())]


class HangingCheck:
    name: ClassVar[str] = "hanging"

    def __init__(self) -> None:
        self.release = threading.Event()

    def collect(self) -> list[Measurement]:
        self.release.wait(30)
        return []


class FailingCheck:
    name: ClassVar[str] = "failing"

    def collect(self) -> list[Measurement]:
        raise CheckFailed("cannot read /nonexistent: set `path` to an existing file")


def test_hung_check_times_out_as_an_error_and_others_keep_their_cadence() -> None:
    fast = CountingCheck("fast")
    hung = HangingCheck()
    runner = CheckRunner(
        [
            (_Options(name="fast", interval=1), fast),
            (_Options(name="hung", interval=1, timeout=0.5), hung),
        ],
        default_interval=60,
    )
    try:
        harvest = run_checks_for(runner, 3.2)
    finally:
        hung.release.set()
    assert fast.runs >= 3, "the hung check did not hold back the fast one"
    hung_runs = [r for r in harvest.runs if r.check == "hung"]
    assert hung_runs[0].error is not None
    assert hung_runs[0].error.kind == "timeout"
    assert "timeout of 0.5s" in hung_runs[0].error.message
    # Due again while still hung: reported as skipped, not a second thread.
    assert {r.error.kind for r in hung_runs[1:] if r.error} <= {"skipped"}
    assert sum(1 for r in harvest.runs if r.check == "fast" and r.error is None) >= 3


def test_failing_check_becomes_an_error_entry() -> None:
    runner = CheckRunner([(_Options(name="broken"), FailingCheck())], default_interval=60)
    harvest = runner.run_once()
    (run,) = harvest.runs
    assert run.error is not None
    assert run.error.kind == "error"
    assert "set `path`" in run.error.message
    assert harvest.measurements == []


def test_spool_keeps_reports_in_order_across_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_reports=100)
    seqs = [spool.next_seq() for _ in range(3)]
    for seq in seqs:
        spool.put(seq, f"report {seq}".encode())
    boot_id = spool.boot_id
    spool.ack(seqs[0])
    reopened = Spool(tmp_path, max_bytes=1 << 20, max_reports=100)
    assert reopened.boot_id == boot_id
    assert reopened.oldest() == (seqs[1], f"report {seqs[1]}".encode())
    # Not closed, as after kill -9: the rest of the reserved block is skipped, never reused.
    assert reopened.next_seq() > seqs[-1], "a seq is never reused"


def test_spool_reserves_seqs_a_block_at_a_time_and_a_clean_close_leaves_no_gap(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_reports=100)
    state = tmp_path / "state.json"
    seqs = [spool.next_seq() for _ in range(3)]
    assert seqs == [1, 2, 3]
    assert json.loads(state.read_text())["next_seq"] == 1 + SEQ_BLOCK, "one write per block"
    after_first = state.read_text()
    spool.next_seq()
    assert state.read_text() == after_first
    spool.close()
    assert json.loads(state.read_text())["next_seq"] == 5
    reopened = Spool(tmp_path, max_bytes=1 << 20, max_reports=100)
    assert reopened.next_seq() == 5
    # Killed before close(): the next run skips what was reserved, and reuses nothing.
    assert Spool(tmp_path, max_bytes=1 << 20, max_reports=100).next_seq() == 5 + SEQ_BLOCK


def test_spool_bound_drops_oldest_first_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_reports=10)
    for _ in range(15):
        seq = spool.next_seq()
        spool.put(seq, b"x" * 100)
    stats = spool.stats()
    assert stats.reports == 10
    assert stats.dropped == 5
    oldest = spool.oldest()
    assert oldest is not None
    assert oldest[0] == 6
    assert Spool(tmp_path, max_bytes=1 << 20, max_reports=10).dropped == 5, "count persists"


def test_shipper_retries_until_delivered_and_keeps_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_reports=100)
    for _ in range(5):
        seq = spool.next_seq()
        spool.put(seq, str(seq).encode())
    received: list[bytes] = []
    outage = {"left": 3}

    def send(body: bytes) -> SendResult:
        if outage["left"]:
            outage["left"] -= 1
            return SendResult(None, "connection refused")
        received.append(body)
        return SendResult(202, "ok")

    shipper = ReportShipper(spool, send, min_backoff=0.01, max_backoff=0.05)
    shipper.start()
    deadline = time.monotonic() + 5
    while len(received) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    shipper.stop()
    assert received == [b"1", b"2", b"3", b"4", b"5"]
    assert spool.stats().reports == 0


@pytest.mark.parametrize(
    ("status", "kept_in_queue"),
    [
        pytest.param(503, True, id="5xx: retried later"),
        pytest.param(401, True, id="401: kept until the token is fixed"),
        pytest.param(422, False, id="422: set aside in rejected/, queue moves on"),
    ],
)
def test_shipper_never_drops_a_report(tmp_path: Path, status: int, kept_in_queue: bool) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_reports=100)
    seq = spool.next_seq()
    spool.put(seq, b"{}")
    shipper = ReportShipper(spool, lambda body: SendResult(status, "no"))
    if kept_in_queue:
        with pytest.raises(RetryLater):
            shipper.drain_once()
        assert spool.oldest() == (seq, b"{}")
    else:
        shipper.drain_once()
        assert spool.oldest() is None
        assert (tmp_path / "rejected" / f"{seq:020d}.report").read_bytes() == b"{}"


def test_spool_byte_bound_and_stats(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=65536, max_reports=1000)
    for _ in range(10):
        seq = spool.next_seq()
        spool.put(seq, b"x" * 10_000)
    stats = spool.stats()
    assert stats.bytes <= 65536
    assert (stats.reports, stats.dropped) == (6, 4)
    oldest = spool.oldest()
    assert oldest is not None
    spool.ack(oldest[0])
    assert spool.stats().bytes == 50_000
    assert Spool(tmp_path, max_bytes=65536, max_reports=1000).stats().bytes == 50_000


class NaNCheck:
    name: ClassVar[str] = "nan"

    def collect(self) -> list[Measurement]:
        now = time.time()
        return [
            Measurement(check="nan", name="good", value=1.0, timestamp=now),
            Measurement(check="nan", name="bad", value=float("nan"), timestamp=now),
            Measurement(check="nan", name="worse", value=float("inf"), timestamp=now),
        ]


def test_non_finite_values_are_dropped_not_sent() -> None:
    harvest = CheckRunner([(_Options(name="nan"), NaNCheck())], default_interval=60).run_once()
    assert [m.name for m in harvest.measurements] == ["good"]
    assert harvest.runs[0].error is None
