"""`runwatch deploy`: install, upgrade or remove agents over SSH; `runwatch supervise` keeps
the agent running where systemd does not."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from runwatch.cli.common import CommandError, add_command


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy agents over SSH (paramiko) to the hosts of an inventory. Host keys are checked against
    the inventory's known_hosts; an unknown or changed key is refused. Exit 0 if every host
    succeeded, 1 if any failed, 2 if the inventory or command line is wrong, 130 if Ctrl-C
    stopped the run."""
    from agent.deploy.command import DeployOptions, run_deploy
    from agent.deploy.errors import DeployError

    if args.log_level != "debug":
        # paramiko logs every refused connection with a traceback; the table says why instead.
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)
        # One line per API request would scroll the live progress away.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    options = DeployOptions(
        action=args.deploy_action,
        inventory=args.inventory,
        hosts=args.hosts,
        parallel=args.parallel,
        json=args.json,
        accept_new_host_keys=args.accept_new_host_keys,
        source=args.source,
        cache_dir=args.cache_dir,
    )
    try:
        return run_deploy(options)
    except DeployError as exc:
        raise CommandError(str(exc)) from None


def cmd_supervise(args: argparse.Namespace) -> int:
    """Detach, write a pid file, run COMMAND with its output appended to the log file, and restart
    it 5 s after it fails. SIGTERM stops it; SIGHUP is passed on. Used by `runwatch deploy` where
    systemd does not run."""
    from agent.supervisor import SupervisorOptions, supervise

    if not args.job_command:
        raise CommandError(
            "no command given: runwatch supervise --pid-file F --log-file L -- COMMAND"
        )
    return supervise(
        SupervisorOptions(
            argv=list(args.job_command), pid_file=args.pid_file, log_file=args.log_file
        )
    )


def _parallel(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


_DEPLOY_HELP = {
    "install": "install the agent where it is missing, or bring it in line with the inventory",
    "upgrade": "replace the installed agent with this version, keeping the old one for rollback",
    "rollback": "go back to the version kept by the last upgrade",
    "status": "show what is installed, whether it runs, and when it last reported",
    "remove": "stop the agent, delete its files and revoke its token",
}


def register(sub: Any) -> None:
    deploy = add_command(
        sub, "deploy", cmd_deploy, "install, upgrade or remove agents over SSH from an inventory"
    )
    actions = deploy.add_subparsers(dest="deploy_action", required=True, metavar="ACTION")
    for name, text in _DEPLOY_HELP.items():
        action = actions.add_parser(
            name,
            help=text,
            description=text[0].upper()
            + text[1:]
            + ". A host that fails is put back as it was; the others "
            "go on.",
        )
        action.add_argument(
            "--inventory",
            type=Path,
            required=True,
            help="the inventory (YAML): collector, groups and hosts",
        )
        action.add_argument(
            "--hosts",
            metavar="PATTERN",
            help="only hosts whose name or group matches one of these "
            "comma-separated globs (e.g. 'web*,db1')",
        )
        action.add_argument(
            "--parallel",
            type=_parallel,
            default=10,
            help="at most this many hosts at once (default: %(default)s)",
        )
        action.add_argument(
            "--json", action="store_true", help="print the results as JSON instead of a table"
        )
        action.add_argument(
            "--accept-new-host-keys",
            action="store_true",
            help="trust a host key known_hosts does not have yet, and record it "
            "there (a changed key is still refused)",
        )
        if name in ("install", "upgrade"):
            action.add_argument(
                "--source",
                type=Path,
                help="runwatch source tree to build the bundle from (default: the checkout "
                "this runwatch runs from, else the installed runwatch packed as a wheel)",
            )
            action.add_argument(
                "--cache-dir",
                type=Path,
                help="where built bundles are kept (default: ~/.cache/runwatch/bundles)",
            )
        action.set_defaults(func=cmd_deploy, source=None, cache_dir=None)

    supervise = add_command(
        sub,
        "supervise",
        cmd_supervise,
        "keep a command running in the background (deploy uses it)",
        usage="runwatch supervise --pid-file FILE --log-file FILE -- COMMAND [ARG ...]",
    )
    supervise.add_argument("--pid-file", type=Path, required=True)
    supervise.add_argument("--log-file", type=Path, required=True)
    supervise.set_defaults(job_command=[])
