"""A stall of the event loop is logged once, with its length and the code that held it."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest

from collector.api.stalls import StallWatch


def hold_the_loop(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))


def test_a_stall_names_its_length_and_the_code_that_held_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = StallWatch(threshold=0.2, quiet=0.0)

    async def run() -> None:
        beat = asyncio.create_task(watch.heartbeat())
        await asyncio.sleep(0.2)
        hold_the_loop(0.8)
        await asyncio.sleep(0.3)  # the watcher sees the loop back
        hold_the_loop(0.1)  # under the threshold: not a stall
        await asyncio.sleep(0.3)
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="collector.api.stalls"):
        asyncio.run(run())
    assert len(watch.stalls) == 1
    stall = watch.stalls[0]
    assert 0.6 <= stall["seconds"] <= 1.5
    assert stall["samples"] >= 5
    assert "tests/test_stalls.py" in stall["where"][0][0]
    assert "hold_the_loop" in stall["where"][0][0]
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("the event loop was held for 0.")
    assert "hold_the_loop" in line and "samples)" in line


def test_a_full_garbage_collection_inside_a_stall_is_named() -> None:
    watch = StallWatch(threshold=0.1, quiet=0.0)

    async def run() -> None:
        beat = asyncio.create_task(watch.heartbeat())
        await asyncio.sleep(0.2)
        gc.collect()
        hold_the_loop(0.4)
        await asyncio.sleep(0.3)
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)

    asyncio.run(run())
    assert len(watch.stalls) == 1 and watch.stalls[0]["full_gc_seconds"] > 0.0
    assert gc.callbacks.count(watch._gc) == 0  # taken away with the heartbeat
