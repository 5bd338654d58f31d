"""The chaos run in its short form (bench/chaos.py --short): a simulated fleet against a real
collector while it is killed, its help desk and disk fail, a clock jumps and slow clients hold
connections. No acknowledged report is lost, no call is duplicated or left open."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHAOS = Path(__file__).resolve().parent.parent / "bench" / "chaos.py"


@pytest.mark.slow
def test_short_chaos_run_meets_its_goals() -> None:
    result = subprocess.run(
        [sys.executable, str(CHAOS), "--short", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.stdout, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    print(json.dumps(figures, indent=2))
    assert figures["reports_acknowledged"] > 0
    assert figures["acknowledged_but_lost"] == 0, figures["lost_examples"]
    assert figures["duplicate_tickets"] == 0
    assert figures["calls_open_after_recovery"] == 0
    assert figures["tickets_open_after_recovery"] == 0
    unrecovered = [fault for fault, took in figures["recover_seconds"].items() if took is None]
    assert not unrecovered, result.stderr[-3000:]
    assert result.returncode == 0
