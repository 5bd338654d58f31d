"""`runwatch report`: a month's service levels from the collector's store."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from runwatch.cli.common import EXIT_OK, EXIT_USAGE, CommandError, add_command, log


def cmd_report(args: argparse.Namespace) -> int:
    """Compute a month's service levels per run group and host group from the collector's store:
    availability, hosts up, calls opened, mean and 90th percentile time to respond and to resolve,
    calls that missed respond_within, recurring problems, how long each backup job's newest
    backup was within the age its rule allows, and each service's availability and calls against
    its SLA and each run group's calls against its OLA, with the breaches. The same records give
    the same report; a month that has not begun is refused (exit 2)."""
    from collector.service_levels import (
        ReportError,
        build_report,
        host_retirements,
        parse_period,
        render,
    )
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
        retired_hosts, retired = host_retirements(store)
        # A month still running is reported up to now; one that is over never changes; one
        # that has not begun is refused.
        report = build_report(
            store,
            config,
            period,
            args.group,
            as_of=time.time(),
            retired=retired,
            retired_hosts=retired_hosts,
        )
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


def _report_config(args: argparse.Namespace) -> Any:
    """The collector config a report reads the store of: --config, else `runwatch up`'s."""
    from collector.config import load_collector_config

    if args.config is not None:
        return load_collector_config(args.config)
    from runwatch.shipped import shipped_file
    from runwatch.up import default_data_dir

    data_dir = (args.data_dir or default_data_dir()).resolve()
    return load_collector_config(shipped_file("collector.yaml"), {"data_dir": str(data_dir)})


def register(sub: Any) -> None:
    report = add_command(
        sub,
        "report",
        cmd_report,
        "service-level report for a month: availability, MTTA, MTTR, backups, SLAs and OLAs",
        epilog="Exit codes: 0 written, 1 failure, 2 unknown or future period, unknown group or "
        "config.",
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
