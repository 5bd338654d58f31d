"""BorgBackup check: freshness, count and sizes of a repository's archives (borg 1.x).

Every command runs with `--bypass-lock` and the agent's own BORG_BASE_DIR, so the probe never
waits on a running backup's repository or cache lock, and never answers a prompt.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Annotated, ClassVar

import msgspec

from checks.backup import BackupProbe
from checks.base import CheckFailed, CheckOptions
from checks.command import CommandResult, run_command, time_left
from checks.schema import Measurement
from checks.settings import field_error

_log = logging.getLogger(__name__)

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]

# borg 1.x: 0 success, 1 warning, 2 error; with BORG_EXIT_CODES=modern (1.4) 100-127 are
# warnings too. A warning still printed its JSON.
_WARNING_CODES = frozenset({1, *range(100, 128)})

# Errors borg names by msgid (with --log-json), and what the user should change.
_HINTS = {
    "PasscommandFailure": "the passcommand failed for repository {repo}: check passcommand",
    "Repository.DoesNotExist": "repository {repo} does not exist: check repository",
    "Repository.InvalidRepository": "{repo} is not a borg repository: check repository",
    "Cache.RepositoryReplay": (
        "the agent's borg security data for {repo} is newer than the repository (was it "
        "restored or copied?); if that is expected, remove its directory under "
        "{base_dir}/.config/borg/security"
    ),
    "Cache.RepositoryIDNotUnique": (
        "the agent's borg cache for {repo} is newer than the repository (was it restored or "
        "copied?); if that is expected, remove its directory under {base_dir}/.cache/borg"
    ),
}


def is_checkpoint(name: str) -> bool:
    """Return whether an archive is a checkpoint that an interrupted `borg create` left."""
    return name.endswith(".checkpoint") or ".checkpoint." in name


class BorgOptions(CheckOptions, tag="borg", frozen=True):
    """Which borg repository to probe, how to unlock it, and which archives count."""

    repository: NonEmpty  # a path or ssh://user@host/path
    passcommand: NonEmpty | None = None  # exactly one of these two; never the passphrase itself
    passphrase_file: NonEmpty | None = None
    prefix: NonEmpty | None = None  # only archives whose name starts so (a glob: -a 'PREFIX*')
    job: NonEmpty | None = None  # the `job` label; defaults to the instance name
    borg: NonEmpty = "borg"  # the binary, on PATH or as a path
    base_dir: NonEmpty | None = None  # BORG_BASE_DIR; default: the agent's, shared per repository
    # The zone borg prints its zone-less times in. The agent runs borg with TZ set to it, so
    # with borg itself any zone reads right; it matters only for a `borg` wrapper (ssh, sudo -i,
    # a container) that drops TZ: then set the zone that borg runs in.
    timezone: NonEmpty | None = None  # an IANA zone; defaults to UTC
    info: bool = True  # sizes, file count and duration of the latest archive

    default_interval: ClassVar[float | None] = 900.0
    default_timeout: ClassVar[float] = 600.0

    def __post_init__(self) -> None:
        if self.passcommand is not None and self.passphrase_file is not None:
            raise field_error("passphrase_file", "give passcommand or passphrase_file, not both")
        if self.passcommand is None and self.passphrase_file is None:
            raise field_error(
                "passcommand",
                "give passcommand or passphrase_file "
                "(the passphrase itself never goes in the config)",
            )
        if self.timezone is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # only for borg checks

            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise field_error(
                    "timezone",
                    f"unknown time zone {self.timezone!r}; use an IANA name such as Europe/Berlin",
                ) from None

    @property
    def passphrase_source(self) -> str:
        """Name the option that supplies the passphrase, for messages that say what to check."""
        return "passphrase_file" if self.passphrase_file is not None else "passcommand"


def _log_lines(stderr: str) -> list[tuple[str, str, str]]:
    """Return (levelname, msgid, message) for each line of borg's --log-json stderr."""
    out: list[tuple[str, str, str]] = []
    for line in stderr.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict) and entry.get("type") == "log_message":
            out.append(
                (
                    str(entry.get("levelname", "")),
                    str(entry.get("msgid") or ""),
                    str(entry.get("message", "")).strip(),
                )
            )
        elif isinstance(entry, dict):
            continue  # progress and file status lines
        else:
            out.append(("", "", line.strip()))  # plain text, e.g. a traceback
    return out


