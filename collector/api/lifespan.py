"""The app's lifespan: evaluation ticks in slices between reports, and the event loop's lag."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from litestar import Litestar

from collector.access import exposure_warnings
from collector.api.stalls import StallWatch
from collector.app import CollectorService
from collector.evaluation.tick import tune_garbage_collector

log = logging.getLogger(__name__)

# The event loop's lag is sampled with a timer this often (runwatch_event_loop_lag_seconds).
LAG_PERIOD = 0.25
# A tick gives the event loop back after this much work. Each step of a report (read, parse,
# ingest, answer) can wait one slice behind it, so the slice is short: 10 ms slices added
# 50 ms and more to a report that came during a tick at 10,000 hosts.
TICK_SLICE = 0.002
# Between slices the tick waits this long, so reports get the loop for at least as long as the
# tick does. With no pause, each step of a report (a step is one turn of the loop) waited for
# a slice, and a slice that holds a replica's host (a database round trip or a reload) can run
# well past 2 ms: reports arriving during a tick at 10,000 hosts waited 100-300 ms.
TICK_PAUSE = 0.002


def background(
    service: CollectorService,
) -> Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan: evaluation ticks in slices, the event loop's lag sampled, and the
    service's own background work (delivery to help desks) started and stopped with it."""

    @contextlib.asynccontextmanager
    async def ticking(app: Litestar) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(float(service.config.evaluation_interval))
                for _ in service.tick_slices(TICK_SLICE):
                    await asyncio.sleep(TICK_PAUSE)  # serve the reports that came meanwhile

        async def lag() -> None:
            clock = asyncio.get_running_loop().time
            while True:
                began = clock()
                await asyncio.sleep(LAG_PERIOD)
                service.ingest_metrics.loop_lag.observe(max(0.0, clock() - began - LAG_PERIOD))

        for warning in exposure_warnings(service.config):
            log.warning("%s", warning)
        tune_garbage_collector()
        tasks = [asyncio.create_task(loop()), asyncio.create_task(lag())]
        threshold = float(service.config.server.stall_warning)
        if threshold > 0:
            stalls = StallWatch(threshold)
            service.stall_watch = stalls  # for tests and tools: the last stalls seen
            tasks.append(asyncio.create_task(stalls.heartbeat()))
        service.start()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return ticking
