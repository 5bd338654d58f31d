"""`runwatch job run`: run a backup or archive job and record its outcome in a status file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from runwatch.cli.common import CommandError, add_command, add_group


def cmd_job_run(args: argparse.Namespace) -> int:
    """Run COMMAND (no shell), then write its start, end, exit code and last success to the status
    file atomically. Exits with the command's own code."""
    from agent.jobwrap import run_job

    argv = list(args.job_command)
    if not argv:
        raise CommandError("no command given: runwatch job run NAME --status-file F -- COMMAND")
    # The job's own exit code passes through, so cron and systemd still see it.
    return run_job(args.name, argv, args.status_file, tool=args.tool)


def register(sub: Any) -> None:
    job_actions = add_group(sub, "job", "run a backup or archive job and record its outcome")
    job_run = add_command(
        job_actions,
        "run",
        cmd_job_run,
        "run a command and write a JSON status file for the statusfile check",
        usage="runwatch job run NAME --status-file FILE [--tool TOOL] -- COMMAND [ARG ...]",
        epilog="Example: runwatch job run nightly --status-file /var/lib/runwatch-jobs/"
        "nightly.json -- restic backup /srv",
    )
    job_run.add_argument("name", help="the job's name (the `job` label)")
    job_run.add_argument(
        "--status-file",
        type=Path,
        required=True,
        help="where to write the status (read it with a `statusfile` check)",
    )
    job_run.add_argument(
        "--tool",
        help="restic, borg, rsnapshot… (default: the command's name); "
        "decides which exit codes count as warnings",
    )
    job_run.set_defaults(job_command=[])
