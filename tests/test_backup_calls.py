"""Issue 3's acceptance: real repositories, a real agent and a real collector, real calls.

A restic or borg repository whose newest snapshot is 3 days old makes the collector open a
CRITICAL call owned by computer operations, with the age in its text; a fresh backup resolves
it. A failing WAL archive does the same.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.auth import add_token
from runwatch.shipped import shipped_file
from tests.helpers import RUNWATCH, tool
from tests.helpers.files import private_file
from tests.procs import Processes, get_json, read_url, wait_for

pytestmark = pytest.mark.slow

SHIPPED_RULES = shipped_file("rules")


def days_ago(days: float) -> tuple[str, float]:
    """A local time `days` ago as restic's --time wants it, and the same moment in seconds."""
    when = round(time.time() - days * 86400)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)), when


def start_pair(
    tmp_path: Path,
    processes: Processes,
    checks: list[dict[str, Any]],
    rules_file: Path | None = None,
) -> str:
    """Start a collector on the shipped groups and backup rules, and an agent with `checks`."""
    shipped = yaml.safe_load(shipped_file("collector.yaml").read_text())
    config = {
        "listen": "127.0.0.1:0",
        "data_dir": str(tmp_path / "data"),
        "sinks": shipped["sinks"],
        "groups": shipped["groups"],
        "evaluation_interval": "0.5s",
        "rule_files": [str(rules_file or SHIPPED_RULES / "backup.yaml")],
    }
    (tmp_path / "collector.yaml").write_text(yaml.safe_dump(config))
    token = add_token(tmp_path / "data" / "agents.tokens", "backup-host")
    (tmp_path / "agent.token").write_text(token)
    collector = processes.start(
        RUNWATCH, "collector", "--config", str(tmp_path / "collector.yaml"), stderr=subprocess.PIPE
    )
    url = read_url(collector)
    (tmp_path / "agent.yaml").write_text(
        yaml.safe_dump(
            {
                "collector": {"url": url, "token_file": "agent.token"},
                "host": "backup-host",
                "interval": "1s",
                "state_dir": "agent-state",
                "checks": checks,
            }
        )
    )
    processes.start(RUNWATCH, "agent", "--config", str(tmp_path / "agent.yaml"))
    return url


def open_calls(url: str, rule: str) -> list[dict[str, Any]]:
    return [c for c in get_json(f"{url}/api/v1/calls?status=open") if c["rule"] == rule]


PASSPHRASE = "correct horse battery staple"


def restic_repo(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    tool("restic", "restic")
    repo = tmp_path / "restic-repo"
    password = private_file(tmp_path / "restic.pass", f"{PASSPHRASE}\n")
    env = {
        **os.environ,
        "RESTIC_REPOSITORY": str(repo),
        "RESTIC_PASSWORD_FILE": str(password),
        "RESTIC_CACHE_DIR": str(tmp_path / "restic-cache"),
    }
    subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
    return repo, password, env


def borg_repo(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    tool("borg", "borgbackup")
    repo = tmp_path / "borg-repo"
    passphrase = private_file(tmp_path / "borg.pass", PASSPHRASE)
    env = {
        **os.environ,
        "BORG_PASSPHRASE": PASSPHRASE,
        "BORG_BASE_DIR": str(tmp_path / "borg-base"),
    }
    subprocess.run(
        ["borg", "init", "-e", "repokey", str(repo)], env=env, check=True, capture_output=True
    )
    return repo, passphrase, env


def test_old_restic_and_borg_backups_open_critical_calls_and_fresh_ones_resolve_them(
    tmp_path: Path, processes: Processes
) -> None:
    data = tmp_path / "data-to-save"
    data.mkdir()
    (data / "file.txt").write_text("precious\n")
    r_repo, r_pass, r_env = restic_repo(tmp_path)
    subprocess.run(
        ["restic", "backup", "--time", days_ago(3)[0], str(data)],
        env=r_env,
        check=True,
        capture_output=True,
    )
    b_repo, b_pass, b_env = borg_repo(tmp_path)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 3 * 86400))
    subprocess.run(
        ["borg", "create", "--timestamp", stamp, f"{b_repo}::web-old", str(data)],
        env=b_env,
        check=True,
        capture_output=True,
    )

    url = start_pair(
        tmp_path,
        processes,
        [
            {
                "type": "restic",
                "name": "restic-nightly",
                "job": "nightly",
                "interval": "2s",
                "timeout": "60s",
                "repository": str(r_repo),
                "password_file": str(r_pass),
            },
            {
                "type": "borg",
                "name": "borg-nightly",
                "job": "borg-nightly",
                "interval": "2s",
                "timeout": "60s",
                "repository": str(b_repo),
                "passphrase_file": str(b_pass),
            },
        ],
    )

    def both_open() -> list[dict[str, Any]] | None:
        found = open_calls(url, "backup_too_old")
        return found if len(found) == 2 else None

    calls = wait_for("CRITICAL calls for both old backups", both_open, timeout=60)
    for call in calls:
        assert call["severity"] == "CRITICAL"
        assert call["group"] == "computer-operations"
        assert call["assign"] == "Computer Operations"
        assert "3 d" in call["summary"], call["summary"]
        assert "Value:       3 d" in call["description"]
    assert {c["labels"]["tool"] for c in calls} == {"restic", "borg"}

    subprocess.run(["restic", "backup", str(data)], env=r_env, check=True, capture_output=True)
    subprocess.run(
        ["borg", "create", f"{b_repo}::web-new", str(data)],
        env=b_env,
        check=True,
        capture_output=True,
    )
    wait_for("both calls to resolve", lambda: not open_calls(url, "backup_too_old"), timeout=60)
    resolved = [c for c in get_json(f"{url}/api/v1/calls") if c["rule"] == "backup_too_old"]
    assert len(resolved) == 2
    assert all(c["status"] == "resolved" for c in resolved)


