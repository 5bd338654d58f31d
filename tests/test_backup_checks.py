"""restic and borg checks against real repositories made by the real tools in temporary dirs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from checks.base import CheckFailed, Clock
from checks.borg import BorgCheck, BorgOptions
from checks.registry import AnyCheckOptions, build_check
from checks.restic import ResticCheck, ResticOptions, parse_restic_time
from checks.schema import Measurement
from checks.settings import ConfigError, convert
from tests.helpers import tool
from tests.helpers.files import private_file
from tests.helpers.measurements import names, value

DAY = 86400
PASSWORD = "correct-horse-battery"  # the repositories' real password
WRONG = "not-the-password-xyzzy"

COMMON_NAMES = {
    "backup_last_snapshot_timestamp_seconds",
    "backup_last_snapshot_age_seconds",
    "backup_snapshots",
    "backup_last_size_bytes",
    "backup_last_files",
    "backup_repository_size_bytes",
    "backup_probe_success",
    "backup_probe_duration_seconds",
}
RESTIC_NAMES = COMMON_NAMES | {"backup_repository_locks", "backup_oldest_lock_age_seconds"}
BORG_NAMES = COMMON_NAMES | {"backup_last_added_bytes", "backup_last_duration_seconds"}
FRESHNESS = {"backup_last_snapshot_timestamp_seconds", "backup_last_snapshot_age_seconds"}


def run(*argv: str | Path, env: dict[str, str]) -> str:
    """Run a backup tool as a backup job would, and return its stdout."""
    done = subprocess.run(
        [str(a) for a in argv], check=False, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"{argv[:2]} exited {done.returncode}: {done.stderr}"
    return done.stdout


def make_data(path: Path, size: int = 1000) -> Path:
    path.mkdir(parents=True)
    (path / "file.bin").write_bytes(os.urandom(size))
    (path / "note.txt").write_text("hello\n")
    return path


def secret_file(path: Path, text: str) -> Path:
    return private_file(path, text + "\n")


def refused_for_the_wrong_secret(check: Any, words: str, option: str) -> list[Measurement]:
    """Collect with the WRONG secret: the failure says so and names the option, never a secret,
    and only the probe's measurements remain (returned)."""
    with pytest.raises(CheckFailed) as failed:
        check.collect()
    message = str(failed.value)
    assert words in message
    assert option in message
    assert WRONG not in message
    assert PASSWORD not in message
    out = failed.value.measurements
    assert names(out) == {"backup_probe_success", "backup_probe_duration_seconds"}
    assert value(out, "backup_probe_success") == 0
    return out


def assert_snapshots(out: list[Measurement], count: int, age_days: int | None) -> None:
    """`count` snapshots were seen, the newest `age_days` old a minute after it was made."""
    assert value(out, "backup_snapshots") == count
    assert value(out, "backup_probe_success") == 1
    if age_days is None:
        assert not names(out) & FRESHNESS
    else:
        assert value(out, "backup_last_snapshot_age_seconds") == age_days * DAY + 60


# --- restic -------------------------------------------------------------------------------------


