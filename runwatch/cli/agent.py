"""`runwatch agent` runs the agent; `runwatch check` runs its checks once.

What these import at the top is all `runwatch agent` loads besides the agent: keep it light
(tests/test_footprint.py)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from runwatch.cli.common import EXIT_FAILED, EXIT_OK, add_command, add_config_option, log


def cmd_agent(args: argparse.Namespace) -> int:
    """Run the agent: checks on their schedule, a report to the collector every interval. SIGHUP
    reloads the config (an invalid one is logged and the running one kept); SIGTERM spools a final
    report and exits within 5 s."""
    from agent.config import load_agent_config
    from agent.notify import SystemdNotifier
    from agent.service import Agent

    config_path: Path = args.config
    agent = Agent(
        load_agent_config(config_path),
        load_config=lambda: load_agent_config(config_path),
        notifier=SystemdNotifier(),
    )

    # The handlers only set flags: the main loop does the work within half a second.
    def stop(signum: int, _frame: object) -> None:
        log.info("%s: spooling a final report and stopping", signal.Signals(signum).name)
        agent.stop()

    def reload(_signum: int, _frame: object) -> None:
        log.info("SIGHUP: reloading %s", config_path)
        agent.request_reload()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    agent.run()
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Run every configured check once, print what it measured; exit 1 if any check failed."""
    from agent.config import load_agent_config
    from agent.service import build_runner

    config = load_agent_config(args.config)
    runner = build_runner(config)
    harvest = runner.run_once()
    empty = {run.check for run in harvest.runs if run.error is None} - {
        m.check for m in harvest.measurements
    }
    if empty:
        # Rate checks need two samples: take a second one a moment later.
        time.sleep(1.0)
        second = runner.run_once()
        harvest.measurements += [m for m in second.measurements if m.check in empty]
        harvest.runs = [r for r in harvest.runs if r.check not in empty] + [
            r for r in second.runs if r.check in empty
        ]
    failed = [run for run in harvest.runs if run.error is not None]
    if args.json:
        out = {
            "host": config.host_name,
            "measurements": [msgspec.to_builtins(m) for m in harvest.measurements],
            "checks": [msgspec.to_builtins(r) for r in harvest.runs],
        }
        print(json.dumps(out, indent=2))
    else:
        from runwatch import units
        from runwatch.cli.output import Column, print_table

        def measured(m: Any) -> str:
            labels = ",".join(f"{k}={v}" for k, v in sorted(m["m"].labels.items()))
            return f"{m['m'].name}{{{labels}}}" if labels else m["m"].name

        now = time.time()
        print_table(
            [{"m": m} for m in harvest.measurements],
            [
                Column("check", lambda r: r["m"].check),
                Column("measurement", measured),
                Column(
                    "value", lambda r: units.value(r["m"].value, r["m"].unit, r["m"].name, now=now)
                ),
            ],
            empty="no measurements",
        )
        for run in failed:
            assert run.error is not None
            print(f"{run.check:12} {run.error.kind.upper()}: {run.error.message}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def register(sub: Any) -> None:
    agent = add_command(sub, "agent", cmd_agent, "run the agent")
    add_config_option(agent, "agent")

    check = add_command(sub, "check", cmd_check, "run every check once and print the measurements")
    add_config_option(check, "agent")
    check.add_argument("--json", action="store_true", help="print JSON")
