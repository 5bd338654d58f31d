"""A small fleet as a help desk sees it on a normal day, for the console's browser tests and
the docs' screenshots: four hosts with the system checks' measurements and labels, under the
shipped system rules' thresholds; db01's data disk is critical, web02 runs short of memory
(warning). seed_fleet sends their reports, after a day of past ones if asked (the graphs)."""

from __future__ import annotations

import json
import math
import random
import time
import urllib.request
from typing import Any

from tests.helpers.browser import COLLECTOR, FLEET, Console
from tests.helpers.reports import measurement
from tests.procs import wait_for


def _fleet_rule(
    name: str, metric: str, warning: float, critical: float, text: str
) -> dict[str, Any]:
    return {
        "name": name,
        "metric": metric,
        "warning": warning,
        "critical": critical,
        "for": "0s",  # the shipped rules wait minutes; a test cannot
        "owner": "systems-administration",
        "description": text,
    }


# The shipped system rules' thresholds (config/rules/system.yaml), opening calls at once.
FLEET_CONFIG: dict[str, Any] = {
    **COLLECTOR,
    "rules": [
        _fleet_rule(
            "filesystem_full",
            "fs_used_ratio",
            0.85,
            0.95,
            "The filesystem is filling up. Free space or grow the volume before writes fail.",
        ),
        _fleet_rule(
            "memory_pressure",
            "memory_used_ratio",
            0.90,
            0.97,
            "Little memory is available; the OOM killer may start ending processes.",
        ),
        _fleet_rule(
            "load_high",
            "load5_per_core",
            2.0,
            4.0,
            "More runnable tasks than CPUs can serve, for a sustained period.",
        ),
    ],
    # A rota and escalation levels, for the overview's on-call list and the call's escalation
    # line; no rule sends anything, and the first level is hours away.
    "notifications": {
        "channels": {
            name: {"type": "apprise", "url": f"json://127.0.0.1:9/{name}"}
            for name in ("alice-phone", "bob-phone", "dave-phone")
        },
        "people": {name: {"channels": [f"{name}-phone"]} for name in ("alice", "bob", "dave")},
        "rotas": {
            "systems-administration": {"people": ["alice", "bob"], "starts": "2026-01-05 09:00"}
        },
        "escalation": {"systems-administration": [{"next_on_call": True}, {"people": ["dave"]}]},
    },
}

GIB = 1024**3


def _host_figures(
    root: float, data: float, memory: float, load: float, cpu: float
) -> list[tuple[str, float, str, dict[str, str]]]:
    """What an agent's system checks report for a host: (metric, value, unit, labels)."""
    size = 200 * GIB
    return [
        ("fs_used_ratio", root, "ratio", {"mountpoint": "/"}),
        ("fs_free_bytes", (1 - root) * 40 * GIB, "bytes", {"mountpoint": "/"}),
        ("fs_used_ratio", data, "ratio", {"mountpoint": "/srv"}),
        ("fs_free_bytes", (1 - data) * size, "bytes", {"mountpoint": "/srv"}),
        ("fs_size_bytes", size, "bytes", {"mountpoint": "/srv"}),
        ("memory_used_ratio", memory, "ratio", {}),
        ("memory_total_bytes", 16 * GIB, "bytes", {}),
        ("cpu_utilization_ratio", cpu, "ratio", {}),
        ("load5_per_core", load, "", {}),
        ("uptime_seconds", 23 * 86400 + 4 * 3600, "seconds", {}),
    ]


# A small fleet as a help desk sees it on a normal day: db01's data disk is critical, web02
# runs short of memory (warning), the rest are fine.
FLEET_STATE = {
    "web01": _host_figures(0.41, 0.37, 0.52, 0.31, 0.18),
    "web02": _host_figures(0.44, 0.39, 0.934, 0.62, 0.41),
    "db01": _host_figures(0.58, 0.967, 0.71, 0.85, 0.36),
    "backup01": _host_figures(0.33, 0.78, 0.22, 0.12, 0.05),
}


# The agents' own labels (agent config `labels:`), as host groups and the search use them.
FLEET_LABELS = {
    "web01": {"role": "web", "site": "fra"},
    "web02": {"role": "web", "site": "ber"},
    "db01": {"role": "db", "site": "fra"},
    "backup01": {"role": "backup", "site": "ber"},
}


def seed_fleet(console: Console, hours: int = 0) -> list[dict[str, Any]]:
    """Reports from every FLEET host (FLEET_STATE), under FLEET_CONFIG's rules, after `hours`
    of past reports every 5 minutes (for the history graphs); returns the open calls once
    db01's critical and web02's warning are open."""
    now = time.time()
    for host, figures in FLEET_STATE.items():
        checks = sorted({_check_of(name) for name, *_ in figures})
        for step in range(hours * 12, -1, -1):
            at = now - step * 300
            items = [
                measurement(
                    _check_of(name),
                    name,
                    _past_value(host, name, unit, labels, value, hours_ago=step / 12),
                    at,
                    unit=unit,
                    labels=labels,
                )
                for name, value, unit, labels in figures
            ]
            console.report(host, items, checks, FLEET_LABELS[host], at=at)

    def all_in() -> bool:
        with urllib.request.urlopen(console.url + "/api/v1/hosts", timeout=30) as answer:
            return {h["host"] for h in json.load(answer)} >= {*FLEET_STATE, "mon01"}

    # Generous bounds: on a loaded machine the local agent's first checks take a while.
    wait_for("every host's first report, the local agent's (mon01) too", all_in, timeout=60)

    def both_open() -> list[dict[str, Any]] | None:
        calls = console.open_calls()
        return calls if {c["host"] for c in calls} >= {"db01", "web02"} else None

    calls: list[dict[str, Any]] = wait_for("the fleet's calls", both_open, timeout=60)
    return calls


# Problems that grew lately: (host, metric, mountpoint) -> (the value before, over how many
# hours it rose to its value now). db01's /srv filled in the last 90 minutes; web02's memory
# grew over the last 3 hours.
RISES = {
    ("db01", "fs_used_ratio", "/srv"): (0.78, 1.5),
    ("web02", "memory_used_ratio", ""): (0.72, 3.0),
}


def _past_value(
    host: str, name: str, unit: str, labels: dict[str, str], now: float, *, hours_ago: float
) -> float:
    """What a series measured `hours_ago`, ending at its value `now`: filesystems grow slowly,
    memory, CPU and load swing with the working day, a problem rose lately (RISES)."""
    if hours_ago == 0 or unit not in ("ratio", ""):
        return now
    before, rise = RISES.get((host, name, labels.get("mountpoint", "")), (now, 0.0))
    if hours_ago < rise:
        return now + (before - now) * hours_ago / rise
    if name.startswith("fs_"):
        return before * (1 - 0.003 * hours_ago)
    swing = 0.08 * math.sin(2 * math.pi * (hours_ago - 8) / 24)
    jitter = random.Random(f"{host} {name} {hours_ago}").uniform(-0.02, 0.02)
    value = before * (1 + swing + jitter)
    return min(value, 1.0) if unit == "ratio" else value


def _check_of(metric: str) -> str:
    prefix = metric.split("_", maxsplit=1)[0]
    return {"fs": "filesystem", "cpu": "cpu", "load5": "load"}.get(prefix, prefix)


assert set(FLEET_STATE) == set(FLEET), "every FLEET host has a token and a state"
