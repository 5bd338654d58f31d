"""`runwatch config validate`: check an agent or collector config file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from runwatch.cli.common import EXIT_OK, EXIT_USAGE, add_command, add_group


def cmd_config_validate(args: argparse.Namespace) -> int:
    """Validate a config file: exit 0 if valid, 2 if not, with every mistake found on stderr,
    each with its key path and line."""
    from checks.mistakes import every_mistake

    path: Path = args.file
    kind = _config_kind(path, args.kind)
    if kind == "agent":
        from agent.config import load_agent_config

        mistakes = every_mistake(path, lambda edit: load_agent_config(path, edit=edit))
        if not mistakes:
            agent = load_agent_config(path)
            summary = f"agent config for {agent.host_name}: {len(agent.checks)} checks"
    else:
        from collector.config import load_collector_config

        mistakes = every_mistake(path, lambda edit: load_collector_config(path, edit=edit))
        if not mistakes:
            collector = load_collector_config(path)
            summary = (
                f"collector config: {len(collector.groups)} groups, "
                f"{len(collector.rules)} rules, {len(collector.sinks)} sink(s)"
            )
    if mistakes:
        for mistake in mistakes:
            print(f"runwatch: invalid config: {mistake}", file=sys.stderr)
        if len(mistakes) > 1:
            print(f"runwatch: {len(mistakes)} mistakes in {path}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{path}: valid {summary}")
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