class Restic:
    """A restic repository in a tmp dir, and the restic a backup job would run on it."""

    def __init__(self, binary: str, repo: Path, password_file: Path) -> None:
        self.binary = binary
        self.repo = repo
        self.password_file = password_file
        self.env = {
            **os.environ,
            "RESTIC_REPOSITORY": str(repo),
            "RESTIC_PASSWORD_FILE": str(password_file),
        }

    def __call__(self, *args: str | Path) -> str:
        return run(self.binary, *args, "--no-cache", env=self.env)

    def backup(
        self, path: Path, *, at: int | None = None, host: str, tag: str | None = None
    ) -> None:
        args: list[str | Path] = ["backup", "--quiet", "--host", host, path]
        if tag is not None:
            args += ["--tag", tag]
        if at is not None:
            # restic reads --time in the local zone, as Python's fromtimestamp writes it.
            args += ["--time", datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")]
        self(*args)

    def copy(self, to: Path) -> Restic:
        shutil.copytree(self.repo, to)
        return Restic(self.binary, to, self.password_file)

    def check(self, tmp: Path, clock: Clock = time.time, **options: Any) -> ResticCheck:
        options = {"password_file": str(self.password_file), **options}
        settings = ResticOptions(name="offsite", repository=str(self.repo), **options)
        return ResticCheck(settings, state_dir=tmp / "state", clock=clock)


@pytest.fixture(scope="module")
def empty_restic(tmp_path_factory: pytest.TempPathFactory) -> Restic:
    """An initialised repository to copy: `init` costs ~3 s of key derivation, a copy nothing."""
    binary = tool("restic", "restic")
    base = tmp_path_factory.mktemp("restic")
    restic = Restic(binary, base / "template", secret_file(base / "password", PASSWORD))
    restic("init")
    return restic


class Populated:
    """The shared restic repository, which no test changes, and what was put in it."""

    def __init__(self, restic: Restic, data: Path, other: Path, made_at: int) -> None:
        self.restic = restic
        self.data = data
        self.other = other
        self.made_at = made_at


@pytest.fixture(scope="module")
def restic_repo(empty_restic: Restic, tmp_path_factory: pytest.TempPathFactory) -> Populated:
    base = tmp_path_factory.mktemp("restic-populated")
    restic = empty_restic.copy(base / "repo")
    data, other = make_data(base / "data"), make_data(base / "other", size=5000)
    made_at = int(time.time())
    restic.backup(data, at=made_at - 4 * DAY, host="web01", tag="daily")
    restic.backup(data, at=made_at - 3 * DAY, host="web01", tag="daily")
    restic.backup(other, at=made_at - 5 * DAY, host="db01", tag="weekly")
    restic.backup(data, host="laptop")  # now
    return Populated(restic, data, other, made_at)


def test_restic_three_day_old_snapshot(restic_repo: Populated, tmp_path: Path) -> None:
    out = restic_repo.restic.check(tmp_path, host="web01").collect()
    assert names(out) == RESTIC_NAMES
    assert all(
        m.labels == {"job": "offsite", "tool": "restic", "repo": str(restic_repo.restic.repo)}
        for m in out
    )
    assert value(out, "backup_snapshots") == 2
    assert value(out, "backup_last_snapshot_timestamp_seconds") == restic_repo.made_at - 3 * DAY
    age = value(out, "backup_last_snapshot_age_seconds")
    assert age == pytest.approx(time.time() - restic_repo.made_at + 3 * DAY, abs=120)
    assert value(out, "backup_last_size_bytes") == 1000 + len("hello\n")
    assert value(out, "backup_last_files") >= 2
    assert value(out, "backup_repository_size_bytes") > 6000  # both data sets, deduplicated
    assert value(out, "backup_repository_locks") == 0
    assert value(out, "backup_oldest_lock_age_seconds") == 0
    assert value(out, "backup_probe_success") == 1
    assert 0 < value(out, "backup_probe_duration_seconds") < 60


@pytest.mark.parametrize(
    ("filters", "count", "age_days"),
    [
        pytest.param({"tags": ["daily"]}, 2, 3, id="tag"),
        pytest.param({"tags": ["weekly", "nosuch"]}, 1, 5, id="either of two tags"),
        pytest.param({"paths": ["OTHER"]}, 1, 5, id="path"),
        pytest.param({"host": "laptop", "paths": ["OTHER"]}, 0, None, id="no match: count 0"),
    ],
)
def test_restic_filters(
    restic_repo: Populated,
    tmp_path: Path,
    filters: dict[str, Any],
    count: int,
    age_days: int | None,
) -> None:
    if "paths" in filters:
        filters = {**filters, "paths": [str(restic_repo.other)]}
    check = restic_repo.restic.check(
        tmp_path, clock=lambda: restic_repo.made_at + 60.0, stats=False, locks=False, **filters
    )
    assert_snapshots(check.collect(), count, age_days)


def test_restic_wrong_password_fails_with_probe_zero(
    restic_repo: Populated, tmp_path: Path
) -> None:
    wrong = str(secret_file(tmp_path / "wrong", WRONG))
    check = restic_repo.restic.check(tmp_path, password_file=wrong)
    out = refused_for_the_wrong_secret(check, "wrong password", "password_file")
    assert out[0].labels == {
        "job": "offsite",
        "tool": "restic",
        "repo": str(restic_repo.restic.repo),
    }


def test_restic_missing_repository_fails(empty_restic: Restic, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-repo"
    check = ResticCheck(
        ResticOptions(repository=str(missing), password_file=str(empty_restic.password_file))
    )
    with pytest.raises(CheckFailed, match="does not exist: check repository") as failed:
        check.collect()
    assert value(failed.value.measurements, "backup_probe_success") == 0


def test_restic_missing_binary_fails_with_probe_zero(empty_restic: Restic, tmp_path: Path) -> None:
    check = empty_restic.check(tmp_path, restic=str(tmp_path / "no-restic"))
    with pytest.raises(CheckFailed, match="not found") as failed:
        check.collect()
    assert value(failed.value.measurements, "backup_probe_success") == 0


def test_restic_empty_repository_is_not_a_failure(empty_restic: Restic, tmp_path: Path) -> None:
    restic = empty_restic.copy(tmp_path / "repo")
    out = restic.check(tmp_path, locks=False).collect()
    assert value(out, "backup_snapshots") == 0
    assert value(out, "backup_probe_success") == 1
    assert not names(out) & (FRESHNESS | {"backup_last_size_bytes", "backup_last_files"})
    assert value(out, "backup_repository_size_bytes") == 0


def test_restic_stats_failure_skips_only_the_sizes(
    restic_repo: Populated, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    restic = restic_repo.restic.copy(tmp_path / "repo")
    for pack in (restic.repo / "data").rglob("*"):
        if pack.is_file():  # damaged packs: the snapshot list still reads, the trees do not
            size = pack.stat().st_size
            pack.chmod(0o600)
            pack.write_bytes(os.urandom(size))
    with caplog.at_level(logging.WARNING, logger="checks.restic"):
        out = restic.check(tmp_path, host="web01", locks=False).collect()
    assert value(out, "backup_probe_success") == 1
    assert value(out, "backup_snapshots") == 2
    assert names(out) >= FRESHNESS
    assert not names(out) & {"backup_last_size_bytes", "backup_repository_size_bytes"}
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(skipped) == 2, skipped
    assert all("skipping" in message and "restic stats" in message for message in skipped)


def leave_stale_lock(restic: Restic) -> None:
    """SIGKILL a `restic check` while it holds its exclusive lock, as a crashed job would."""
    locks = restic.repo / "locks"
    for _ in range(3):
        job = subprocess.Popen(
            [restic.binary, "check", "--no-cache"],
            env=restic.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while job.poll() is None and time.monotonic() < deadline:
            if any(locks.iterdir()):
                time.sleep(0.02)  # let restic finish writing the lock file
                job.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
        job.wait()
        if job.returncode == -signal.SIGKILL and any(locks.iterdir()) and blocks(restic):
            return
        for lock in locks.iterdir():  # killed too early or too late: start again
            lock.unlink()
    pytest.fail("could not catch `restic check` holding its lock")


def list_snapshots(restic: Restic) -> subprocess.CompletedProcess[str]:
    """Run `restic snapshots`, a command that stops at an exclusive lock."""
    return subprocess.run(
        [restic.binary, "snapshots", "--no-cache"],
        check=False,
        env=restic.env,
        capture_output=True,
        text=True,
    )


def blocks(restic: Restic) -> bool:
    """Whether the lock left behind is one a locking command stops at (under load, the kill
    can land before restic has written the whole lock file)."""
    probe = list_snapshots(restic)
    return probe.returncode != 0 and "locked exclusively" in probe.stderr


def test_restic_stale_exclusive_lock_is_reported_and_does_not_block(
    empty_restic: Restic, tmp_path: Path
) -> None:
    restic = empty_restic.copy(tmp_path / "repo")
    leave_stale_lock(restic)
    locked = list_snapshots(restic)
    assert locked.returncode != 0, "a locking command should fail on the stale lock"
    assert "locked exclusively" in locked.stderr
    later = time.time() + 300
    out = restic.check(tmp_path, clock=lambda: later, stats=False).collect()
    assert value(out, "backup_probe_success") == 1
    assert value(out, "backup_repository_locks") == 1
    assert 300 <= value(out, "backup_oldest_lock_age_seconds") < 300 + 60


def test_restic_from_config_with_password_command_sees_the_fresh_snapshot(
    restic_repo: Populated, tmp_path: Path
) -> None:
    options = convert(
        {
            "type": "restic",
            "name": "nightly",
            "repository": str(restic_repo.restic.repo),
            "password_command": f"cat {restic_repo.restic.password_file}",
            "job": "db-nightly",
            "stats": False,
            "locks": False,
        },
        AnyCheckOptions,
    )
    assert isinstance(options, ResticOptions)
    check = build_check(options, state_dir=tmp_path / "state")
    out = check.collect()
    assert value(out, "backup_snapshots") == 4
    assert 0 <= value(out, "backup_last_snapshot_age_seconds") < 120  # laptop's, just made
    assert names(out) == FRESHNESS | {
        "backup_snapshots",
        "backup_probe_success",
        "backup_probe_duration_seconds",
    }
    assert out[0].labels["job"] == "db-nightly"
    assert (tmp_path / "state" / "cache").is_dir()  # its own cache, not ~/.cache/restic


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-11-22T09:06:12.170181247Z", 1795338372.170181, id="ns, Z"),
        pytest.param("2026-11-22T10:06:12.170181247+01:00", 1795338372.170181, id="ns, +01:00"),
        pytest.param("2026-11-22T04:06:12-05:00", 1795338372.0, id="no fraction, -05:00"),
        pytest.param("2026-11-22T09:06:12.5Z", 1795338372.5, id="short fraction"),
    ],
)
def test_restic_time_parsing(text: str, expected: float) -> None:
    assert parse_restic_time(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("value", [None, 1795338372, ["2026-11-22T09:06:12Z"], "yesterday"])
def test_a_snapshot_time_that_is_not_rfc_3339_is_a_value_error(value: object) -> None:
    # A JSON null or number in `time` was an AttributeError, which escaped the check.
    with pytest.raises(ValueError, match="not an RFC 3339 time"):
        parse_restic_time(value)


# --- borg ---------------------------------------------------------------------------------------


class Borg:
    """A borg repository in a tmp dir, and the borg a backup job would run on it."""

    def __init__(self, binary: str, repo: Path, passphrase_file: Path, base: Path) -> None:
        self.binary = binary
        self.repo = repo
        self.passphrase_file = passphrase_file
        # The job's own BORG_BASE_DIR, so neither the job nor the check touches ~/.config/borg.
        self.env = {**os.environ, "BORG_PASSPHRASE": PASSWORD, "BORG_BASE_DIR": str(base)}

    def __call__(self, *args: str | Path) -> str:
        return run(self.binary, *args, env=self.env)

    def create(self, name: str, path: Path, at: int | None = None) -> None:
        # borg reads --timestamp as UTC.
        stamp = (
            []
            if at is None
            else ["--timestamp", datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
        )
        self("create", *stamp, f"{self.repo}::{name}", path)

    def check(self, tmp: Path, clock: Clock = time.time, **options: Any) -> BorgCheck:
        options = {"passphrase_file": str(self.passphrase_file), **options}
        settings = BorgOptions(name="archive", repository=str(self.repo), **options)
        return BorgCheck(settings, state_dir=tmp / "state", clock=clock)


class BorgRepo:
    def __init__(self, borg: Borg, made_at: int) -> None:
        self.borg = borg
        self.made_at = made_at


@pytest.fixture(scope="module")
def borg_repo(tmp_path_factory: pytest.TempPathFactory) -> BorgRepo:
    binary = tool("borg", "borgbackup")
    base = tmp_path_factory.mktemp("borg")
    borg = Borg(binary, base / "repo", secret_file(base / "passphrase", PASSWORD), base / "job")
    borg("init", "-e", "repokey", borg.repo)
    data, big = make_data(base / "data"), make_data(base / "big", size=200_000)
    made_at = int(time.time())
    borg.create("web01-old", data, made_at - 4 * DAY)
    borg.create("web01-new", data, made_at - 3 * DAY)
    borg.create("db01-weekly", data, made_at - 5 * DAY)
    # What an interrupted create leaves: the newest archive, but only a checkpoint.
    borg.create("web01-partial", big)
    borg("rename", f"{borg.repo}::web01-partial", "web01-partial.checkpoint")
    assert "web01-partial.checkpoint" in borg(
        "list", "--short", "--consider-checkpoints", borg.repo
    )
    return BorgRepo(borg, made_at)


def test_borg_three_day_old_archive_and_sizes(borg_repo: BorgRepo, tmp_path: Path) -> None:
    out = borg_repo.borg.check(tmp_path).collect()
    assert names(out) == BORG_NAMES
    assert all(
        m.labels == {"job": "archive", "tool": "borg", "repo": str(borg_repo.borg.repo)}
        for m in out
    )
    assert value(out, "backup_snapshots") == 3  # the checkpoint is not counted
    assert value(out, "backup_last_snapshot_timestamp_seconds") == borg_repo.made_at - 3 * DAY
    age = value(out, "backup_last_snapshot_age_seconds")
    assert age == pytest.approx(time.time() - borg_repo.made_at + 3 * DAY, abs=120)
    # The sizes are web01-new's, not the newer checkpoint's (200 kB).
    assert value(out, "backup_last_size_bytes") == 1000 + len("hello\n")
    assert value(out, "backup_last_files") == 2
    assert value(out, "backup_last_added_bytes") >= 0
    assert 0 <= value(out, "backup_last_duration_seconds") < 60
    assert value(out, "backup_repository_size_bytes") > 200_000  # the checkpoint's data is there
    assert value(out, "backup_probe_success") == 1
    assert (tmp_path / "state" / "base").is_dir()  # its own BORG_BASE_DIR


@pytest.mark.parametrize(
    ("prefix", "count", "age_days"),
    [
        pytest.param("db01-", 1, 5, id="db01"),
        pytest.param("web01-", 2, 3, id="web01, checkpoint left out"),
        pytest.param("nosuch-", 0, None, id="no match: count 0"),
    ],
)
def test_borg_prefix(
    borg_repo: BorgRepo, tmp_path: Path, prefix: str, count: int, age_days: int | None
) -> None:
    check = borg_repo.borg.check(
        tmp_path, clock=lambda: borg_repo.made_at + 60.0, prefix=prefix, info=False
    )
    assert_snapshots(check.collect(), count, age_days)


def test_borg_no_archives_still_reports_repository_size(
    borg_repo: BorgRepo, tmp_path: Path
) -> None:
    out = borg_repo.borg.check(tmp_path, prefix="nosuch-").collect()
    assert value(out, "backup_snapshots") == 0
    assert value(out, "backup_repository_size_bytes") > 0
    assert "backup_last_size_bytes" not in names(out)


def test_borg_wrong_passphrase_fails_with_probe_zero(borg_repo: BorgRepo, tmp_path: Path) -> None:
    wrong = str(secret_file(tmp_path / "wrong", WRONG))
    check = borg_repo.borg.check(tmp_path, passphrase_file=wrong)
    out = refused_for_the_wrong_secret(check, "wrong passphrase", "passphrase_file")
    assert out[0].labels == {"job": "archive", "tool": "borg", "repo": str(borg_repo.borg.repo)}


@pytest.mark.parametrize(
    ("options", "match"),
    [
        pytest.param({"repository": "MISSING"}, "does not exist: check repository", id="no repo"),
        pytest.param(
            {"passphrase_file": "MISSING"}, "cannot read passphrase_file", id="no passphrase file"
        ),
        pytest.param(
            {"passphrase_file": None, "passcommand": "false"},
            "check passcommand",
            id="passcommand fails",
        ),
    ],
)
def test_borg_cannot_read_repository(
    borg_repo: BorgRepo, tmp_path: Path, options: dict[str, Any], match: str
) -> None:
    options = {k: str(tmp_path / "missing") if v == "MISSING" else v for k, v in options.items()}
    repository = options.pop("repository", str(borg_repo.borg.repo))
    options.setdefault("passphrase_file", str(borg_repo.borg.passphrase_file))
    check = BorgCheck(BorgOptions(repository=repository, **options), state_dir=tmp_path / "s")
    with pytest.raises(CheckFailed, match=match) as failed:
        check.collect()
    assert value(failed.value.measurements, "backup_probe_success") == 0


def test_borg_from_config_with_passcommand(borg_repo: BorgRepo, tmp_path: Path) -> None:
    options = convert(
        {
            "type": "borg",
            "repository": str(borg_repo.borg.repo),
            "passcommand": f"cat {borg_repo.borg.passphrase_file}",
            "job": "archive-nightly",
            "info": False,
        },
        AnyCheckOptions,
    )
    assert isinstance(options, BorgOptions)
    out = build_check(options, state_dir=tmp_path / "state").collect()
    assert value(out, "backup_snapshots") == 3
    assert out[0].labels == {
        "job": "archive-nightly",
        "tool": "borg",
        "repo": str(borg_repo.borg.repo),
    }
    assert (tmp_path / "state" / "base").is_dir()  # its own BORG_BASE_DIR, not ~/.config/borg


def zone_wrapper(tmp_path: Path, borg: str, zone: str) -> str:
    """A `borg` that runs in another zone whatever TZ it is given, as `ssh host borg` would."""
    wrapper = tmp_path / "borg-elsewhere"
    wrapper.write_text(f'#!/bin/sh\nTZ={zone} exec {borg} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def test_borg_timezone_is_the_zone_borg_prints_in(borg_repo: BorgRepo, tmp_path: Path) -> None:
    if not Path("/usr/share/zoneinfo/Asia/Tokyo").exists():
        pytest.skip("no zone Asia/Tokyo (Debian package: tzdata)")
    truth = borg_repo.made_at - 3 * DAY

    def newest(**options: Any) -> float:
        out = borg_repo.borg.check(tmp_path, prefix="web01-", info=False, **options).collect()
        return value(out, "backup_last_snapshot_timestamp_seconds")

    # borg 1.x prints archive times in its own local zone; the check sets that zone (TZ).
    assert newest(timezone="Asia/Tokyo") == truth
    # A wrapper that runs borg in Tokyo: read as UTC, the time is off by the zone's offset.
    tokyo = zone_wrapper(tmp_path, borg_repo.borg.binary, "Asia/Tokyo")
    assert newest(borg=tokyo) == truth + 9 * 3600
    assert newest(borg=tokyo, timezone="Asia/Tokyo") == truth


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        pytest.param(
            {"type": "restic", "repository": "/r"}, "password_file", id="restic: no password source"
        ),
        pytest.param(
            {
                "type": "restic",
                "repository": "/r",
                "password_file": "/p",
                "password_command": "pass show r",
            },
            "password_command",
            id="restic: both password sources",
        ),
        pytest.param(
            {"type": "restic", "repository": "/r", "password": "hunter2"},
            "password",
            id="restic: a password in the config",
        ),
        pytest.param(
            {"type": "restic", "password_file": "/p"}, "repository", id="restic: no repository"
        ),
        pytest.param(
            {"type": "borg", "repository": "/r"}, "passcommand", id="borg: no passphrase source"
        ),
        pytest.param(
            {"type": "borg", "repository": "/r", "passcommand": "cat /p", "passphrase_file": "/p"},
            "passphrase_file",
            id="borg: both passphrase sources",
        ),
        pytest.param(
            {
                "type": "borg",
                "repository": "/r",
                "passcommand": "cat /p",
                "timezone": "Mars/Olympus",
            },
            "timezone",
            id="borg: unknown zone",
        ),
    ],
)
def test_bad_options_name_their_key(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as error:
        convert({"checks": [raw]}, dict[str, list[AnyCheckOptions]])
    assert error.value.path.endswith(f" -> {path}"), error.value.path
    assert "hunter2" not in str(error.value)


@pytest.mark.parametrize(
    ("make", "interval", "timeout"),
    [
        pytest.param(
            lambda: ResticOptions(repository="/r", password_file="/p"), 900, 600, id="restic"
        ),
        pytest.param(
            lambda: BorgOptions(repository="/r", passcommand="cat /p"), 900, 600, id="borg"
        ),
    ],
)
def test_backup_probes_are_slow_by_default(
    make: Callable[[], Any], interval: float, timeout: float
) -> None:
    options = make()
    assert (options.default_interval, options.default_timeout) == (interval, timeout)


# --- one cache per repository -------------------------------------------------------------------


def run_together(checks: list[Any]) -> list[list[Measurement]]:
    """Collect the checks at the same time, as an agent's workers would; bounded in time."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(checks)) as pool:
        futures = [pool.submit(check.collect) for check in checks]
        return [future.result(timeout=120) for future in futures]


def run_sharing(
    tmp_path: Path, check: Callable[..., Any], options: Callable[..., Any], scope: str, kind: str
) -> Path:
    """Run three checks of one repository at once; return the one cache they shared."""
    root = tmp_path / "repos"
    scopes = {"host": ("web01", "db01", "laptop"), "prefix": ("web01", "db01", "web01-new")}
    checks = [
        check(
            options(name=f"by-{value}", **{scope: value}),
            state_dir=tmp_path / "checks" / value,
            cache_root=root,
        )
        for value in scopes[scope]
    ]
    results = run_together(checks)  # at once: they take turns at the cache (`borg info` locks it)
    assert [value(out, "backup_snapshots") for out in results] == [2, 1, 1]
    [shared] = list(root.iterdir())
    assert shared.name.startswith(f"{kind}-")
    assert not (tmp_path / "checks").exists(), "no check kept a cache of its own"
    return shared


@pytest.mark.parametrize("kind", ["restic", "borg"])
def test_checks_of_one_repository_share_one_cache(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if kind == "restic":
        restic = request.getfixturevalue("restic_repo").restic
        options = partial(
            ResticOptions, repository=str(restic.repo), password_file=str(restic.password_file)
        )
        shared = run_sharing(tmp_path, ResticCheck, options, "host", kind)
        # restic keys its cache by repository ID inside the directory: one cache was built.
        repository_id = json.loads(restic("cat", "config"))["id"]
        assert [p.name for p in (shared / "cache").iterdir() if p.is_dir()] == [repository_id]
    else:
        borg = request.getfixturevalue("borg_repo").borg
        options = partial(
            BorgOptions, repository=str(borg.repo), passphrase_file=str(borg.passphrase_file)
        )
        shared = run_sharing(tmp_path, BorgCheck, options, "prefix", kind)
        caches = [p for p in (shared / "base" / ".cache" / "borg").iterdir() if p.is_dir()]
        assert len(caches) == 1  # one cache, keyed by the repository ID


def test_a_check_waits_for_its_turn_only_until_its_deadline(
    restic_repo: Populated, tmp_path: Path
) -> None:
    import fcntl

    from checks.backup import repository_dir

    restic = restic_repo.restic
    shared = repository_dir(tmp_path, "restic", str(restic.repo))
    shared.mkdir(parents=True)
    check = ResticCheck(
        ResticOptions(repository=str(restic.repo), password_file=str(restic.password_file)),
        cache_root=tmp_path,
        timeout=1.0,
    )
    with open(shared / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another check of this repository is running
        started = time.monotonic()
        with pytest.raises(CheckFailed, match="another check of repository") as failed:
            check.collect()
        assert time.monotonic() - started < 2
    assert value(failed.value.measurements, "backup_probe_success") == 0
    assert value(check.collect(), "backup_snapshots") == 4  # its turn, once the lock is free
