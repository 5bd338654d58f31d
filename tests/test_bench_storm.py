"""bench/storm.py, run small against a real collector: a breach of 60 hosts with storm control
at 5 calls opens exactly 5 calls and one umbrella listing the other 55, and every figure is
there. No figure is judged here: a loaded test machine says nothing about performance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.slow
def test_a_small_storm_opens_max_calls_calls_and_one_umbrella_listing_the_rest() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "storm.py"),
            "--hosts",
            "60",
            "--max-calls",
            "5",
            "--update-every",
            "1",
            "--connections",
            "8",
            "--desk-delay",
            "0",
            "--settle",
            "0.5",
            "--timeout",
            "60",
            "--set",
            "evaluation_interval=1s",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[storm]" in result.stderr, "progress goes to stderr"
    figures = json.loads(result.stdout)
    assert figures["hosts"] == 60
    assert figures["storm"]["max_calls"] == 5
    assert (figures["calls_expected"], figures["held_back_expected"]) == (5, 55)
    assert figures["known"]["statuses"] == {"202": 60}

    breach = figures["breach"]
    assert breach["statuses"] == {"202": 60}
    assert breach["complete"] is True
    desk = breach["desk"]
    assert (desk["calls_opened"], desk["umbrellas_opened"], desk["listed"]) == (5, 1, 55)
    assert desk["by_kind"]["open"] == 6, "max_calls calls and one umbrella, nothing more"
    assert desk["umbrella_updates"] >= 1
    assert desk["umbrella_update_max_bytes"] > 0
    assert 0 < breach["seconds"] <= breach["desk_complete_s"]
    assert breach["umbrella_opened_s"] <= breach["umbrella_complete_s"]
    assert breach["collector_cpu_s"] > 0
    assert breach["collector_rss_mib_peak"] > 0
    assert breach["outbox_pending_after"] == 0

    after = figures["store_after_breach"]
    assert (after["calls"], after["umbrellas"], after["storm_members"]) == (6, 1, 55)
    assert after["umbrella_description_bytes"] > 0
    growth = figures["store_growth"]
    for name in ("bytes", "pages_bytes", "event_texts_bytes", "outbox_payload_bytes"):
        assert isinstance(growth[name], int)
        assert isinstance(growth[f"{name}_per_held_back_host"], int)
    assert growth["member_bytes"] > 0

    recovery = figures["recovery"]
    assert recovery["statuses"] == {"202": 60}
    assert recovery["complete"] is True
    assert (recovery["desk"]["calls_resolved"], recovery["desk"]["umbrellas_resolved"]) == (5, 1)
    assert recovery["umbrella_resolved_s"] is not None
    assert figures["collector_exit"] == 0
    assert len(figures["load_average_before"]) == len(figures["load_average_after"]) == 3
