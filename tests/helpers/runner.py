"""Driving the agent's check runner in real time, as the agent's loop does."""

from __future__ import annotations

import time

from agent.runner import CheckRunner, Harvest


def run_checks_for(runner: CheckRunner, seconds: float) -> Harvest:
    """Start every check, run what falls due for `seconds` of wall time, and drain the runs."""
    runner.start_all()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runner.run_pending()
        time.sleep(0.05)
    return runner.drain()
