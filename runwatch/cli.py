"""The `runwatch` command: one door for admins, operators and the help desk.

Exit codes: 0 success; 1 the job failed (a check failed, the collector is unreachable);
2 the command line or a config file is wrong (the key path goes to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import yaml

from checks.settings import ConfigError, Duration
from runwatch import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_COLLECTOR = os.environ.get("RUNWATCH_COLLECTOR", "http://127.0.0.1:9330")

log = logging.getLogger("runwatch")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def _duration(text: str) -> Duration:
    try:
        return Duration.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- commands ---------------------------------------------------------------------------------


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


def cmd_collector(args: argparse.Namespace) -> int:
    """Run the collector with a config file. `runwatch collector token ...` manages agent tokens."""
    if args.action == "token":
        return cmd_token(args)
    from collector.app import CollectorService
    from collector.config import load_collector_config
    from collector.server import bind, serve, url_of
    from runwatch.datadir import prepare_data_dir

    config = load_collector_config(args.config)
    prepare_data_dir(config)
    sock = bind(*config.listen_address)
    service = CollectorService(config)
    log.info(
        "collector listening on %s with %d rules; data in %s",
        url_of(sock, config.tls is not None),
        len(config.rules),
        config.data_dir,
    )
    serve(service, sock)
    return EXIT_OK


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
        for m in harvest.measurements:
            labels = ",".join(f"{k}={v}" for k, v in sorted(m.labels.items()))
            where = f"{{{labels}}}" if labels else ""
            print(f"{m.check:12} {m.name}{where} {m.value:g} {m.unit}".rstrip())
        for run in failed:
            assert run.error is not None
            print(f"{run.check:12} {run.error.kind.upper()}: {run.error.message}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _get(url: str, path: str, params: dict[str, str] | None = None, method: str = "GET") -> Any:
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
    token = _env_operator_token()
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


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def cmd_calls(args: argparse.Namespace) -> int:
    if args.dead:
        return _print_outbox(args.collector, "dead", args.json, args.limit)
    params = {"status": "open" if args.open else "all", "limit": str(args.limit)}
    if args.group:
        params["group"] = args.group
    calls = _get(args.collector, "/api/v1/calls", params)
    empty = "no calls" if not args.open else "no open calls"
    header = f"{'ID':>5}  {'STATUS':8}  {'PRIORITY':8}  {'GROUP':24}  {'OPENED':16}  SUMMARY"
    return _print_rows(calls, args.json, empty, header, _call_row)


def _call_row(call: dict[str, Any]) -> str:
    return (
        f"{call['id']:>5}  {call['status']:8}  {call['priority']:8}  "
        f"{call['group'][:24]:24}  {_when(call['opened_at']):16}  {call['summary']}"
    )


def _print_rows(
    rows: list[dict[str, Any]],
    as_json: bool,
    empty: str,
    header: str,
    row: Callable[[dict[str, Any]], str],
) -> int:
    """Print a list the collector answered: as JSON, or as a table (a header, a line a row)."""
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print("\n".join([header, *map(row, rows)]) if rows else empty)
    return EXIT_OK


def cmd_call(args: argparse.Namespace) -> int:
    """Handle one call of the built-in register by hand, as the console does. Needs an operator
    token (not a read-only one); each action is recorded with your operator name in the call's
    history and the audit log. Calls in an external help desk are handled there."""
    token = _operator_token(args)
    action = {"ack": "acknowledge", "comment": "comment", "resolve": "resolve"}[args.call_verb]
    text = getattr(args, "text", None) or ""
    if args.call_verb == "comment" and not text.strip():
        raise CommandError("say what to comment: --text TEXT")
    body = None if action == "acknowledge" else {"text": text}
    call = _send(args.collector, f"/api/v1/calls/{args.id}/{action}", "POST", token, body)
    if args.json:
        print(json.dumps(call, indent=2))
    else:
        done = {"acknowledge": "acknowledged", "comment": "commented on", "resolve": "resolved"}[
            action
        ]
        print(f"call {call['id']} {done}: {call['summary']}")
    return EXIT_OK


def _add_call_commands(sub: Any) -> None:
    call = _add_command(
        sub,
        "call",
        cmd_call,
        "acknowledge, comment on or resolve a call in the built-in register",
        epilog="Exit codes: 0 done, 1 refused or the collector unreachable.",
    )
    verbs = call.add_subparsers(dest="call_verb", required=True, metavar="VERB")
    ack = verbs.add_parser("ack", help="acknowledge: someone is on it")
    comment = verbs.add_parser("comment", help="add a comment")
    comment.add_argument("--text", required=True, help="the comment")
    resolve = verbs.add_parser(
        "resolve", help="resolve by hand; a problem that persists opens a new call"
    )
    resolve.add_argument("--text", help="a note that goes with it")
    for command in (ack, comment, resolve):
        command.add_argument("id", type=int, help="the call's number")
        _add_collector_options(command, changes=True, json_help="print the call as JSON")


def _print_outbox(url: str, status: str, as_json: bool, limit: int) -> int:
    ops = _get(url, "/api/v1/outbox", {"status": status, "limit": str(limit)})
    empty = f"no {status} operations" if status != "all" else "the outbox is empty"
    header = f"{'ID':>6}  {'CALL':>5}  {'SINK':12}  {'OP':8}  {'STATUS':8}  {'TRIES':>5}  ERROR"
    return _print_rows(ops, as_json, empty, header, _outbox_row)


def _outbox_row(op: dict[str, Any]) -> str:
    return (
        f"{op['id']:>6}  {op['call_id']:>5}  {op['sink'][:12]:12}  {op['op']:8}  "
        f"{op['status']:8}  {op['attempts']:>5}  {op['last_error'] or ''}"
    )


def cmd_outbox_list(args: argparse.Namespace) -> int:
    return _print_outbox(args.collector, args.status, args.json, args.limit)


def cmd_outbox_discard(args: argparse.Namespace) -> int:
    """Give up on one dead letter (e.g. a reopen the help desk refuses for good), so the call's
    later operations can go. Exit 1 if it was not dead. Needs an operator token (not a
    read-only one); recorded in the audit log."""
    done = _send(
        args.collector, f"/api/v1/outbox/discard?op_id={args.id}", "POST", _operator_token(args)
    )["discarded"]
    print(f"{done} dead letter(s) discarded")
    return EXIT_OK if done else EXIT_FAILED


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    """Retry a dead letter by ID, or all of them; exit 1 if none was retried. Needs an operator
    token (not a read-only one); recorded in the audit log."""
    if args.id is None and not args.all:
        raise CommandError("say which dead letter to retry (an ID) or --all")
    query = f"?op_id={args.id}" if args.id is not None else ""
    retried = _send(args.collector, f"/api/v1/outbox/retry{query}", "POST", _operator_token(args))[
        "retried"
    ]
    print(f"{retried} dead letter(s) put back in line")
    return EXIT_OK if retried else EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    hosts = _get(args.collector, "/api/v1/hosts")
    open_calls = _get(args.collector, "/api/v1/calls", {"status": "open"})
    if args.json:
        print(
            json.dumps(
                {
                    "hosts": [{k: v for k, v in h.items() if k != "measurements"} for h in hosts],
                    "open_calls": len(open_calls),
                },
                indent=2,
            )
        )
        return EXIT_OK
    if not hosts:
        print("no hosts have reported yet")
    for host in hosts:
        age = time.time() - host["last_report_at"]
        failing = [c["check"] for c in host["checks"] if c["error"]]
        extra = f"  failing checks: {', '.join(failing)}" if failing else ""
        print(
            f"{host['host']:30} {host['state']:9} last report {age:6.0f}s ago  "
            f"{len(host['problems'])} problem(s){extra}"
        )
        for problem in host["problems"]:
            labels = ",".join(f"{k}={v}" for k, v in sorted(problem["labels"].items()))
            marks = [word for word in ("flapping", "silenced") if problem.get(word)]
            if problem.get("in_parent_call"):
                marks.append(f"in call {problem['in_parent_call']}")
            extra = f"  ({', '.join(marks)})" if marks else ""
            print(f"    {problem['state']:9} {problem['rule']} {labels}{extra}")
    print(f"{len(open_calls)} open call(s)")
    return EXIT_OK


def _env_operator_token() -> str | None:
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


def _operator_token(args: argparse.Namespace) -> str:
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


def _send(url: str, path: str, method: str, token: str, body: dict[str, Any] | None = None) -> Any:
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


def _print_silences(silences: list[dict[str, Any]]) -> None:
    if not silences:
        print("no silences or maintenance windows")
        return
    print(f"{'ID':>5}  {'ACTIVE':6}  {'HOST':16}  {'RULE':20}  {'UNTIL':16}  {'BY':12}  REASON")
    for item in silences:
        ident = str(item["id"]) if item["id"] is not None else item["name"]
        until = _when(item["ends_at"]) if item["ends_at"] is not None else "(weekly)"
        print(
            f"{ident:>5}  {'yes' if item['active'] else 'no':6}  {item['host'][:16]:16}  "
            f"{item['rule'][:20]:20}  {until:16}  {item['created_by'][:12]:12}  "
            f"{item['reason']}"
        )


def cmd_silence(args: argparse.Namespace) -> int:
    """While a silence is in force, matching rules are still evaluated and shown, but no call is
    opened or changed; when it ends, a problem still there gets its call. Changes need an operator
    token."""
    if args.silence_action == "list":
        params = {"include_ended": "true"} if args.all else None
        silences = _get(args.collector, "/api/v1/silences", params)
        if args.json:
            print(json.dumps(silences, indent=2))
        else:
            _print_silences(silences)
        return EXIT_OK
    token = _operator_token(args)
    if args.silence_action == "add":
        silence = _send(
            args.collector,
            "/api/v1/silences",
            "POST",
            token,
            {
                "host": args.host,
                "rule": args.rule,
                "duration": float(args.duration),
                "reason": args.reason,
            },
        )
        if args.json:
            print(json.dumps(silence, indent=2))
        else:
            print(
                f"silence {silence['id']}: host {silence['host']} rule {silence['rule']} "
                f"until {_when(silence['ends_at'])} UTC, set by {silence['created_by']}"
            )
        return EXIT_OK
    ended = _send(args.collector, f"/api/v1/silences/{args.id}", "DELETE", token)
    if args.json:
        print(json.dumps(ended, indent=2))
    else:
        print(
            f"silence {ended['id']} ended by {ended['ended_by']}; problems still there get "
            "their calls now"
        )
    return EXIT_OK


def cmd_rules(args: argparse.Namespace) -> int:
    """Ask the collector which thresholds of RULE apply to HOST: the rule's own, or a host group's
    (the first matching group that names the rule wins), and what else governs its calls (flapping,
    maintenance, parents)."""
    import urllib.parse

    path = f"/api/v1/rules/{urllib.parse.quote(args.rule, safe='')}/explain"
    found = _get(args.collector, path, {"host": args.host})
    if args.json:
        print(json.dumps(found, indent=2))
        return EXIT_OK
    print(_explanation_text(found))
    return EXIT_OK


def _explanation_text(found: dict[str, Any]) -> str:
    def thresholds(t: dict[str, Any]) -> str:
        unit = " (seconds left)" if found["forecast"] else ""
        return (
            f"warning {t['warning']}, critical {t['critical']}, clear {t['clear']}, "
            f"for {t['for']:g}s, direction {t['direction']}{unit}"
        )

    lines = [
        f"rule {found['rule']} (metric {found['metric']}, owner {found['owner']}) on host "
        f"{found['host']}" + ("" if found["host_known"] else " (not reported yet)")
    ]
    labels = ", ".join(f"{k}={v}" for k, v in sorted(found["host_labels"].items()))
    lines.append(f"  agent labels: {labels or 'none'}")
    lines.append(f"  the rule says:     {thresholds(found['rule_thresholds'])}")
    for group in found["host_groups"]:
        if group["applies"]:
            verdict = "APPLIES"
        elif group["member"] and group["overrides_rule"]:
            verdict = "member, but an earlier group already decided"
        elif group["member"]:
            verdict = "member, sets nothing for this rule"
        else:
            verdict = "not a member"
        lines.append(f"  host group {group['name']}: {verdict} ({group['why']})")
    lines.append(f"  in force:          {thresholds(found['effective_thresholds'])}")
    lines.append(f"  decided by:        {found['source']}")
    if found["forecast"]:
        lines.append(
            f"  forecast:          time until {found['metric']} reaches "
            f"{found['forecast']['reaches']:g}, fitted over "
            f"{found['forecast']['over']:g}s"
        )
    flap = found["flapping"]
    lines.append(
        "  flapping:          "
        + (
            f"more than {flap['changes']} changes within {flap['window']:g}s "
            f"(from the {flap['source']})"
            if flap["enabled"]
            else "off"
        )
    )
    for window in found["maintenance"]:
        lines.append(
            f"  maintenance:       {window['source']} until {_when(window['ends_at'])} "
            f"by {window['created_by']}: {window['reason']}"
        )
    if found["parents"]:
        lines.append(f"  parents:           {', '.join(found['parents'])}")
    for state in found["states"]:
        where = ",".join(f"{k}={v}" for k, v in sorted(state["labels"].items()))
        extra = "".join(f" {word}" for word in ("flapping", "silenced") if state[word])
        call = f" call {state['call_id']}" if state["call_id"] else ""
        lines.append(f"  now: {where or '-'} {state['state']}{extra}{call}")
    return "\n".join(lines)


def cmd_job_run(args: argparse.Namespace) -> int:
    """Run COMMAND (no shell), then write its start, end, exit code and last success to the status
    file atomically. Exits with the command's own code."""
    from agent.jobwrap import run_job

    argv = list(args.job_command)
    if not argv:
        raise CommandError("no command given: runwatch job run NAME --status-file F -- COMMAND")
    # The job's own exit code passes through, so cron and systemd still see it.
    return run_job(args.name, argv, args.status_file, tool=args.tool)


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


