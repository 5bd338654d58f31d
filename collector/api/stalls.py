"""Where the event loop was stuck when it stalled: one log line per stall, naming the code.

Reports wait while the loop runs something else. `runwatch_event_loop_lag_seconds` says how
long; this says what. A heartbeat on the loop marks every turn it gets; a watcher thread
looks every `PERIOD` and, while the heartbeat is late by more than `threshold`, samples the
loop thread's Python stack. When the loop is back, one WARNING names the stall's length,
the full garbage collections inside it, and the lines of runwatch's own code the samples
found most often (what a sampling profiler shows, but only for the stall). Lines are at most
one per `quiet` seconds, so a machine that stalls all the time does not flood the log.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time
from collections import Counter
from typing import Any

log = logging.getLogger(__name__)

PERIOD = 0.05  # how often the heartbeat beats and the watcher looks
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class StallWatch:
    """A heartbeat coroutine for the event loop and a daemon thread that watches it."""

    def __init__(self, threshold: float = 0.5, quiet: float = 10.0) -> None:
        self.threshold = threshold
        self.quiet = quiet
        self.stalls: list[dict[str, Any]] = []  # the last stalls seen, newest last (at most 20)
        self._beat = time.monotonic()
        self._loop_thread = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gc_began = 0.0
        self._gc_full: list[tuple[float, float]] = []  # (start, seconds) of full collections
        self._logged_at = -1e9

    async def heartbeat(self) -> None:
        """Run on the event loop: mark each turn it gets; start and stop the watcher."""
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        gc.callbacks.append(self._gc)
        self._thread = threading.Thread(target=self._watch, name="stall-watch", daemon=True)
        self._thread.start()
        try:
            while True:
                self._beat = time.monotonic()
                await asyncio.sleep(PERIOD)
        finally:
            self._stop.set()
            gc.callbacks.remove(self._gc)

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_began = time.monotonic()
        else:
            self._gc_full.append((self._gc_began, time.monotonic() - self._gc_began))
            del self._gc_full[:-50]

    def _watch(self) -> None:
        samples: Counter[tuple[str, ...]] = Counter()
        began: float | None = None
        while not self._stop.wait(PERIOD):
            beat = self._beat
            now = time.monotonic()
            if now - beat > self.threshold + PERIOD:
                if began is None:
                    began = beat
                frame = sys._current_frames().get(self._loop_thread)
                if frame is not None:
                    samples[_where(frame)] += 1
            elif began is not None:
                self._report(began, beat, samples)
                samples = Counter()
                began = None

    def _report(self, began: float, ended: float, samples: Counter[tuple[str, ...]]) -> None:
        seconds = ended - began
        collections = [s for at, s in self._gc_full if began <= at <= ended]
        where = [(" <- ".join(stack), n) for stack, n in samples.most_common(3)]
        stall = {
            "seconds": round(seconds, 3),
            "full_gc_seconds": round(sum(collections), 3),
            "samples": sum(samples.values()),
            "where": where,
        }
        self.stalls.append(stall)
        del self.stalls[:-20]
        if ended - self._logged_at < self.quiet:
            return
        self._logged_at = ended
        log.warning(
            "the event loop was held for %.2f s (reports waited): %s%s",
            seconds,
            f"full garbage collection {sum(collections):.2f} s; " if collections else "",
            "; ".join(f"{stack} ({n} of {stall['samples']} samples)" for stack, n in where)
            or "no sample of its stack",
        )


def _where(frame: Any, depth: int = 3) -> tuple[str, ...]:
    """The innermost `depth` lines of runwatch's own code on the stack (file:line function),
    or the innermost line of all when none is ours."""
    ours: list[str] = []
    innermost = ""
    while frame is not None and len(ours) < depth:
        code = frame.f_code
        line = f"{os.path.relpath(code.co_filename, _ROOT)}:{frame.f_lineno} {code.co_name}"
        innermost = innermost or line
        if code.co_filename.startswith(_ROOT) and "site-packages" not in code.co_filename:
            ours.append(line)
        frame = frame.f_back
    return tuple(ours) or (innermost,)
