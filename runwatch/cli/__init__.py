"""The `runwatch` command: one door for admins, operators and the help desk.

Exit codes: 0 success; 1 the job failed (a check failed, the collector is unreachable);
2 the command line or a config file is wrong (the key path goes to stderr); 141 (128 + SIGPIPE)
stdout's reader left (`runwatch status | head`), said nowhere.

Each command group is one module with `register(sub)`, which adds its sub-commands; COMMANDS
lists them in the order `runwatch --help` shows them. A command imports what it runs inside
its function, so `runwatch agent` loads neither the collector nor its HTTP stack.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys

from checks.settings import ConfigError
from runwatch import __version__
from runwatch.cli import (
    agent,
    audit,
    call,
    calls,
    collector,
    config,
    deploy,
    hosts,
    job,
    messages,
    oncall,
    outbox,
    report,
    rules,
    services,
    silences,
    status,
    tokens,
    up,
    users,
)
from runwatch.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_PIPE_CLOSED",
    "EXIT_USAGE",
    "CommandError",
    "build_parser",
    "main",
    "parse",
]

# The status of a command that SIGPIPE ended: what the shell reports when stdout's reader left.
EXIT_PIPE_CLOSED = 128 + signal.SIGPIPE

COMMANDS = (
    up,
    collector,
    tokens,
    agent,  # agent, check
    calls,
    status,
    job,
    outbox,
    oncall,
    silences,
    rules,
    deploy,  # deploy, supervise
    report,
    users,
    call,
    config,
    hosts,
    audit,
    services,
    messages,
)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runwatch",
        description="Monitoring agent and collector for the run groups: checks, thresholds, "
        "help-desk calls and Prometheus metrics.",
        epilog="Exit codes: 0 success, 1 failure, 2 bad command line or config.",
    )
    parser.add_argument("--version", action="version", version=f"runwatch {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("RUNWATCH_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log level for messages on stderr (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _run(list(sys.argv[1:] if argv is None else argv))
        finally:
            # A reader that left (`runwatch status | head`) is noticed here, not as a
            # traceback when the interpreter flushes stdout on its way out.
            sys.stdout.flush()
    except KeyboardInterrupt:  # Ctrl-C before the command ran (while parsing, importing)
        return 130
    except BrokenPipeError as exc:
        if not _stdout_closed():
            print(f"runwatch: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAILED
        # Nothing more can reach stdout: point it at /dev/null so the final flush is quiet, and
        # exit as a command killed by SIGPIPE does, as `head` and the shell expect.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE_CLOSED


def _stdout_closed() -> bool:
    """Whether stdout is a pipe or socket whose reader has gone (the kernel flags an error)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError):  # stdout replaced by an object without a file descriptor
        return False


def _run(words: list[str]) -> int:
    args = parse(words)
    _setup_logging(args.log_level)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"runwatch: invalid config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        print(f"runwatch: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        raise  # main decides whether it was stdout
    except OSError as exc:
        print(f"runwatch: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return code


def parse(words: list[str]) -> argparse.Namespace:
    """Parse a command line (without the program name), as `main` runs it."""
    # `runwatch job run NAME ... -- COMMAND ARGS`: the command is not ours to parse.
    command: list[str] = []
    if "--" in words:
        cut = words.index("--")
        words, command = words[:cut], words[cut + 1 :]
    args = build_parser().parse_args(words)
    if command:
        if not hasattr(args, "job_command"):
            build_parser().error("`--` is only for `runwatch job run` and `runwatch supervise`")
        args.job_command = command
    return args
