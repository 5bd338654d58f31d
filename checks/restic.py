"""restic check: freshness, count and size of a repository's snapshots, and its stale locks.

Every command runs with `--no-lock`, so the probe never waits for a backup or prune and still
works while a killed job's stale exclusive lock is in place. The password reaches restic only
through RESTIC_PASSWORD_FILE or RESTIC_PASSWORD_COMMAND in its environment, never on argv.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec

from checks.backup import BackupProbe
from checks.base import CheckFailed, CheckOptions
from checks.command import CommandResult, run_command, time_left
from checks.schema import Measurement
from checks.settings import field_error

_log = logging.getLogger(__name__)

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]

# restic writes RFC 3339 with nanoseconds ("2026-11-22T09:06:12.170181247+01:00"); Python's
# fromisoformat takes at most 6 fractional digits.
_RFC3339 = re.compile(
    r"^(?P<base>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d+))?"
    r"(?P<zone>Z|[+-]\d\d:?\d\d)$"
)


def parse_restic_time(text: object) -> float:
    """Return the Unix time of one of restic's RFC 3339 timestamps (any offset, up to ns).
    Anything else, a JSON null or number included, is a ValueError."""
    match = _RFC3339.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    fraction = (match.group("fraction") or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match.group("zone") == "Z" else match.group("zone")
    return datetime.fromisoformat(f"{match.group('base')}.{fraction}{zone}").timestamp()


class ResticOptions(CheckOptions, tag="restic", frozen=True):
    """Which restic repository to probe, how to unlock it, and which snapshots count."""

    repository: NonEmpty  # a path or a restic URL (sftp:, rest:, s3:, …)
    password_file: NonEmpty | None = None  # exactly one of these two; never the password itself
    password_command: NonEmpty | None = None
    host: NonEmpty | None = None  # only snapshots taken with this --host
    # Only snapshots with one of these tags; "a,b" means both a and b, as restic's --tag.
    tags: list[NonEmpty] = msgspec.field(default_factory=list)
    paths: list[NonEmpty] = msgspec.field(default_factory=list)  # absolute, as backed up
    job: NonEmpty | None = None  # the `job` label; defaults to the instance name
    restic: NonEmpty = "restic"  # the binary, on PATH or as a path
    cache_dir: NonEmpty | None = None  # default: the agent's, shared per repository (backup.py)
    locks: bool = True  # count locks and report the oldest one's age
    stats: bool = True  # sizes of the latest snapshot and of the repository

    default_interval: ClassVar[float | None] = 900.0
    default_timeout: ClassVar[float] = 600.0

    def __post_init__(self) -> None:
        if self.password_file is not None and self.password_command is not None:
            raise field_error(
                "password_command", "give password_file or password_command, not both"
            )
        if self.password_file is None and self.password_command is None:
            raise field_error(
                "password_file",
                "give password_file or password_command "
                "(the password itself never goes in the config)",
            )

    @property
    def password_source(self) -> str:
        """Name the option that supplies the password, for messages that say what to check."""
        return "password_file" if self.password_file is not None else "password_command"


_URL_PASSWORD = re.compile(r"(://[^/:@\s]*):[^/@\s]*@")


def redact_url(text: str) -> str:
    """Hide the password of a `rest:https://user:password@host/` style URL."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


def _stderr_excerpt(stderr: str, lines: int = 2) -> str:
    """Return the first non-empty lines of a tool's stderr, trimmed, joined with '; '."""
    kept = [line.strip() for line in stderr.splitlines() if line.strip()][:lines]
    return redact_url("; ".join(line[:300] for line in kept)) or "no message"


