"""What the command modules share: exit codes, the one-line error, the options of commands that
ask a running collector, its client (reads and operator changes), and how times read (lists
are printed by output.py)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from checks.settings import Duration

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_COLLECTOR = os.environ.get("RUNWATCH_COLLECTOR", "http://127.0.0.1:9330")

log = logging.getLogger("runwatch")


class CommandError(Exception):
    """A failure to report in one line, with exit code 1."""


def duration_arg(text: str) -> Duration:
    try:
        return Duration.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- parser helpers ---------------------------------------------------------------------------


def add_command(
    sub: Any, name: str, func: Callable[[argparse.Namespace], int], text: str, **extra: Any
) -> argparse.ArgumentParser:
    """A sub-command that runs `func`: `text` in the list of commands, `func`'s docstring as
    its description (argparse folds its lines)."""
    command: argparse.ArgumentParser = sub.add_parser(
        name, help=text, description=func.__doc__, **extra
    )
    command.set_defaults(func=func)
    return command


def add_group(sub: Any, name: str, text: str) -> Any:
    """A command whose actions are sub-commands (`runwatch NAME ACTION ...`); they are added to
    what this returns, and the one chosen is in `args.NAME_action`."""
    command = sub.add_parser(name, help=text)
    return command.add_subparsers(dest=f"{name}_action", required=True, metavar="ACTION")


def add_collector_options(
    command: argparse.ArgumentParser, *, changes: bool = False, json_help: str | None = "print JSON"
) -> None:
    """The options of a command that asks a running collector: its URL, --json (unless
    `json_help` is None) and, for a command that changes something, the operator token."""
    command.add_argument(
        "--collector",
        default=DEFAULT_COLLECTOR,
        help="collector URL (default: %(default)s, or $RUNWATCH_COLLECTOR)",
    )
    if json_help is not None:
        command.add_argument("--json", action="store_true", help=json_help)
    if changes:
        command.add_argument(
            "--token-file",
            help="file holding an operator token (default: "
            "$RUNWATCH_OPERATOR_TOKEN_FILE, or $RUNWATCH_OPERATOR_TOKEN)",
        )


def add_config_option(parser: Any, kind: str, naming: str = "") -> None:
    """--config: the agent's or the collector's config file (`naming`: what the command reads
    of it)."""
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(f"/etc/runwatch/{kind}.yaml"),
        help=f"{kind} config{naming} (default: %(default)s)",
    )


# -- the collector's API -----------------------------------------------------------------------


def collector_get(
    url: str, path: str, params: dict[str, str] | None = None, method: str = "GET"
) -> Any:
    """Call the collector's API and return the decoded JSON; CommandError on any failure."""
    # Imported here: urllib.request loads ssl, which `runwatch agent` should not pay for.
    import urllib.error
    import urllib.parse
    import urllib.request

    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    target = url.rstrip("/") + path + query
    if not target.startswith(("http://", "https://")):
        raise CommandError(f"--collector must be an http:// or https:// URL, got {url!r}")
    # A collector with `operators: {read_api: token}` answers reads to operator tokens only.
    token = env_operator_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(  # noqa: S310
        target, method=method, data=b"" if method == "POST" else None, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 -- scheme checked: http or https only  # nosec B310
            return json.load(response)
    except urllib.error.HTTPError as exc:
        hint = (
            "; this collector's read API needs an operator token: set $RUNWATCH_OPERATOR_TOKEN_FILE"
            if exc.code == 401 and not token
            else ""
        )
        raise CommandError(
            f"{target}: HTTP {exc.code}: {exc.read(300).decode(errors='replace')}{hint}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot reach the collector at {url}: {reason}") from None


def collector_send(
    url: str, path: str, method: str, token: str, body: dict[str, Any] | None = None
) -> Any:
    """Send a JSON request with an operator token; return the JSON answer."""
    import urllib.error
    import urllib.request

    target = url.rstrip("/") + path
    if not target.startswith(("http://", "https://")):
        raise CommandError(f"--collector must be an http:// or https:// URL, got {url!r}")
    request = urllib.request.Request(  # noqa: S310
        target,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 -- scheme checked: http or https only  # nosec B310
            return json.load(response)
    except urllib.error.HTTPError as exc:
        text = exc.read(500).decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            text = json.loads(text).get("message", text)
        raise CommandError(f"{target}: HTTP {exc.code}: {text}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot reach the collector at {url}: {reason}") from None


def env_operator_token() -> str | None:
    """An operator token from $RUNWATCH_OPERATOR_TOKEN_FILE or $RUNWATCH_OPERATOR_TOKEN, if
    either is set and readable (read commands send it; they work without one too)."""
    path = os.environ.get("RUNWATCH_OPERATOR_TOKEN_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise CommandError(
                f"cannot read the operator token file {path}: {exc.strerror}"
            ) from None
    return os.environ.get("RUNWATCH_OPERATOR_TOKEN", "").strip() or None


def operator_token(args: argparse.Namespace) -> str:
    """The operator token: --token-file, else $RUNWATCH_OPERATOR_TOKEN_FILE, else
    $RUNWATCH_OPERATOR_TOKEN."""
    path = args.token_file or os.environ.get("RUNWATCH_OPERATOR_TOKEN_FILE")
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CommandError(
                f"cannot read the operator token file {path}: {exc.strerror}"
            ) from None
    else:
        token = os.environ.get("RUNWATCH_OPERATOR_TOKEN", "").strip()
    if not token:
        raise CommandError(
            "this change needs an operator token: --token-file FILE, or "
            "$RUNWATCH_OPERATOR_TOKEN_FILE (create one with `runwatch token add "
            "--operator NAME`)"
        )
    return token


# -- output ------------------------------------------------------------------------------------


def when(ts: float | None) -> str:
    """An absolute time in UTC, to the second (runwatch/units.py), or `-`."""
    from runwatch import units

    return "-" if ts is None else units.timestamp(ts)


def ago(ts: float | None, now: float) -> str:
    """A time relative to `now` (`3 min ago`, `in 2 h`), or `-`."""
    from runwatch import units

    return "-" if ts is None else units.ago(ts, now)