def _report_config(args: argparse.Namespace) -> Any:
    """The collector config a report reads the store of: --config, else `runwatch up`'s."""
    from collector.config import load_collector_config

    if args.config is not None:
        return load_collector_config(args.config)
    from runwatch.shipped import shipped_file
    from runwatch.up import default_data_dir

    data_dir = (args.data_dir or default_data_dir()).resolve()
    return load_collector_config(shipped_file("collector.yaml"), {"data_dir": str(data_dir)})


def cmd_report(args: argparse.Namespace) -> int:
    """Compute a month's service levels per run group and host group from the collector's store:
    availability, hosts up, calls opened, mean and 90th percentile time to acknowledge and to
    resolve, calls that missed respond_within, recurring problems, and days with a fresh backup per
    job. The same records give the same report."""
    from collector.service_levels import ReportError, build_report, parse_period, render
    from collector.store.opening import open_store

    try:
        period = parse_period(args.period)
    except ReportError as exc:
        log.error("report refused: %s", exc)
        print(f"runwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = _report_config(args)
    database = config.data_dir / "runwatch.db"
    if config.store.backend == "sqlite" and not database.exists():
        log.error("report: no store at %s", database)
        raise CommandError(
            f"no collector store at {database}: give --config or --data-dir "
            "of a collector that has run"
        )
    store = open_store(config)
    try:
        # A month still running is reported up to now; one that is over never changes.
        report = build_report(store, config, period, args.group, as_of=time.time())
    except ReportError as exc:
        log.error("report refused: %s", exc)
        print(f"runwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        store.close()
    text = render(report, args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"{args.format} report for {period.label} written to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_user(args: argparse.Namespace) -> int:
    """Console users sign in with a name and password (stored as PBKDF2 hashes in the users
    file)."""
    import getpass

    from collector.auth import (
        ROLE_OPERATOR,
        ROLE_READ_ONLY,
        TokenFileError,
        read_users,
        remove_user,
        set_user,
    )

    path, config = _users_file(args)
    try:
        if args.user_verb == "add":
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            else:
                password = getpass.getpass(f"password for {args.name}: ")
                if getpass.getpass("again: ") != password:
                    raise CommandError("the passwords differ")
            role = ROLE_READ_ONLY if args.read_only else ROLE_OPERATOR
            with _audit_trail(config) as record:
                set_user(path, args.name, password, role)
                print(f"user {args.name} ({role}) stored in {path}", file=sys.stderr)
                record("user.add", f"user {args.name}", role)
        elif args.user_verb == "remove":
            missing = f"no user {args.name} in {path}"
            done = f"user {args.name} removed; their console sessions end"
            remove = functools.partial(remove_user, path, args.name)
            return _remove_recorded(
                config, remove, missing, done, ("user.remove", f"user {args.name}")
            )
        else:
            users = read_users(path)
            if args.json:
                print(json.dumps([{"name": u.name, "role": u.role} for u in users], indent=2))
            for user in [] if args.json else users:
                print(f"{user.name:40} {user.role}")
    except TokenFileError as exc:
        log.error("user %s failed: %s", args.user_verb, exc)
        raise CommandError(str(exc)) from None
    return EXIT_OK


def _users_file(args: argparse.Namespace) -> tuple[Path, Any]:
    """The users file, and the collector config it came from (None for --users-file)."""
    if args.users_file:
        return Path(args.users_file), None
    from collector.config import load_collector_config

    config = load_collector_config(args.config)
    return config.users_file, config


def _tokens_file(args: argparse.Namespace) -> tuple[Path, Any]:
    """The tokens file, and the collector config it came from (None for --tokens-file)."""
    if args.tokens_file:
        return Path(args.tokens_file), None
    from collector.config import load_collector_config

    config = load_collector_config(args.config)
    return (config.operator_tokens_file if args.operator else config.tokens_file), config


def _cli_actor() -> tuple[str, str]:
    """Who runs this command, for the audit log: `cli:USER` (the effective user), and the
    user sudo was called by, if any."""
    import pwd

    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        name = str(os.geteuid())
    sudo = os.environ.get("SUDO_USER", "")
    return f"cli:{name}", (f"sudo from {sudo}" if sudo and sudo != name else "")


def _remove_recorded(
    config: Any, remove: Callable[[], bool], missing: str, done: str, entry: tuple[str, str]
) -> int:
    """Remove a user or a token (`remove()` says whether it was there), say what came of it on
    stderr, and record the removal (`entry`: action and target) in the audit log."""
    with _audit_trail(config) as record:
        if not remove():
            print(missing, file=sys.stderr)
            return EXIT_FAILED
        print(done, file=sys.stderr)
        record(*entry)
    return EXIT_OK


@contextlib.contextmanager
def _audit_trail(config: Any) -> Iterator[Callable[..., None]]:
    """Yield `record(action, target, detail="")`, which writes an entry (actor `cli:USER`, via
    `cli`) into the audit log of the collector `config` names, as changes through the API are.

    The store is opened before the change is made, so one that cannot be reached stops the
    change instead of leaving it out of the record. Without a config (--tokens-file,
    --users-file), or before the collector has ever run (no SQLite store yet), the change is
    made and not recorded, and the command says so."""

    def unrecorded(*_: str) -> None:
        return None

    if config is None:
        print(
            "(not recorded in an audit log: no collector config named; give --config to record it)",
            file=sys.stderr,
        )
        yield unrecorded
        return
    database = config.data_dir / "runwatch.db"
    if config.store.backend == "sqlite" and not database.exists():
        print(
            f"(not recorded in an audit log: the collector has no store at {database} yet)",
            file=sys.stderr,
        )
        yield unrecorded
        return
    import sqlite3

    from collector.store.opening import open_store
    from collector.store.records import AuditEntry

    errors: tuple[type[Exception], ...] = (sqlite3.Error, OSError)
    if config.store.backend == "postgresql":
        import psycopg

        errors = (*errors, psycopg.Error)
    try:
        store = open_store(config)
    except errors as exc:
        raise CommandError(
            f"cannot open the collector's store to record this change in its "
            f"audit log, so nothing was changed: {exc}"
        ) from None
    actor, sudo = _cli_actor()

    def record(action: str, target: str, detail: str = "") -> None:
        text = "; ".join(part for part in (detail, sudo) if part)
        try:
            with store.transaction():
                store.add_audit(AuditEntry(0, time.time(), actor, action, target, text, "cli"))
        except errors as exc:
            raise CommandError(
                f"{action} {target} is done, but could not be recorded in the audit log: {exc}"
            ) from None

    try:
        yield record
    finally:
        store.close()


def cmd_token(args: argparse.Namespace) -> int:
    from collector.auth import TokenFileError, add_token, read_tokens, revoke_token

    path, config = _tokens_file(args)
    kind, noun = ("operator_token", "operator") if args.operator else ("token", "host")
    try:
        if args.tokens_verb == "add":
            if args.read_only and not args.operator:
                raise CommandError(
                    "--read-only is for operator tokens (with --operator); agent tokens only report"
                )
            role = "read-only" if args.read_only else "operator"
            with _audit_trail(config) as record:
                token = add_token(path, args.host, replace=args.replace, role=role)
                print(token)
                where = (
                    "Give it to `runwatch deploy` (the inventory's operator_token_file, mode 0600)."
                    if args.operator
                    else "Put it in the agent's token_file (mode 0600)."
                )
                print(
                    f"token for {args.host} stored (hashed) in {path}; it is shown only "
                    f"once. {where}",
                    file=sys.stderr,
                )
                details = [
                    role if args.operator and args.read_only else "",
                    "token replaced" if args.replace else "",
                ]
                record(f"{kind}.add", f"{noun} {args.host}", ", ".join(d for d in details if d))
        elif args.tokens_verb == "revoke":
            missing = f"{args.host} has no token in {path}"
            done = f"token for {args.host} revoked; its next report gets 401"
            revoke = functools.partial(revoke_token, path, args.host)
            audited = (f"{kind}.revoke", f"{noun} {args.host}")
            return _remove_recorded(config, revoke, missing, done, audited)
        else:
            entries = read_tokens(path)
            if args.json:
                print(
                    json.dumps(
                        [
                            {"host": e.host, "created_at": e.created_at, "role": e.role}
                            for e in entries
                        ],
                        indent=2,
                    )
                )
            for entry in [] if args.json else entries:
                role = f"  {entry.role}" if args.operator else ""
                print(f"{entry.host:40} created {_when(entry.created_at)}{role}")
    except TokenFileError as exc:
        raise CommandError(str(exc)) from None
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy agents over SSH (paramiko) to the hosts of an inventory. Host keys are checked against
    the inventory's known_hosts; an unknown or changed key is refused. Exit 0 if every host
    succeeded, 1 if any failed, 2 if the inventory or command line is wrong."""
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


def _add_deploy_commands(sub: Any) -> None:
    deploy = _add_command(
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
                help="runwatch source tree to build the bundle from (default: "
                "the one this command runs from)",
            )
            action.add_argument(
                "--cache-dir",
                type=Path,
                help="where built bundles are kept (default: ~/.cache/runwatch/bundles)",
            )
        action.set_defaults(func=cmd_deploy, source=None, cache_dir=None)

    supervise = _add_command(
        sub,
        "supervise",
        cmd_supervise,
        "keep a command running in the background (deploy uses it)",
        usage="runwatch supervise --pid-file FILE --log-file FILE -- COMMAND [ARG ...]",
    )
    supervise.add_argument("--pid-file", type=Path, required=True)
    supervise.add_argument("--log-file", type=Path, required=True)
    supervise.set_defaults(job_command=[])


class CommandError(Exception):
    """A failure to report in one line, with exit code 1."""


# -- parser -----------------------------------------------------------------------------------


def _add_command(
    sub: Any, name: str, func: Callable[[argparse.Namespace], int], text: str, **extra: Any
) -> argparse.ArgumentParser:
    """A sub-command that runs `func`: `text` in the list of commands, `func`'s docstring as
    its description (argparse folds its lines)."""
    command: argparse.ArgumentParser = sub.add_parser(
        name, help=text, description=func.__doc__, **extra
    )
    command.set_defaults(func=func)
    return command


def _add_group(sub: Any, name: str, text: str) -> Any:
    """A command whose actions are sub-commands (`runwatch NAME ACTION ...`); they are added to
    what this returns, and the one chosen is in `args.NAME_action`."""
    command = sub.add_parser(name, help=text)
    return command.add_subparsers(dest=f"{name}_action", required=True, metavar="ACTION")


def _add_collector_options(
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


def _add_config_option(parser: Any, kind: str, naming: str = "") -> None:
    """--config: the agent's or the collector's config file (`naming`: what the command reads
    of it)."""
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(f"/etc/runwatch/{kind}.yaml"),
        help=f"{kind} config{naming} (default: %(default)s)",
    )


def _add_token_commands(parser: argparse.ArgumentParser) -> None:
    tokens = parser.add_subparsers(dest="tokens_verb", required=True, metavar="ACTION")
    add = tokens.add_parser("add", help="create a token for a host; print it once")
    add.add_argument("host")
    add.add_argument("--replace", action="store_true", help="replace the host's existing token")
    add.add_argument(
        "--read-only",
        action="store_true",
        help="with --operator: a read-only operator token, which may read "
        "everything (the audit log too) and change nothing",
    )
    revoke = tokens.add_parser("revoke", help="revoke a host's token")
    revoke.add_argument("host")
    listing = tokens.add_parser("list", help="list hosts that have tokens")
    listing.add_argument("--json", action="store_true", help="print JSON")
    for sub in (add, revoke, listing):
        sub.add_argument(
            "--operator",
            action="store_true",
            help="operator tokens (for `runwatch deploy` to enrol agents through "
            "the API) instead of agent tokens; HOST is then the operator's "
            "name",
        )
        where = sub.add_mutually_exclusive_group()
        _add_config_option(where, "collector", " naming the tokens file")
        where.add_argument("--tokens-file", help="the tokens file itself")


def _add_outbox_commands(sub: Any) -> None:
    outbox_actions = _add_group(sub, "outbox", "look at and retry deliveries to help desks")
    outbox_list = _add_command(
        outbox_actions, "list", cmd_outbox_list, "list call operations in the outbox"
    )
    outbox_list.add_argument(
        "--status",
        choices=["pending", "dead", "done", "all"],
        default="pending",
        help="which ones (default: %(default)s)",
    )
    outbox_list.add_argument("--limit", type=int, default=200, help="at most this many")
    outbox_retry = _add_command(
        outbox_actions,
        "retry",
        cmd_outbox_retry,
        "put dead letters back in line once the cause is fixed",
    )
    outbox_retry.add_argument("id", nargs="?", type=int, help="the operation's ID")
    outbox_retry.add_argument("--all", action="store_true", help="every dead letter")
    outbox_discard = _add_command(
        outbox_actions,
        "discard",
        cmd_outbox_discard,
        "give up on a dead letter that can never be delivered",
    )
    outbox_discard.add_argument("id", type=int, help="the operation's ID")
    _add_collector_options(outbox_list)
    for command in (outbox_retry, outbox_discard):
        _add_collector_options(command, changes=True, json_help=None)


def _add_silence_commands(sub: Any) -> None:
    silence = _add_command(
        sub, "silence", cmd_silence, "maintenance windows: hold back calls for hosts and rules"
    )
    actions = silence.add_subparsers(dest="silence_action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="silence matching hosts and rules for a while")
    add.add_argument(
        "--host", default="*", metavar="PATTERN", help="glob on the host name (default: every host)"
    )
    add.add_argument(
        "--rule",
        default="*",
        metavar="PATTERN",
        help="glob on the rule name, e.g. filesystem_* or host_stale (default: every rule)",
    )
    add.add_argument(
        "--for", dest="duration", type=_duration, required=True, help="how long, e.g. 30m or 2h"
    )
    add.add_argument("--reason", required=True, help="why: recorded with your operator name")
    listing = actions.add_parser("list", help="list silences and weekly maintenance windows")
    listing.add_argument("--all", action="store_true", help="include silences that have ended")
    remove = actions.add_parser("remove", help="end a silence now")
    remove.add_argument("id", type=int, help="the silence's ID (see silence list)")
    for command in (add, listing, remove):
        _add_collector_options(command, changes=command is not listing)

    rule_actions = _add_group(sub, "rules", "look at rules as the collector applies them")
    explain = _add_command(
        rule_actions,
        "explain",
        cmd_rules,
        "show which thresholds apply to a rule on a host, and why",
    )
    explain.add_argument("host")
    explain.add_argument("rule")
    _add_collector_options(explain)


def _add_report_commands(sub: Any) -> None:
    report = _add_command(
        sub,
        "report",
        cmd_report,
        "service-level report for a month: availability, MTTA, MTTR, backups",
        epilog="Exit codes: 0 written, 1 failure, 2 unknown period, group or config.",
    )
    report.add_argument("--period", required=True, help="the month, YYYY-MM (UTC)")
    report.add_argument("--group", help="only this run group or host group")
    report.add_argument(
        "--format",
        choices=["html", "csv", "md", "json"],
        default="md",
        help="output format (default: %(default)s); html has charts",
    )
    report.add_argument("--output", type=Path, help="write here instead of stdout")
    where = report.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help="collector config whose store to read")
    where.add_argument(
        "--data-dir",
        type=Path,
        help="the data dir of `runwatch up` (default: its default, or $RUNWATCH_DATA_DIR)",
    )


def _add_user_commands(sub: Any) -> None:
    user = _add_command(sub, "user", cmd_user, "add, list or remove console users")
    user_verbs = user.add_subparsers(dest="user_verb", required=True, metavar="VERB")
    user_add = user_verbs.add_parser("add", help="add a user, or change their password/role")
    user_add.add_argument("name")
    user_add.add_argument(
        "--read-only", action="store_true", help="sees everything in the console, changes nothing"
    )
    user_add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    user_remove = user_verbs.add_parser("remove", help="remove a user")
    user_remove.add_argument("name")
    user_list = user_verbs.add_parser("list", help="list users and their roles")
    user_list.add_argument("--json", action="store_true", help="print JSON")
    for command in (user_add, user_remove, user_list):
        _add_config_option(command, "collector", " naming the users file")
        command.add_argument(
            "--users-file", help="the users file itself (default: from the config, DATA_DIR/users)"
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

    up = _add_command(
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
        type=_duration,
        help="the agent's report interval (default: from the agent config, 60s)",
    )
    up.add_argument(
        "--collector-config", type=Path, help="use this collector config instead of the shipped one"
    )
    up.add_argument(
        "--agent-config", type=Path, help="use this agent config instead of the shipped one"
    )

    collector = _add_command(
        sub, "collector", cmd_collector, "run the collector, or manage agent tokens"
    )
    _add_config_option(collector, "collector")
    actions = collector.add_subparsers(dest="action", metavar="ACTION")
    _add_token_commands(actions.add_parser("token", help="add, list or revoke agent tokens"))
    collector.set_defaults(action=None)

    token = sub.add_parser(
        "token", help="add, list or revoke agent tokens (same as `collector token`)"
    )
    _add_token_commands(token)
    token.set_defaults(func=cmd_token)

    agent = _add_command(sub, "agent", cmd_agent, "run the agent")
    _add_config_option(agent, "agent")

    check = _add_command(sub, "check", cmd_check, "run every check once and print the measurements")
    _add_config_option(check, "agent")
    check.add_argument("--json", action="store_true", help="print JSON")

    for name, func, text in (
        ("calls", cmd_calls, "list calls in the built-in register"),
        ("status", cmd_status, "show hosts, their states and problems"),
    ):
        command = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        _add_collector_options(command)
        if name == "calls":
            command.add_argument("--open", action="store_true", help="only open calls")
            command.add_argument(
                "--dead", action="store_true", help="operations a help desk refused (dead letters)"
            )
            command.add_argument("--group", help="only calls owned by this group")
            command.add_argument(
                "--limit",
                type=int,
                default=200,
                help="at most this many, newest first (default: %(default)s)",
            )
        command.set_defaults(func=func)

    job_actions = _add_group(sub, "job", "run a backup or archive job and record its outcome")
    job_run = _add_command(
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

    for add_commands in (
        _add_outbox_commands,
        _add_silence_commands,
        _add_deploy_commands,
        _add_report_commands,
        _add_user_commands,
        _add_call_commands,
    ):
        add_commands(sub)

    config_actions = _add_group(sub, "config", "work with config files")
    validate = _add_command(
        config_actions, "validate", cmd_config_validate, "validate an agent or collector config"
    )
    validate.add_argument("file", type=Path)
    validate.add_argument(
        "--kind",
        choices=["agent", "collector"],
        help="which config it is (default: guessed from its keys)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
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
    _setup_logging(args.log_level)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"runwatch: invalid config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        print(f"runwatch: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"runwatch: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
