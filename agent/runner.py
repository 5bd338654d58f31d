"""Run every check on its own cadence, under a timeout, on a small pool of worker threads.

This is the one place where failures become data: an exception or a timeout becomes a CheckRun
with an error, which the collector shows as UNKNOWN. A hung check delays the others by at most
HANDOFF_SECONDS: the checks queued behind it move to another worker.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import schedule

from checks.base import Check, CheckFailed, CheckOptions
from checks.schema import LABEL_NAME_PATTERN, CheckError, CheckRun, Measurement
from checks.schema import METRIC_NAME_PATTERN as NAME_PATTERN

log = logging.getLogger(__name__)

# A check running longer than this hands the checks queued behind it to another worker.
HANDOFF_SECONDS = 0.5


@dataclass(slots=True, eq=False)
class _Slot:
    options: CheckOptions
    check: Check
    interval: float
    timeout: float
    queued: bool = False  # due, and waiting for a worker
    running: bool = False
    started_at: float = 0.0
    deadline: float = 0.0
    timed_out: bool = False


@dataclass(slots=True, eq=False)
class _Worker:
    """A thread that runs due checks one after another."""

    slot: _Slot | None = None  # the check it runs now
    since: float = 0.0  # when that check began (monotonic)


@dataclass(slots=True)
class Harvest:
    """What finished since the last drain."""

    measurements: list[Measurement] = field(default_factory=list)
    runs: list[CheckRun] = field(default_factory=list)


_NAME = re.compile(NAME_PATTERN)
_LABEL = re.compile(LABEL_NAME_PATTERN)


def _sendable(measurements: list[Measurement], check: str) -> list[Measurement]:
    """Drop what the collector would refuse, so one bad value never costs the whole report.

    A NaN or infinite value has no JSON form, and a name or label name outside Prometheus'
    rules is refused.
    """
    kept = [
        m
        for m in measurements
        if math.isfinite(m.value)
        and _NAME.match(m.name)
        and all(_LABEL.match(label) for label in m.labels)
    ]
    if len(kept) != len(measurements):
        bad = sorted({m.name for m in measurements if m not in kept})[:5]
        log.warning(
            "check %s: dropped %d measurement(s) with a non-finite value or an invalid "
            "name or label name: %s",
            check,
            len(measurements) - len(kept),
            ", ".join(bad),
        )
    return kept


class CheckRunner:
    """Schedule checks with `schedule` and run them on a small, self-sizing pool of workers.

    Due checks queue for one worker thread, which runs them one after another: eight checks
    woken in eight threads at once cost several times their own CPU in thread switches. A check
    that runs longer than `handoff_seconds` (or past its timeout) hands the rest of the queue to
    another worker, so a slow or hung check delays the others by at most that, and the pool
    shrinks back to one worker once it is idle again.
    """

    def __init__(
        self,
        checks: list[tuple[CheckOptions, Check]],
        default_interval: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        handoff_seconds: float = HANDOFF_SECONDS,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._handoff = handoff_seconds
        self._on_settled = on_settled
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)  # the queue has a check
        self._run_done = threading.Condition(self._lock)  # a check finished (for run_once)
        self._queue: deque[_Slot] = deque()
        self._workers: list[_Worker] = []
        self._idle_workers = 0
        self._harvest = Harvest()
        self._scheduler = schedule.Scheduler()
        self._slots: list[_Slot] = []
        cohorts: dict[float, list[_Slot]] = {}  # checks with one interval start together
        for options, check in checks:
            interval = options.interval_seconds(default_interval)
            assert interval is not None  # the agent's interval is the last default
            slot = _Slot(options, check, interval, options.timeout_seconds(default_interval))
            self._slots.append(slot)
            cohorts.setdefault(interval, []).append(slot)
        for interval, cohort in cohorts.items():
            # schedule types `every` as int, but takes float seconds (it builds a timedelta).
            self._scheduler.every(interval).seconds.do(  # type: ignore[arg-type]
                self._start_many, cohort
            )

    @classmethod
    def from_options(
        cls,
        checks: Sequence[CheckOptions],
        default_interval: float,
        build: Callable[[CheckOptions, float], Check],
        *,
        on_settled: Callable[[], None] | None = None,
    ) -> CheckRunner:
        """Build each check with the timeout the runner will abandon its runs at, and run them.

        `build(options, timeout)` makes the check; its processes and requests must end within
        `timeout` seconds of the start of a run, so none outlives the run.
        """
        return cls(
            [
                (options, build(options, options.timeout_seconds(default_interval)))
                for options in checks
            ],
            default_interval,
            on_settled=on_settled,
        )

    @property
    def check_count(self) -> int:
        return len(self._slots)

    def timeouts(self) -> dict[str, float]:
        """Each check's timeout in seconds, by instance name."""
        return {slot.options.instance: slot.timeout for slot in self._slots}

    @property
    def worker_count(self) -> int:
        """Worker threads alive now (1 when all is well; more while a check is slow)."""
        with self._lock:
            return len(self._workers)

    def start_all(self) -> None:
        """Start every check now (at agent start, and for `runwatch check`)."""
        self._start_many(self._slots)

    def run_pending(self) -> None:
        """Start the checks that are due, flag the ones past their deadline, hand off if slow."""
        self._scheduler.run_pending()
        self.reap()

    def idle_seconds(self) -> float:
        """Seconds until the next check is due (for the main loop's sleep)."""
        idle = self._scheduler.idle_seconds
        return max(0.0, idle) if idle is not None else 1.0

    def attention_seconds(self) -> float | None:
        """Seconds until `reap()` has something to do (a timeout or a hand-off), if anything runs.

        The main loop sleeps no longer than this; `on_settled` wakes it early when the queue
        empties.
        """
        now = self._monotonic()
        with self._lock:
            times = [slot.deadline for slot in self._slots if slot.running and not slot.timed_out]
            if self._queue:
                times += [
                    worker.since + self._handoff
                    for worker in self._workers
                    if worker.slot is not None
                ]
        return max(0.0, min(times) - now) if times else None

    def busy(self) -> bool:
        with self._lock:
            return any(slot.queued or (slot.running and not slot.timed_out) for slot in self._slots)

    def drain(self) -> Harvest:
        """Take everything that finished since the last drain."""
        with self._lock:
            harvest, self._harvest = self._harvest, Harvest()
        return harvest

    def reap(self) -> None:
        """Turn every check past its timeout into an error, once per run; hand off if slow."""
        now = self._monotonic()
        with self._lock:
            for slot in self._slots:
                if slot.running and not slot.timed_out and now >= slot.deadline:
                    slot.timed_out = True
                    message = (
                        f"did not finish within its timeout of {slot.timeout:g}s; "
                        "raise `timeout` for this check or find what hangs"
                    )
                    log.warning("check %s %s", slot.options.instance, message)
                    self._harvest.runs.append(self._run(slot, slot.timeout, "timeout", message))
                    self._run_done.notify_all()
            if self._queue:
                self._dispatch(now)

    def _run(
        self,
        slot: _Slot,
        duration: float,
        kind: str | None,
        message: str = "",
        output: str | None = None,
    ) -> CheckRun:
        # A plugin may print NUL characters; the collector refuses text holding them.
        message = message.replace("\x00", "")
        error = CheckError(kind=kind, message=message[:4096]) if kind else None  # type: ignore[arg-type]
        return CheckRun(
            check=slot.options.instance,
            type=slot.options.type,
            interval_seconds=slot.interval,
            started_at=slot.started_at,
            duration_seconds=round(duration, 6),
            error=error,
            output=output.replace("\x00", "")[:4096] if output else None,
        )

    def _start_many(self, slots: list[_Slot]) -> None:
        with self._lock:
            for slot in slots:
                self._start(slot)
            if self._queue:
                self._dispatch(self._monotonic())

    def _start(self, slot: _Slot) -> None:
        """Queue a due check, unless it is queued or running already. Hold the lock."""
        if slot.queued:
            return  # due again before a worker got to it: once is enough
        if slot.running:
            if not slot.timed_out:
                return  # still inside its timeout: let it finish
            # Hung past its timeout and due again: say so rather than stack threads.
            hung_for = self._monotonic() - (slot.deadline - slot.timeout)
            self._harvest.runs.append(
                self._run(
                    slot,
                    0.0,
                    "skipped",
                    f"previous run still hung after {hung_for:.0f}s; not started again",
                )
            )
            return
        slot.queued = True
        self._queue.append(slot)

    def _dispatch(self, now: float) -> None:
        """Get the queue worked on: wake an idle worker, or start one if all are held up.

        Hold the lock.
        """
        if self._idle_workers:
            self._work_ready.notify()
            return
        for worker in self._workers:
            slot = worker.slot
            if slot is None or (not slot.timed_out and now - worker.since < self._handoff):
                return  # it takes the queue when its current check is done
        worker = _Worker()
        self._workers.append(worker)
        if len(self._workers) > 1:
            log.info(
                "check %s is slow; the other checks go on in another thread",
                ", ".join(w.slot.options.instance for w in self._workers if w.slot),
            )
        threading.Thread(
            target=self._work, args=(worker,), daemon=True, name=f"checks-{len(self._workers)}"
        ).start()

    def _work(self, worker: _Worker) -> None:
        """A worker: run queued checks; leave when another worker already waits for more."""
        while True:
            with self._lock:
                worker.slot = None
                while not self._queue:
                    if self._idle_workers:
                        self._workers.remove(worker)
                        return
                    if self._on_settled is not None and not any(
                        w.slot is not None and not w.slot.timed_out for w in self._workers
                    ):
                        self._on_settled()
                    self._idle_workers += 1
                    self._work_ready.wait()
                    self._idle_workers -= 1
                slot = self._queue.popleft()
                slot.queued, slot.running, slot.timed_out = False, True, False
                slot.started_at = self._clock()
                worker.since = self._monotonic()
                slot.deadline = worker.since + slot.timeout
                worker.slot = slot
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
            self._run_done.notify_all()
            if slot.timed_out:
                log.info(
                    "check %s finished after %.1fs, past its timeout; result discarded",
                    slot.options.instance,
                    duration,
                )
                return
            self._harvest.measurements.extend(_sendable(measurements, slot.options.instance))
            output = getattr(slot.check, "last_output", None)
            self._harvest.runs.append(
                self._run(
                    slot, duration, kind, message, output if isinstance(output, str) else None
                )
            )

    def run_once(self, wait_seconds: float | None = None) -> Harvest:
        """Run every check once and wait for each to finish or time out (`runwatch check`)."""
        self.start_all()
        limit = max((s.timeout for s in self._slots), default=0.0) + 1.0
        until = self._monotonic() + (wait_seconds if wait_seconds is not None else limit)
        while self.busy() and self._monotonic() < until:
            attention = self.attention_seconds()
            pause = min(until - self._monotonic(), limit if attention is None else attention)
            with self._lock:
                if any(s.queued or (s.running and not s.timed_out) for s in self._slots):
                    self._run_done.wait(max(0.001, pause))
            self.reap()
        self.reap()
        return self.drain()