class ResticCheck(BackupProbe[ResticOptions]):
    """Report the newest snapshot's time and age, snapshot count, sizes and lock state."""

    def _prepare(self) -> None:
        options = self._options
        cache_dir = self._own_dir(options.cache_dir, "cache")
        self._labels = {
            "job": options.job or options.instance,
            "tool": "restic",
            "repo": redact_url(options.repository),
        }
        self._env = {"RESTIC_REPOSITORY": options.repository}
        if options.password_file is not None:
            self._env["RESTIC_PASSWORD_FILE"] = options.password_file
        else:
            self._env["RESTIC_PASSWORD_COMMAND"] = str(options.password_command)
        # restic writes its cache to ~/.cache/restic unless told otherwise.
        self._cache_args = (
            ["--cache-dir", str(cache_dir)] if cache_dir is not None else ["--no-cache"]
        )

    def collect(self) -> list[Measurement]:
        """Return snapshot, size and lock figures; raise CheckFailed if the repo can't be read.

        A repository with no (matching) snapshots is not a failure: it reports
        `backup_snapshots 0` and no timestamp or age series, since there is no time to report;
        the collector alerts on the missing age series.
        """
        run = self._start_run()
        with self._turn(run):
            try:
                snapshots = self._snapshots(run.deadline)
            except CheckFailed as exc:
                raise run.failed(exc) from None
            newest_time, newest = (
                max(snapshots, key=lambda pair: pair[0]) if snapshots else (None, None)
            )
            run.snapshots(len(snapshots), newest_time)
            if self._options.stats:
                run.figures.extend(self._stats(newest, run.deadline))
            if self._options.locks:
                run.figures.extend(self._locks(run.now, run.deadline))
            return run.finish(True)

    def _run(self, args: list[str], deadline: float) -> CommandResult:
        remaining = time_left(deadline, self._monotonic(), f"restic {' '.join(args[:2])}")
        argv = [self._options.restic, *args, "--no-lock", *self._cache_args]
        return run_command(argv, timeout=remaining, env=self._env)

    def _snapshots(self, deadline: float) -> list[tuple[float, dict[str, Any]]]:
        args = ["snapshots", "--json"]
        if self._options.host is not None:
            args += ["--host", self._options.host]
        for tag in self._options.tags:
            args += ["--tag", tag]
        for path in self._options.paths:
            args += ["--path", path]
        result = self._run(args, deadline)
        if result.returncode != 0:
            raise CheckFailed(self._explain(result))
        with self._parsing("restic snapshots --json", f"{self._options.restic} restic >= 0.9"):
            raw = json.loads(result.stdout) or []  # restic may print null for none
            return [(parse_restic_time(item["time"]), item) for item in raw]

    def _explain(self, result: CommandResult) -> str:
        """Say what failed and what to change, from restic's stderr (never the password)."""
        repo = self._labels["repo"]
        source = self._options.password_source
        stderr = result.stderr
        said = _stderr_excerpt(stderr)
        if "wrong password" in stderr:
            return f"wrong password for repository {repo}: check {source} (restic: {said})"
        if "Resolving password failed" in stderr:
            return f"cannot get the password for repository {repo}: check {source} (restic: {said})"
        if "unable to open config file" in stderr or "Is there a repository at" in stderr:
            if "no such file or directory" in stderr:
                return f"repository {repo} does not exist: check repository (restic: {said})"
            return (
                f"cannot open repository {repo}: check repository and the agent's access "
                f"to it (restic: {said})"
            )
        return f"restic snapshots failed for repository {repo} (exit {result.returncode}): {said}"

    def _optional(self, what: str, args: list[str], deadline: float) -> Any | None:
        """Run a command whose series are optional and return its JSON; on failure warn, None."""
        try:
            result = self._run(args, deadline)
        except CheckFailed as exc:
            _log.warning("restic check %s: skipping %s: %s", self._options.instance, what, exc)
            return None
        if result.returncode != 0:
            _log.warning(
                "restic check %s: skipping %s: restic %s exited %d: %s",
                self._options.instance,
                what,
                " ".join(args[:2]),
                result.returncode,
                _stderr_excerpt(result.stderr),
            )
            return None
        try:
            return json.loads(result.stdout)
        except ValueError as exc:
            _log.warning(
                "restic check %s: skipping %s: restic %s printed no JSON (%s)",
                self._options.instance,
                what,
                " ".join(args[:2]),
                exc,
            )
            return None

    def _stats(
        self, newest: dict[str, Any] | None, deadline: float
    ) -> list[tuple[str, float, str]]:
        out: list[tuple[str, float, str]] = []
        if newest is not None and isinstance(newest.get("id"), str):
            # The newest matching snapshot by ID: `latest` would ignore host/tag/path filters.
            latest = self._optional(
                "the latest snapshot's size",
                ["stats", "--json", "--mode", "restore-size", newest["id"]],
                deadline,
            )
            out += _numbers(
                latest,
                [
                    ("backup_last_size_bytes", "total_size", "bytes"),
                    ("backup_last_files", "total_file_count", ""),
                ],
            )
        # raw-data visits each unique tree once; restore-size would walk every snapshot anew.
        raw = self._optional(
            "the repository size", ["stats", "--json", "--mode", "raw-data"], deadline
        )
        out += _numbers(raw, [("backup_repository_size_bytes", "total_size", "bytes")])
        return out

    def _locks(self, now: float, deadline: float) -> list[tuple[str, float, str]]:
        try:
            listing = self._run(["list", "locks"], deadline)
        except CheckFailed as exc:
            _log.warning("restic check %s: skipping locks: %s", self._options.instance, exc)
            return []
        if listing.returncode != 0:
            _log.warning(
                "restic check %s: skipping locks: restic list locks exited %d: %s",
                self._options.instance,
                listing.returncode,
                _stderr_excerpt(listing.stderr),
            )
            return []
        times: list[float] = []
        for lock_id in listing.stdout.split():
            lock = self._read_lock(lock_id, deadline)
            if lock is not None:
                times.append(lock)
        oldest_age = now - min(times) if times else 0.0
        return [
            ("backup_repository_locks", len(times), ""),
            ("backup_oldest_lock_age_seconds", oldest_age, "seconds"),
        ]

    def _read_lock(self, lock_id: str, deadline: float) -> float | None:
        """Return when a lock was taken, or None if it is gone or unreadable."""
        try:
            result = self._run(["cat", "lock", lock_id], deadline)
        except CheckFailed as exc:
            _log.warning("restic check %s: lock %s: %s", self._options.instance, lock_id[:8], exc)
            return None
        if result.returncode != 0:
            # Most often the lock was released between `list` and `cat`: it was not stale.
            _log.debug(
                "restic check %s: lock %s: %s",
                self._options.instance,
                lock_id[:8],
                _stderr_excerpt(result.stderr),
            )
            return None
        try:
            return parse_restic_time(json.loads(result.stdout)["time"])
        except (ValueError, KeyError, TypeError) as exc:
            _log.warning(
                "restic check %s: lock %s is not readable JSON with a time: %s",
                self._options.instance,
                lock_id[:8],
                exc,
            )
            return None


def _numbers(document: Any, fields: list[tuple[str, str, str]]) -> list[tuple[str, float, str]]:
    """Pick (measurement, JSON key, unit) figures out of a JSON object, skipping absent ones."""
    if not isinstance(document, dict):
        return []
    return [
        (name, float(document[key]), unit)
        for name, key, unit in fields
        if isinstance(document.get(key), int | float)
    ]
