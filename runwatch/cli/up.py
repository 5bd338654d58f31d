"""`runwatch up`: a collector and a local agent on the embedded defaults."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from runwatch.cli.common import add_command, duration_arg


def cmd_up(args: argparse.Namespace) -> int:
    """Run a collector (SQLite, built-in call register) and an agent for this host, until Ctrl-C."""
    from runwatch.up import UpOptions, default_data_dir, run_up

    return run_up(
        UpOptions(
            listen=args.listen,
            data_dir=args.data_dir or default_data_dir(),
            interval=args.interval,
            collector_config=args.collector_config,
            agent_config=args.agent_config,
        )
    )


def register(sub: Any) -> None:
    up = add_command(
        sub, "up", cmd_up, "run a collector and a local agent on the embedded defaults"
    )
    up.add_argument(
        "--listen",
        default="127.0.0.1:9330",
        help="HOST:PORT for the collector (default: %(default)s; port 0 picks one)",
    )
    up.add_argument(
        "--data-dir",
        type=Path,
        help="where the store, spool and tokens live (default: /var/lib/runwatch "
        "as root, else ~/.local/share/runwatch; or $RUNWATCH_DATA_DIR)",
    )
    up.add_argument(
        "--interval",
        type=duration_arg,
        help="the agent's report interval (default: from the agent config, 60s)",
    )
    up.add_argument(
        "--collector-config", type=Path, help="use this collector config instead of the shipped one"
    )
    up.add_argument(
        "--agent-config", type=Path, help="use this agent config instead of the shipped one"
    )