class BorgCheck(BackupProbe[BorgOptions]):
    """Report the newest archive's time and age, archive count, sizes and duration."""

    def _prepare(self) -> None:
        from zoneinfo import ZoneInfo  # only for borg checks

        options = self._options
        self._zone = ZoneInfo(options.timezone or "UTC")
        self._base_dir = self._own_dir(options.base_dir, "base")
        self._labels = {
            "job": options.job or options.instance,
            "tool": "borg",
            "repo": options.repository,
        }

    def collect(self) -> list[Measurement]:
        """Return archive, size and duration figures; raise CheckFailed if the repo can't be read.

        A repository with no (matching, non-checkpoint) archives is not a failure: it reports
        `backup_snapshots 0` and no timestamp or age series, since there is no time to report;
        the collector alerts on the missing age series.
        """
        run = self._start_run()
        with self._turn(run):
            try:
                env, secret = self._env()
                archives = self._archives(env, secret, run.deadline)
            except CheckFailed as exc:
                raise run.failed(exc) from None
            newest_time, newest = max(archives) if archives else (None, None)
            run.snapshots(len(archives), newest_time)
            if self._options.info:
                run.figures.extend(self._info(newest, env, secret, run.deadline))
            return run.finish(True)

    def _env(self) -> tuple[dict[str, str], str | None]:
        """Return borg's environment and the passphrase (to keep out of messages), if read."""
        env = {
            # Never stop at a prompt: the repository moved, or is unencrypted and new to us.
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            # borg 1.x prints archive times without a zone, in its own local zone.
            "TZ": self._zone.key,
        }
        if self._base_dir is not None:
            # The agent's own cache and security dir: no wait on the backup job's cache lock.
            env["BORG_BASE_DIR"] = str(self._base_dir)
        if self._options.passcommand is not None:
            env["BORG_PASSCOMMAND"] = self._options.passcommand
            return env, None
        path = str(self._options.passphrase_file)
        try:
            with open(path, encoding="utf-8") as handle:
                passphrase = handle.read()
        except OSError as exc:
            raise CheckFailed(
                f"cannot read passphrase_file {path} for repository {self._options.repository}: "
                f"{exc.strerror}; check passphrase_file and the agent's read access to it"
            ) from None
        except UnicodeDecodeError:
            raise CheckFailed(f"passphrase_file {path} is not UTF-8 text") from None
        # As `cat file` through BORG_PASSCOMMAND would: the line ends, not the passphrase.
        passphrase = passphrase.removesuffix("\n").removesuffix("\r")
        env["BORG_PASSPHRASE"] = passphrase
        return env, passphrase or None

    def _run(self, args: list[str], env: dict[str, str], deadline: float) -> CommandResult:
        remaining = time_left(deadline, self._monotonic(), f"borg {args[0]}")
        argv = [self._options.borg, args[0], "--json", "--log-json", "--bypass-lock", *args[1:]]
        return run_command(argv, timeout=remaining, env=env)

    def _archives(
        self, env: dict[str, str], secret: str | None, deadline: float
    ) -> list[tuple[float, str]]:
        args = ["list"]
        if self._options.prefix is not None:
            args += ["-a", f"{self._options.prefix}*"]
        result = self._run([*args, self._options.repository], env, deadline)
        self._warn_if_warning(result, secret)
        if result.returncode != 0 and result.returncode not in _WARNING_CODES:
            raise CheckFailed(self._explain(result, secret))
        with self._parsing("borg list --json", f"{self._options.borg} borg 1.x"):
            listing = json.loads(result.stdout)["archives"]
            archives = [(self._timestamp(item["time"]), _archive_name(item)) for item in listing]
            # borg 1.2 hides checkpoints; older ones may not
            return [(when, name) for when, name in archives if not is_checkpoint(name)]

    def _timestamp(self, text: str) -> float:
        """Return the Unix time of a borg time ("2026-11-22T09:07:38.000000", zone-less)."""
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self._zone)
        return moment.timestamp()

    def _info(
        self, newest: str | None, env: dict[str, str], secret: str | None, deadline: float
    ) -> list[tuple[str, float, str]]:
        # The newest archive by name: `info --last 1` counts checkpoint archives (borg 1.2
        # forces consider_checkpoints in info). Without one, the repository alone still
        # gives the cache's size figures.
        target = self._options.repository + (f"::{newest}" if newest is not None else "")
        try:
            result = self._run(["info", target], env, deadline)
        except CheckFailed as exc:
            _log.warning("borg check %s: skipping sizes: %s", self._options.instance, exc)
            return []
        self._warn_if_warning(result, secret)
        if result.returncode != 0 and result.returncode not in _WARNING_CODES:
            _log.warning(
                "borg check %s: skipping sizes: %s",
                self._options.instance,
                self._explain(result, secret),
            )
            return []
        try:
            document = json.loads(result.stdout)
        except ValueError as exc:
            document = f"no JSON ({exc})"
        if not isinstance(document, dict):
            _log.warning(
                "borg check %s: skipping sizes: borg info printed %s",
                self._options.instance,
                document,
            )
            return []
        out: list[tuple[str, float, str]] = []
        archives = document.get("archives") or [{}]
        stats = archives[0].get("stats") or {}
        # deduplicated_size is what only this archive references now: for the newest archive,
        # about what its run added.
        for name, value, unit in (
            ("backup_last_size_bytes", stats.get("original_size"), "bytes"),
            ("backup_last_added_bytes", stats.get("deduplicated_size"), "bytes"),
            ("backup_last_files", stats.get("nfiles"), ""),
            ("backup_last_duration_seconds", archives[0].get("duration"), "seconds"),
            (
                "backup_repository_size_bytes",
                ((document.get("cache") or {}).get("stats") or {}).get("unique_csize"),
                "bytes",
            ),
        ):
            if isinstance(value, int | float):
                out.append((name, float(value), unit))
        return out

    def _messages(self, result: CommandResult, secret: str | None, *levels: str) -> str:
        lines = [
            message
            for level, _, message in _log_lines(result.stderr)
            if not levels or level in levels or not level
        ][:2]
        text = "; ".join(line[:300] for line in lines) or "no message"
        return text.replace(secret, "***") if secret else text

    def _warn_if_warning(self, result: CommandResult, secret: str | None) -> None:
        if result.returncode in _WARNING_CODES:
            _log.warning(
                "borg check %s: borg exited %d (warning): %s",
                self._options.instance,
                result.returncode,
                self._messages(result, secret, "WARNING"),
            )

    def _explain(self, result: CommandResult, secret: str | None) -> str:
        """Say what failed and what to change, from borg's log (never the passphrase)."""
        repo = self._options.repository
        said = self._messages(result, secret, "ERROR", "CRITICAL")
        msgids = {msgid for _, msgid, _ in _log_lines(result.stderr)}
        if "PassphraseWrong" in msgids:
            source = self._options.passphrase_source
            return f"wrong passphrase for repository {repo}: check {source} (borg: {said})"
        for msgid, hint in _HINTS.items():
            if msgid in msgids:
                base_dir = self._base_dir or "~"
                return f"{hint.format(repo=repo, base_dir=base_dir)} (borg: {said})"
        return (
            f"borg {result.argv[1]} failed for repository {repo} (exit {result.returncode}): {said}"
        )


def _archive_name(item: dict[str, object]) -> str:
    """An archive's name from `borg list --json`, which must be a string."""
    name = item["name"]
    if not isinstance(name, str):
        raise TypeError(f"archive name {name!r} is not a string")
    return name