def test_unreadable_repository_is_an_unknown_call(tmp_path: Path, processes: Processes) -> None:
    r_repo, _, _ = restic_repo(tmp_path)
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the password\n")
    url = start_pair(
        tmp_path,
        processes,
        [
            {
                "type": "restic",
                "name": "restic-nightly",
                "interval": "2s",
                "timeout": "60s",
                "repository": str(r_repo),
                "password_file": str(wrong),
            },
        ],
    )
    (call,) = wait_for(
        "an UNKNOWN call", lambda: open_calls(url, "backup_probe_failed"), timeout=30
    )
    assert call["severity"] == "UNKNOWN"
    assert call["group"] == "computer-operations"
    assert "password" in call["summary"]
    assert "not the password" not in call["description"]


def _cluster(tmp_path: Path) -> tuple[Path, Path, Path, Any]:
    initdb = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if initdb is None:
        pytest.skip("initdb not installed (Debian package: postgresql)")
    bindir = initdb.parent
    # Not under tmp_path: pytest's base directory is root-only, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="runwatch-pg-"))
    pgdata, archive, fail = base / "data", base / "archive", base / "fail"
    archive.mkdir()
    as_postgres = (
        ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        if os.geteuid() == 0
        else []
    )
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", str(base)], check=True)
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write(
            f"listen_addresses = ''\nunix_socket_directories = '{base}'\n"
            "port = 5499\narchive_mode = on\nwal_level = replica\n"
            f"archive_command = 'test ! -f {fail} && cp %p {archive}/%f'\n"
        )
    subprocess.run(
        [
            *as_postgres,
            str(bindir / "pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-l",
            str(base / "log"),
            "start",
        ],
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            [*as_postgres, str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)

    return base, fail, bindir, stop


def test_failing_wal_archive_opens_a_critical_call_and_recovery_resolves_it(
    tmp_path: Path, processes: Processes
) -> None:
    tool("psql", "postgresql-client")
    base, fail, _, stop = _cluster(tmp_path)
    try:
        psql = [
            "psql",
            "-X",
            "-q",
            "-h",
            str(base),
            "-p",
            "5499",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
        ]

        def switch_wal() -> None:
            subprocess.run(
                [
                    *psql,
                    "CREATE TABLE IF NOT EXISTS t (x int); "
                    "INSERT INTO t VALUES (1); SELECT pg_switch_wal();",
                ],
                check=True,
                capture_output=True,
            )

        # The shipped rule waits 10 minutes; the same rule with a 1 s `for` keeps the test short.
        rules = yaml.safe_load((SHIPPED_RULES / "backup.yaml").read_text())
        for rule in rules["rules"]:
            if rule["name"] == "wal_archiving_failing":
                rule["for"] = "1s"
        rules_file = tmp_path / "rules.yaml"
        rules_file.write_text(yaml.safe_dump(rules))
        url = start_pair(
            tmp_path,
            processes,
            [
                {
                    "type": "pg_archiver",
                    "interval": "1s",
                    "dsn": f"host={base} port=5499 user=postgres dbname=postgres",
                },
            ],
            rules_file,
        )
        switch_wal()
        fail.touch()
        switch_wal()
        (call,) = wait_for(
            "a CRITICAL WAL archiving call",
            lambda: open_calls(url, "wal_archiving_failing"),
            timeout=60,
        )
        assert call["severity"] == "CRITICAL"
        assert call["group"] == "computer-operations"
        fail.unlink()
        switch_wal()
        wait_for(
            "the call to resolve", lambda: not open_calls(url, "wal_archiving_failing"), timeout=90
        )
    finally:
        stop()
