"""Archive check: retention and integrity of the files an archive job keeps in a directory.

Freshness: the newest file's age says whether the archive job runs, the oldest's whether the
purge does. Integrity: each file is read back once by the tool for its format:

    .tar.gz .tgz     gzip -t, then tar -tzf
    .gz              gzip -t
    .tar             tar -tf (headers only: tar keeps no checksum of file data)
    .zip             unzip -tq (every member's CRC)
    .dump .pgdump    pg_restore -f /dev/null: a full read. `pg_restore --list` reads only the
                     table of contents and passes a truncated dump.
    any other name   pg_restore as above if the file starts with the custom-format magic
                     PGDMP; otherwise the file is not verified.

tar runs with GNU tar's --index-file=/dev/null, so a listing of millions of names never
reaches the agent's memory.

Gaps: with `expected_interval` (a dump a day: 1d), each gap between consecutive files, and
the time since the newest, counts the files that should be in it (a gap of 1.5 intervals or
more lacks one). A file dated in the future (a wrong clock, a copy that kept a bad mtime)
is named in the output and counts as age 0, never a negative age.

The check's output (which reaches the call) names the files that failed verification, the
gaps and the files dated in the future.

A verdict is cached per file keyed by (path, size, mtime_ns) in `state_dir/verify-cache.json`,
so a file is read once, and a failed file stays failed until it changes. Verification goes
newest first, at most `verify_max_files` files per run, within the check's timeout; the rest
follow on later runs.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, NamedTuple

import msgspec

from checks.base import CheckFailed, CheckOptions, Clock, OnceWarnings, ProbeBase
from checks.command import CommandResult, run_command
from checks.files import FileStat, PathGlob, regular_files
from checks.schema import Measurement
from checks.settings import Duration

_log = logging.getLogger(__name__)

# One file's verification may take this long; a multi-gigabyte gzip takes minutes to read.
VERIFY_TIMEOUT_SECONDS = 300.0
# Share of the check's timeout spent verifying, so the figures still get out in time.
_VERIFY_BUDGET_SHARE = 0.8
_CACHE_NAME = "verify-cache.json"
_CACHE_VERSION = 1
_PGDUMP_MAGIC = b"PGDMP"
# A file this far ahead of the agent's clock is dated in the future (less is clock jitter).
FUTURE_SLACK_SECONDS = 60.0
# Gaps named in the output, the newest first; the count covers them all.
_GAPS_NAMED = 3
# The Debian package that provides each verifying tool, for the "install it" warning.
_PACKAGES = {"gzip": "gzip", "tar": "tar", "unzip": "unzip", "pg_restore": "postgresql-client"}

Runner = Callable[..., CommandResult]
Which = Callable[[str], "str | None"]


class ArchiveOptions(CheckOptions, tag="archive", frozen=True):
    """Which archive files to watch, how long they may be kept, and whether to verify them."""

    path: PathGlob
    retention: Duration  # files older than this should have been purged
    max_age: Duration | None = None  # a newest file older than this: the job is not running
    verify: bool = True
    verify_max_files: Annotated[int, msgspec.Meta(ge=0)] = 20  # per run, newest first
    label: str | None = None  # the `archive` label value; default: the glob
    expected_interval: Duration | None = None  # a file every ...: count the files missing

    default_interval: ClassVar[float | None] = 900.0
    default_timeout: ClassVar[float] = 600.0


class Verdict(NamedTuple):
    """The outcome of reading one version of one file in full."""

    size_bytes: int
    mtime_ns: int
    ok: bool
    detail: str  # why it failed, from the tool's stderr
    verified_at: float


def _age(now: float, file: FileStat) -> float:
    """A file's age in seconds; 0 for a file dated in the future."""
    return max(0.0, now - file.mtime_seconds)


