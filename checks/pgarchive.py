"""PostgreSQL WAL archiving check: pg_stat_archiver and the `.ready` backlog, read with psql."""

from __future__ import annotations

import logging
import re
from typing import ClassVar, NamedTuple
from urllib.parse import unquote, urlsplit

from checks.base import CheckFailed, CheckOptions, ProbeBase
from checks.command import CommandResult, run_command, time_left
from checks.schema import Measurement

_log = logging.getLogger(__name__)

# One row, so one round trip says everything; current_setting() is `SHOW archive_mode` as a value.
ARCHIVER_QUERY = (
    "SELECT archived_count, failed_count, extract(epoch FROM last_archived_time), "
    "extract(epoch FROM last_failed_time), extract(epoch FROM stats_reset), "
    "current_setting('archive_mode') FROM pg_stat_archiver"
)
# pg_ls_archive_statusdir() needs superuser or pg_monitor; it runs apart so that a refusal
# costs only this series.
READY_QUERY = "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"

_PERMISSION_DENIED = re.compile(r"permission denied", re.IGNORECASE)
_CONNINFO_PAIR = re.compile(r"\s*(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")


class PgArchiverOptions(CheckOptions, tag="pg_archiver", frozen=True):
    """Which cluster to ask, and how."""

    dsn: str = "host=/var/run/postgresql dbname=postgres"  # libpq conninfo string or URI
    psql: str = "psql"
    password_file: str | None = None  # a libpq .pgpass file, passed as PGPASSFILE
    cluster: str | None = None  # label; defaults to the dsn's host:port, else "default"

    default_interval: ClassVar[float | None] = 60.0


class ArchiverStats(NamedTuple):
    """One row of pg_stat_archiver; times in Unix seconds, None when PostgreSQL has none."""

    archived: int
    failed: int
    last_archived: float | None
    last_failed: float | None
    stats_reset: float | None
    archive_mode: str


def conninfo_params(dsn: str) -> dict[str, str]:
    """Return the key/value pairs of a libpq conninfo string or a postgresql:// URI."""
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(dsn)
        params: dict[str, str] = {}
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = parts.hostname, None
        if host:
            params["host"] = unquote(host)
        if port:
            params["port"] = str(port)
        for pair in parts.query.split("&"):
            key, _, value = pair.partition("=")
            if key:
                params[key] = unquote(value)
        return params
    out = {}
    for match in _CONNINFO_PAIR.finditer(dsn):
        value = match.group(2)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[match.group(1)] = value
    return out


def cluster_label(dsn: str) -> str:
    """Name a cluster by the dsn's host:port (port 5432 unless given), or "default"."""
    params = conninfo_params(dsn)
    host = params.get("host") or params.get("hostaddr")
    if not host:
        return "default"
    return f"{host}:{params.get('port') or '5432'}"


