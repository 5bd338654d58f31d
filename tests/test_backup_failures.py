"""A backup that could not read a file: restic exits 3 (a snapshot is still made), borg exits 1.

A snapshot-age check alone would say OK; the job's recorded exit code is what catches it. The
jobs run as an unprivileged user, since root can read any file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from checks.statusfile import StatusfileCheck, StatusfileOptions
from tests.helpers import RUNWATCH, tool
from tests.helpers.tools import job_run_args

pytestmark = pytest.mark.slow

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def workdir() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the job as another user (root reads every file)")
    # Outside pytest's root-only tmp tree, so that `nobody` can reach it.
    base = Path(tempfile.mkdtemp(prefix="runwatch-unreadable-"))
    base.chmod(0o777)
    data = base / "data"
    data.mkdir()
    (data / "readable.txt").write_text("fine\n")
    secret = data / "unreadable.txt"
    secret.write_text("secret\n")
    secret.chmod(0o000)
    shutil.chown(data, "nobody", "nogroup")
    yield base
    shutil.rmtree(base, ignore_errors=True)


def job(base: Path, tool_name: str, argv: list[str], env: dict[str, str]) -> dict[str, float]:
    status_file = base / "status" / f"{tool_name}.json"
    # The wrapper runs as root; the job itself as `nobody`, which cannot read the file.
    result = subprocess.run(
        [RUNWATCH, *job_run_args(status_file, tool_name, *NOBODY, *argv)],
        env={**os.environ, **env, "HOME": str(base)},
        capture_output=True,
        text=True,
        check=False,
    )
    check = StatusfileCheck(StatusfileOptions(path=str(status_file)))
    values = {m.name: m.value for m in check.collect()}
    values["returncode"] = result.returncode
    return values


def test_restic_unreadable_file_is_exit_3_and_a_warning(workdir: Path) -> None:
    tool("restic", "restic")
    (workdir / "pass").write_text("pw\n")
    (workdir / "pass").chmod(0o644)
    env = {
        "RESTIC_REPOSITORY": str(workdir / "repo"),
        "RESTIC_PASSWORD_FILE": str(workdir / "pass"),
        "RESTIC_CACHE_DIR": str(workdir / "cache"),
    }
    subprocess.run(
        [*NOBODY, "restic", "init"], env={**os.environ, **env}, check=True, capture_output=True
    )
    values = job(workdir, "restic", ["restic", "backup", str(workdir / "data")], env)
    assert values["returncode"] == 3
    assert values["backup_last_exit_code"] == 3
    assert values["backup_last_status"] == 1, "a warning: files were skipped"
    assert "backup_last_success_timestamp_seconds" not in values
    snapshots = subprocess.run(
        [*NOBODY, "restic", "snapshots", "--json"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    assert snapshots.stdout.strip() not in (b"", b"[]"), "restic still made a snapshot"


def test_borg_unreadable_file_is_exit_1_and_a_warning(workdir: Path) -> None:
    tool("borg", "borgbackup")
    env = {"BORG_PASSPHRASE": "pw", "BORG_BASE_DIR": str(workdir / "borg-base")}
    subprocess.run(
        [*NOBODY, "borg", "init", "-e", "repokey", str(workdir / "repo")],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    values = job(
        workdir, "borg", ["borg", "create", f"{workdir / 'repo'}::one", str(workdir / "data")], env
    )
    assert values["returncode"] == 1
    assert values["backup_last_status"] == 1