def _local(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


def _has_pgdump_magic(path: str) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(len(_PGDUMP_MAGIC)) == _PGDUMP_MAGIC
    except OSError:
        return False


def _which(name: str) -> str | None:
    import shutil  # imported when needed: most agents never look for pg_restore

    return shutil.which(name)


def find_pg_restore(which: Which | None = None) -> str | None:
    """Return pg_restore from PATH, else the newest under /usr/lib/postgresql/*/bin/."""
    found = (which or _which)("pg_restore")
    if found:
        return found

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    candidates = glob.glob("/usr/lib/postgresql/*/bin/pg_restore")
    return max(candidates, key=version) if candidates else None


def verify_argvs(path: str) -> list[list[str]] | None:
    """Return the commands that read `path` in full (all must exit 0), or None for no verifier.

    argv[0] is the tool's name; the caller resolves it to a path.
    """
    name = path.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return [["gzip", "-t", path], ["tar", "--index-file=/dev/null", "-tzf", path]]
    if name.endswith(".gz"):
        return [["gzip", "-t", path]]
    if name.endswith(".tar"):
        return [["tar", "--index-file=/dev/null", "-tf", path]]
    if name.endswith(".zip"):
        return [["unzip", "-tq", path]]
    if name.endswith((".dump", ".pgdump")) or _has_pgdump_magic(path):
        return [["pg_restore", "-f", "/dev/null", path]]
    return None


class ArchiveCheck(ProbeBase[ArchiveOptions]):
    """Report count, size, ages and retention of archive files, and whether they read back."""

    def __init__(
        self,
        options: ArchiveOptions,
        *,
        state_dir: Path | None = None,
        which: Which | None = None,
        run: Runner = run_command,
        timeout: float | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        super().__init__(options, timeout=timeout, clock=clock, monotonic=monotonic)
        self._cache_path = state_dir / _CACHE_NAME if state_dir is not None else None
        self._run = run
        self._which = which or _which
        self._verdicts: dict[str, Verdict] | None = None  # loaded on the first collect
        self._save_failed = False
        self._verify_budget = self._timeout * _VERIFY_BUDGET_SHARE
        self._future_warnings = OnceWarnings(_log)
        self.last_output: str | None = None

    def collect(self) -> list[Measurement]:
        """Return the archive's figures, verifying new files first when `verify` is on."""
        files = regular_files(self._options.path, what="archive")
        now = self._clock()
        notes: list[str] = []
        retention = float(self._options.retention)
        past_retention = [f for f in files if now - f.mtime_seconds > retention]
        future = self._in_future(files, now, notes)
        figures: list[tuple[str, float, str]] = [
            ("archive_files", len(files), ""),
            ("archive_bytes", sum(f.size_bytes for f in files), "bytes"),
            ("archive_retention_breached", 1 if past_retention else 0, ""),
            ("archive_files_past_retention", len(past_retention), ""),
            ("archive_files_in_future", len(future), ""),
        ]
        newest = max(files, key=lambda f: f.mtime_seconds, default=None)
        if newest is not None:
            oldest = min(files, key=lambda f: f.mtime_seconds)
            figures += [
                ("archive_newest_file_age_seconds", _age(now, newest), "seconds"),
                ("archive_oldest_file_age_seconds", _age(now, oldest), "seconds"),
            ]
        figures += self._gaps(files, now, notes)
        if self._options.max_age is not None:
            # No file at all means the job is not running either.
            too_old = newest is None or _age(now, newest) > float(self._options.max_age)
            figures.append(("archive_newest_too_old", 1 if too_old else 0, ""))
        if self._options.verify:
            verdicts = self._verify(files)
            failed = {path: v for path, v in verdicts.items() if not v.ok}
            figures += [
                ("archive_verified_files", len(verdicts), ""),
                ("archive_verify_failures", len(failed), ""),
                ("archive_verify_success", 0 if failed else 1, ""),
            ]
            notes[:0] = [f"failed verification: {path} ({v.detail})" for path, v in failed.items()]
        self.last_output = "; ".join(notes) or None
        labels = {"archive": self._options.label or self._options.path}
        return self._measurements(figures, now, labels)

    def _in_future(self, files: Sequence[FileStat], now: float, notes: list[str]) -> list[str]:
        """The files dated in the future, warned about once each and noted for the output."""
        seen: set[object] = set()
        future = sorted(f.path for f in files if f.mtime_seconds > now + FUTURE_SLACK_SECONDS)
        for path in future:
            self._future_warnings.warn(
                seen,
                path,
                "archive check: %s is dated in the future; its age counts as 0. Check the "
                "clock of the host that wrote it, or set its time with touch",
                path,
            )
        self._future_warnings.forget_except(seen)
        if future:
            notes.append(f"dated in the future: {', '.join(future)}")
        return future

    def _gaps(
        self, files: Sequence[FileStat], now: float, notes: list[str]
    ) -> list[tuple[str, float, str]]:
        """The largest gap between files, and with `expected_interval` the files missing."""
        times = sorted(min(f.mtime_seconds, now) for f in files)
        gaps = list(itertools.pairwise(times))
        figures: list[tuple[str, float, str]] = []
        if gaps:
            largest = max(later - earlier for earlier, later in gaps)
            figures.append(("archive_largest_gap_seconds", largest, "seconds"))
        if self._options.expected_interval is None:
            return figures
        interval = float(self._options.expected_interval)
        if times:
            gaps.append((times[-1], now))  # since the newest: the files not written yet
        missing = [
            (count, earlier, later)
            for earlier, later in gaps
            if (count := int((later - earlier) / interval + 0.5) - 1) > 0
        ]
        figures.append(("archive_missing_files", sum(count for count, _, _ in missing), ""))
        for count, earlier, later in reversed(missing[-_GAPS_NAMED:]):
            notes.append(
                f"{count} file(s) missing between {_local(earlier)} and "
                f"{'now' if later == now else _local(later)}"
            )
        return figures

    # --- integrity -------------------------------------------------------------------------

    def _verify(self, files: Sequence[FileStat]) -> dict[str, Verdict]:
        """Verify what has no verdict yet, within limits; return the verdicts of `files`."""
        verdicts = self._load()
        present = {f.path for f in files}
        gone = [path for path in verdicts if path not in present]
        for path in gone:
            del verdicts[path]  # purged or renamed: forget it
        started = self._monotonic()
        budget_left = True
        verified = 0
        missing_tools: set[str] = set()
        for file in sorted(files, key=lambda f: f.mtime_seconds, reverse=True):
            known = verdicts.get(file.path)
            if known is not None and (known.size_bytes, known.mtime_ns) == (
                file.size_bytes,
                file.mtime_ns,
            ):
                continue
            if verified >= self._options.verify_max_files or not budget_left:
                break
            argvs = verify_argvs(file.path)
            if argvs is None:
                continue
            remaining = self._verify_budget - (self._monotonic() - started)
            if remaining < 1:
                budget_left = False
                break
            verdict = self._verify_one(
                file, argvs, min(VERIFY_TIMEOUT_SECONDS, remaining), missing_tools
            )
            if verdict is None:
                continue
            verified += 1
            verdicts[file.path] = verdict
            self._save()  # after each file: a run cut short by its timeout keeps its progress
        for tool in sorted(missing_tools):
            _log.warning(
                "archive check: %s is not installed, so %s files are not verified; install the "
                "Debian package %s, or set `verify: false`",
                tool,
                self._options.path,
                _PACKAGES[tool],
            )
        if not budget_left:
            _log.info(
                "archive check: verification of %s ran out of time this run; the remaining "
                "files follow on later runs",
                self._options.path,
            )
        if gone and not verified:
            self._save()
        return {
            f.path: verdicts[f.path]
            for f in files
            if f.path in verdicts
            and (verdicts[f.path].size_bytes, verdicts[f.path].mtime_ns)
            == (f.size_bytes, f.mtime_ns)
        }

    def _verify_one(
        self, file: FileStat, argvs: list[list[str]], timeout: float, missing_tools: set[str]
    ) -> Verdict | None:
        """Read one file in full; None when it could not be judged (tool missing, timeout)."""
        for argv in argvs:
            tool = argv[0]
            executable = find_pg_restore(self._which) if tool == "pg_restore" else self._which(tool)
            if executable is None:
                missing_tools.add(tool)
                return None
            try:
                result = self._run([executable, *argv[1:]], timeout=timeout)
            except CheckFailed as exc:
                _log.warning("archive check: cannot verify %s: %s", file.path, exc)
                return None
            if result.returncode != 0:
                lines = [line for line in result.stderr.splitlines() if line.strip()]
                detail = f"{tool} exit {result.returncode}: {lines[-1] if lines else 'no message'}"
                if self._changed_since(file):
                    return None  # still being written: judge it when it has settled
                _log.warning(
                    "archive check: %s failed verification (%s); restore it from another copy "
                    "or remove it",
                    file.path,
                    detail,
                )
                return Verdict(file.size_bytes, file.mtime_ns, False, detail, self._clock())
        if self._changed_since(file):
            return None
        return Verdict(file.size_bytes, file.mtime_ns, True, "", self._clock())

    @staticmethod
    def _changed_since(file: FileStat) -> bool:
        try:
            st = os.stat(file.path)
        except OSError:
            return True
        return (st.st_size, st.st_mtime_ns) != (file.size_bytes, file.mtime_ns)

    # --- the verdict cache -----------------------------------------------------------------

    def _load(self) -> dict[str, Verdict]:
        if self._verdicts is not None:
            return self._verdicts
        self._verdicts = {}
        if self._cache_path is None:
            return self._verdicts
        try:
            data: Any = json.loads(self._cache_path.read_bytes())
            if data.get("version") != _CACHE_VERSION:
                raise ValueError(f"version {data.get('version')!r}")
            for path, entry in data["files"].items():
                self._verdicts[path] = Verdict(
                    int(entry["size_bytes"]),
                    int(entry["mtime_ns"]),
                    bool(entry["ok"]),
                    str(entry["detail"]),
                    float(entry["verified_at"]),
                )
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            self._verdicts = {}
            _log.warning(
                "archive check: ignoring unreadable verification cache %s (%s); every file "
                "is verified again",
                self._cache_path,
                exc,
            )
        return self._verdicts

    def _save(self) -> None:
        if self._cache_path is None or self._verdicts is None:
            return
        data = {
            "version": _CACHE_VERSION,
            "files": {path: verdict._asdict() for path, verdict in self._verdicts.items()},
        }
        directory = self._cache_path.parent
        temp: str | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            import tempfile  # only when the cache is saved: agents that never do skip it

            fd, temp = tempfile.mkstemp(dir=directory, prefix=".verify-cache.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self._cache_path)
            temp = None
            self._save_failed = False
        except OSError as exc:
            level = logging.DEBUG if self._save_failed else logging.WARNING
            self._save_failed = True
            _log.log(
                level,
                "archive check: cannot save the verification cache %s (%s); files will be "
                "verified again after a restart; give the agent write access to its state_dir",
                self._cache_path,
                exc.strerror or exc,
            )
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