def parse_archiver_row(text: str) -> ArchiverStats:
    """Parse the `|`-separated row that ARCHIVER_QUERY prints with `psql -A -t`."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1 or lines[0].count("|") != 5:
        raise ValueError(f"expected one row of 6 fields, got {text.strip()[:200]!r}")
    archived, failed, last_archived, last_failed, reset, mode = lines[0].split("|")

    def epoch(field: str) -> float | None:
        return float(field) if field else None  # psql prints NULL as an empty field

    return ArchiverStats(
        int(archived), int(failed), epoch(last_archived), epoch(last_failed), epoch(reset), mode
    )


def is_failing(stats: ArchiverStats) -> bool:
    """Return whether the last archive attempt failed (it failed after the last success)."""
    if stats.last_failed is None:
        return False
    return stats.last_archived is None or stats.last_failed > stats.last_archived


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no output")


class PgArchiverCheck(ProbeBase[PgArchiverOptions]):
    """Report WAL archiving progress, failures and backlog of one PostgreSQL cluster.

    `pg_archiver_failing_for_seconds` is now - last_archived_time while failing (else 0).
    pg_stat_archiver does not say when the current run of failures began, only that it began
    after the last success, so this is an upper bound: on a quiet database whose last segment
    was archived hours ago, the first failure already reads as hours. Before any success it
    counts from stats_reset, the earliest the statistics can speak for.
    """

    def _prepare(self) -> None:
        self._labels = {"cluster": self._options.cluster or cluster_label(self._options.dsn)}
        self._env = {"PGCONNECT_TIMEOUT": "5"}
        if self._options.password_file:
            self._env["PGPASSFILE"] = self._options.password_file

    def collect(self) -> list[Measurement]:
        """Return the archiver's counters, state and backlog, or raise with probe_success 0."""
        deadline = self._monotonic() + self._timeout  # both psql calls share the runner's budget
        result = self._psql(ARCHIVER_QUERY, deadline)
        now = self._clock()
        if result.returncode != 0:
            raise CheckFailed(
                f"psql could not read pg_stat_archiver from {self._labels['cluster']} "
                f"(exit {result.returncode}): {_first_line(result.stderr)}; check `dsn` and "
                "that the agent's user may connect",
                measurements=[self._measurement("pg_archiver_probe_success", 0, now)],
            )
        try:
            stats = parse_archiver_row(result.stdout)
        except ValueError as exc:
            raise CheckFailed(
                f"unexpected psql output for pg_stat_archiver: {exc}",
                measurements=[self._measurement("pg_archiver_probe_success", 0, now)],
            ) from None
        out = self._figures(stats, now)
        ready = self._ready_files(deadline)
        if ready is not None:
            out.append(self._measurement("pg_archiver_ready_files", ready, now))
        return out

    def _figures(self, stats: ArchiverStats, now: float) -> list[Measurement]:
        failing = is_failing(stats)
        failing_for = 0.0
        if failing:
            since = stats.last_archived if stats.last_archived is not None else stats.stats_reset
            failing_for = max(0.0, now - since) if since is not None else 0.0
        figures: list[tuple[str, float, str]] = [
            ("pg_archiver_probe_success", 1, ""),
            ("pg_archiver_archive_mode_enabled", stats.archive_mode in {"on", "always"}, ""),
            # Cumulative since stats_reset: a non-zero `failed` alone says nothing about now.
            ("pg_archiver_archived", stats.archived, ""),
            ("pg_archiver_failed", stats.failed, ""),
            ("pg_archiver_failing", failing, ""),
            ("pg_archiver_failing_for_seconds", failing_for, "seconds"),
        ]
        if stats.last_archived is not None:
            figures.append(
                ("pg_archiver_last_archived_timestamp_seconds", stats.last_archived, "seconds")
            )
        if stats.last_failed is not None:
            figures.append(
                ("pg_archiver_last_failed_timestamp_seconds", stats.last_failed, "seconds")
            )
        return self._measurements(figures, now)

    def _ready_files(self, deadline: float) -> int | None:
        result = self._psql(READY_QUERY, deadline)
        if result.returncode == 0:
            try:
                return int(result.stdout.strip())
            except ValueError:
                _log.warning(
                    "pg_archiver check: unexpected output counting .ready files: %r",
                    result.stdout.strip()[:200],
                )
                return None
        if _PERMISSION_DENIED.search(result.stderr):
            _log.warning(
                "pg_archiver check: cannot count .ready files on %s: %s; grant the agent's "
                "database role pg_monitor (GRANT pg_monitor TO <role>)",
                self._labels["cluster"],
                _first_line(result.stderr),
            )
        else:
            _log.warning(
                "pg_archiver check: cannot count .ready files on %s: %s",
                self._labels["cluster"],
                _first_line(result.stderr),
            )
        return None

    def _psql(self, query: str, deadline: float) -> CommandResult:
        # -X: no ~/.psqlrc; -w: never wait for a password on a terminal.
        argv = [
            self._options.psql,
            "-X",
            "-w",
            "-A",
            "-t",
            "-F",
            "|",
            "-d",
            self._options.dsn,
            "-c",
            query,
        ]
        timeout = time_left(deadline, self._monotonic(), "psql")
        return run_command(argv, timeout=timeout, env=self._env)
