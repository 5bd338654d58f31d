"""Run every check on its own cadence, each in its own thread under a timeout.

This is the one place where failures become data: an exception or a timeout becomes a CheckRun
with an error, which the collector shows as UNKNOWN. A hung check never delays another one.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import schedule

from checks.base import Check, CheckFailed, CheckOptions
from checks.schema import METRIC_NAME_PATTERN as NAME_PATTERN
from checks.schema import CheckError, CheckRun, Measurement

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Slot:
    options: CheckOptions
    check: Check
    interval: float
    timeout: float
    running: bool = False
    started_at: float = 0.0
    deadline: float = 0.0
    timed_out: bool = False
    # Each check has one long-lived worker thread, started on its first run: creating a
    # thread per run cost about half the agent's CPU in system time.
    wake: threading.Event = field(default_factory=threading.Event)
    worker: threading.Thread | None = None


@dataclass(slots=True)
class Harvest:
    """What finished since the last drain."""

    measurements: list[Measurement] = field(default_factory=list)
    runs: list[CheckRun] = field(default_factory=list)


_NAME = re.compile(NAME_PATTERN)


def _sendable(measurements: list[Measurement], check: str) -> list[Measurement]:
    """Drop what the collector would refuse, so one bad value never costs the whole report.

    A NaN or infinite value has no JSON form, and a name outside Prometheus' rules is refused.
    """
    kept = [m for m in measurements if math.isfinite(m.value) and _NAME.match(m.name)]
    if len(kept) != len(measurements):
        bad = sorted({m.name for m in measurements if m not in kept})[:5]
        log.warning("check %s: dropped %d measurement(s) with a non-finite value or an invalid "
                    "name: %s", check, len(measurements) - len(kept), ", ".join(bad))
    return kept


class CheckRunner:
    """Schedule checks with `schedule`, run each in a thread, and enforce timeouts."""

    def __init__(self, checks: list[tuple[CheckOptions, Check]], default_interval: float,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._harvest = Harvest()
        self._scheduler = schedule.Scheduler()
        self._slots: list[_Slot] = []
        for options, check in checks:
            interval = float(options.interval or options.default_interval or default_interval)
            timeout = float(options.timeout) if options.timeout is not None else min(
                interval, options.default_timeout)
            slot = _Slot(options, check, interval, timeout)
            self._slots.append(slot)
            # schedule types `every` as int, but takes float seconds (it builds a timedelta).
            self._scheduler.every(interval).seconds.do(  # type: ignore[arg-type]
                self._start, slot)

    @property
    def check_count(self) -> int:
        return len(self._slots)

    def start_all(self) -> None:
        """Start every check now (at agent start, and for `runwatch check`)."""
        for slot in self._slots:
            self._start(slot)

    def run_pending(self) -> None:
        """Start the checks that are due and flag the ones past their deadline."""
        self._scheduler.run_pending()
        self.reap()

    def idle_seconds(self) -> float:
        """Seconds until the next check is due (for the main loop's sleep)."""
        idle = self._scheduler.idle_seconds
        return max(0.0, idle) if idle is not None else 1.0

    def busy(self) -> bool:
        with self._lock:
            return any(slot.running and not slot.timed_out for slot in self._slots)

    def drain(self) -> Harvest:
        """Take everything that finished since the last drain."""
        with self._lock:
            harvest, self._harvest = self._harvest, Harvest()
        return harvest

    def reap(self) -> None:
        """Turn every check that ran past its timeout into an error, once per run."""
        now = self._monotonic()
        with self._lock:
            for slot in self._slots:
                if slot.running and not slot.timed_out and now >= slot.deadline:
                    slot.timed_out = True
                    message = (f"did not finish within its timeout of {slot.timeout:g}s; "
                               "raise `timeout` for this check or find what hangs")
                    log.warning("check %s %s", slot.options.instance, message)
                    self._harvest.runs.append(self._run(slot, slot.timeout, "timeout", message))

    def _run(self, slot: _Slot, duration: float, kind: str | None, message: str = "",
             output: str | None = None) -> CheckRun:
        error = CheckError(kind=kind, message=message[:4096]) if kind else None  # type: ignore[arg-type]
        return CheckRun(check=slot.options.instance, type=slot.options.type,
                        interval_seconds=slot.interval, started_at=slot.started_at,
                        duration_seconds=round(duration, 6), error=error,
                        output=output[:4096] if output else None)

    def _start(self, slot: _Slot) -> None:
        with self._lock:
            if slot.running:
                if not slot.timed_out:
                    return  # still inside its timeout: let it finish
                # Hung past its timeout and due again: say so rather than stack threads.
                hung_for = self._monotonic() - (slot.deadline - slot.timeout)
                self._harvest.runs.append(self._run(
                    slot, 0.0, "skipped",
                    f"previous run still hung after {hung_for:.0f}s; not started again"))
                return
            slot.running = True
            slot.timed_out = False
            slot.started_at = self._clock()
            slot.deadline = self._monotonic() + slot.timeout
            if slot.worker is None:
                slot.worker = threading.Thread(target=self._work, args=(slot,),
                                               name=f"check-{slot.options.instance}",
                                               daemon=True)
                slot.worker.start()
        slot.wake.set()

    def _work(self, slot: _Slot) -> None:
        """The check's worker: run the check each time it is woken."""
        while True:
            slot.wake.wait()
            slot.wake.clear()
            self._execute(slot)

    def _execute(self, slot: _Slot) -> None:
        began = self._monotonic()
        measurements: list[Measurement] = []
        kind: str | None = None
        message = ""
        try:
            measurements = slot.check.collect()
        except CheckFailed as exc:
            kind, message = "error", str(exc)
            measurements = exc.measurements
            log.warning("check %s failed: %s", slot.options.instance, message)
        except Exception as exc:
            kind, message = "error", f"{type(exc).__name__}: {exc}"
            log.exception("check %s raised", slot.options.instance)
        duration = self._monotonic() - began
        with self._lock:
            slot.running = False
            if slot.timed_out:
                log.info("check %s finished after %.1fs, past its timeout; result discarded",
                         slot.options.instance, duration)
                return
            self._harvest.measurements.extend(_sendable(measurements, slot.options.instance))
            output = getattr(slot.check, "last_output", None)
            self._harvest.runs.append(self._run(
                slot, duration, kind, message, output if isinstance(output, str) else None))

    def run_once(self, wait_seconds: float | None = None) -> Harvest:
        """Run every check once and wait for each to finish or time out (`runwatch check`)."""
        self.start_all()
        limit = max((s.timeout for s in self._slots), default=0.0) + 1.0
        until = self._monotonic() + (wait_seconds if wait_seconds is not None else limit)
        while self.busy() and self._monotonic() < until:
            time.sleep(0.02)
            self.reap()
        self.reap()
        return self.drain()
