"""`runwatch config validate`: check an agent or collector config file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from runwatch.cli.common import EXIT_OK, add_command, add_group


def cmd_config_validate(args: argparse.Namespace) -> int:
    """Validate a config file: exit 0 if valid, 2 with the key path if not."""
    kind = _config_kind(args.file, args.kind)
    if kind == "agent":
        from agent.config import load_agent_config

        agent = load_agent_config(args.file)
        summary = f"agent config for {agent.host_name}: {len(agent.checks)} checks"
    else:
        from collector.config import load_collector_config

        collector = load_collector_config(args.file)
        summary = (
            f"collector config: {len(collector.groups)} groups, "
            f"{len(collector.rules)} rules, {len(collector.sinks)} sink(s)"
        )
    print(f"{args.file}: valid {summary}")
    return EXIT_OK


def _config_kind(path: Path, requested: str | None) -> str:
    if requested:
        return requested
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return "collector"  # let the loader report the problem with its location
    # Keys only an agent config has; a collector config has none of them.
    if isinstance(data, dict) and {"collector", "checks", "state_dir", "spool"} & set(data):
        return "agent"
    return "collector"


def register(sub: Any) -> None:
    config_actions = add_group(sub, "config", "work with config files")
    validate = add_command(
        config_actions, "validate", cmd_config_validate, "validate an agent or collector config"
    )
    validate.add_argument("file", type=Path)
    validate.add_argument(
        "--kind",
        choices=["agent", "collector"],
        help="which config it is (default: guessed from its keys)",
    )
