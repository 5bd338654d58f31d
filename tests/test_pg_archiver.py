"""PostgreSQL WAL archiving check against a throw-away cluster whose archive_command we break."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from checks.base import CheckFailed
from checks.pgarchive import (
    ArchiverStats,
    PgArchiverCheck,
    PgArchiverOptions,
    cluster_label,
    is_failing,
    parse_archiver_row,
)
from checks.schema import Measurement
from tests.helpers import tool

DECLARED = {
    "pg_archiver_probe_success",
    "pg_archiver_archive_mode_enabled",
    "pg_archiver_archived",
    "pg_archiver_failed",
    "pg_archiver_last_archived_timestamp_seconds",
    "pg_archiver_last_failed_timestamp_seconds",
    "pg_archiver_failing",
    "pg_archiver_failing_for_seconds",
    "pg_archiver_ready_files",
}


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server program (Debian keeps them off PATH), or skip."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        pytest.skip(f"{name} not installed (Debian package: postgresql)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    """A running throw-away cluster, reachable only through its socket directory."""

    root: Path
    port: int
    psql: str

    @property
    def dsn(self) -> str:
        return f"host={self.root} port={self.port} user=postgres dbname=postgres"

    @property
    def fail_file(self) -> Path:
        return self.root / "fail"

    def sql(self, query: str, user: str = "postgres") -> str:
        done = subprocess.run(
            [
                self.psql,
                "-X",
                "-A",
                "-t",
                "-h",
                str(self.root),
                "-p",
                str(self.port),
                "-U",
                user,
                "-d",
                "postgres",
                "-c",
                query,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def switch_wal(self) -> None:
        """Write something and close the WAL segment, which wakes the archiver."""
        self.sql("INSERT INTO filler VALUES (1); SELECT pg_switch_wal()")


def as_postgres(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    psql = tool("psql", "postgresql-client")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root needs runuser (Debian package: util-linux) for initdb")
    # Not pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="runwatch-pg-"))
    if os.geteuid() == 0:
        try:
            shutil.chown(root, "postgres", "postgres")
        except LookupError:
            shutil.rmtree(root)
            pytest.skip("running as root needs the postgres user (Debian package: postgresql)")
    data = root / "pg"

    def run(*argv: str) -> None:
        subprocess.run(as_postgres(list(argv)), check=True, capture_output=True)

    started = False
    try:
        run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust")
        run("mkdir", str(root / "archive"))
        port = free_port()
        with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                f"listen_addresses = ''\n"
                f"unix_socket_directories = '{root}'\n"
                f"port = {port}\n"
                "wal_level = replica\n"
                "archive_mode = on\n"
                # Succeed unless the fail file exists (`test -f … ||` would skip the copy and
                # still report success).
                f"archive_command = 'test ! -f {root}/fail && cp %p {root}/archive/%f'\n"
            )
        run(pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "start")
        started = True
        cluster = Cluster(root, port, psql)
        cluster.sql("CREATE TABLE filler (x int)")
        yield cluster
    finally:
        if started:
            subprocess.run(
                as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                check=False,
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)


def values(out: list[Measurement]) -> dict[str, float]:
    assert len({m.name for m in out}) == len(out), out
    assert all(m.labels == out[0].labels for m in out)
    return {m.name: m.value for m in out}


def wait_until(
    check: PgArchiverCheck, cluster: Cluster, done: Callable[[dict[str, float]], bool]
) -> dict[str, float]:
    """Collect, closing a WAL segment each time, until `done` holds (at most 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        now = values(check.collect())
        if done(now):
            return now
        assert time.monotonic() < deadline, f"archiver never got there: {now}"
        cluster.switch_wal()
        time.sleep(0.2)


def settled(values: dict[str, float]) -> bool:
    """Whether the archiver is idle and well: nothing failing, nothing waiting.

    Tests start from here, so that no archive attempt from before is still under way.
    """
    return values["pg_archiver_failing"] == 0 and values["pg_archiver_ready_files"] == 0


def test_healthy_failing_recovered(cluster: Cluster) -> None:
    check = PgArchiverCheck(PgArchiverOptions(dsn=cluster.dsn, cluster="test"))
    seen: set[str] = set()

    healthy = wait_until(check, cluster, lambda v: v["pg_archiver_archived"] >= 1)
    assert healthy["pg_archiver_probe_success"] == 1
    assert healthy["pg_archiver_archive_mode_enabled"] == 1
    assert healthy["pg_archiver_failing"] == 0
    assert healthy["pg_archiver_failing_for_seconds"] == 0
    assert healthy["pg_archiver_last_archived_timestamp_seconds"] == pytest.approx(
        time.time(), abs=60
    )
    seen |= set(healthy)

    cluster.fail_file.touch()
    try:
        failing = wait_until(
            check,
            cluster,
            lambda v: v["pg_archiver_failing"] == 1 and v["pg_archiver_ready_files"] >= 1,
        )
        assert failing["pg_archiver_failed"] >= 1
        assert (
            failing["pg_archiver_last_failed_timestamp_seconds"]
            > failing["pg_archiver_last_archived_timestamp_seconds"]
        )
        assert failing["pg_archiver_failing_for_seconds"] > 0
        ready_on_disk = list((cluster.root / "pg" / "pg_wal" / "archive_status").glob("*.ready"))
        assert failing["pg_archiver_ready_files"] >= 1
        assert ready_on_disk, "the server has no .ready file, yet the check counted some"
        seen |= set(failing)
    finally:
        cluster.fail_file.unlink()

    recovered = wait_until(check, cluster, settled)
    # failed_count is cumulative: recovery leaves it standing, and only `failing` clears.
    assert recovered["pg_archiver_failed"] >= failing["pg_archiver_failed"] > 0
    assert recovered["pg_archiver_archived"] > failing["pg_archiver_archived"]
    assert recovered["pg_archiver_failing_for_seconds"] == 0
    seen |= set(recovered)
    assert seen == DECLARED


def test_failing_for_counts_from_the_last_success(cluster: Cluster) -> None:
    now = time.time() + 120  # two minutes on, without waiting for them
    check = PgArchiverCheck(PgArchiverOptions(dsn=cluster.dsn), clock=lambda: now)
    wait_until(check, cluster, settled)
    cluster.fail_file.touch()
    try:
        failing = wait_until(check, cluster, lambda v: v["pg_archiver_failing"] == 1)
    finally:
        cluster.fail_file.unlink()
    last_ok = failing["pg_archiver_last_archived_timestamp_seconds"]
    assert failing["pg_archiver_failing_for_seconds"] == pytest.approx(now - last_ok)
    wait_until(check, cluster, settled)


def test_failing_since_a_stats_reset_counts_from_the_reset(cluster: Cluster) -> None:
    now = time.time() + 60
    check = PgArchiverCheck(PgArchiverOptions(dsn=cluster.dsn), clock=lambda: now)
    wait_until(check, cluster, settled)
    cluster.fail_file.touch()
    try:
        cluster.sql("SELECT pg_stat_reset_shared('archiver')")
        failing = wait_until(check, cluster, lambda v: v["pg_archiver_failed"] >= 1)
        reset = float(cluster.sql("SELECT extract(epoch FROM stats_reset) FROM pg_stat_archiver"))
    finally:
        cluster.fail_file.unlink()
    assert "pg_archiver_last_archived_timestamp_seconds" not in failing
    assert failing["pg_archiver_failing"] == 1
    assert failing["pg_archiver_failing_for_seconds"] == pytest.approx(now - reset)
    wait_until(check, cluster, settled)


def test_label_defaults_to_socket_dir_and_port(cluster: Cluster) -> None:
    out = PgArchiverCheck(PgArchiverOptions(dsn=cluster.dsn)).collect()
    assert {m.labels["cluster"] for m in out} == {f"{cluster.root}:{cluster.port}"}
    assert {m.check for m in out} == {"pg_archiver"}


def test_role_without_pg_monitor_loses_only_ready_files(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    cluster.sql("DROP ROLE IF EXISTS watcher; CREATE ROLE watcher LOGIN")
    dsn = f"host={cluster.root} port={cluster.port} user=watcher dbname=postgres"
    check = PgArchiverCheck(PgArchiverOptions(dsn=dsn))
    with caplog.at_level(logging.WARNING, logger="checks.pgarchive"):
        out = values(check.collect())
    assert "pg_archiver_ready_files" not in out
    assert out["pg_archiver_probe_success"] == 1
    assert "pg_archiver_archived" in out
    assert "pg_monitor" in caplog.text
    assert "permission denied" in caplog.text

    cluster.sql("GRANT pg_monitor TO watcher")
    assert "pg_archiver_ready_files" in values(check.collect())


def test_unreachable_server_fails_with_probe_success_zero(tmp_path: Path) -> None:
    tool("psql", "postgresql-client")
    options = PgArchiverOptions(dsn=f"host={tmp_path} port=5 dbname=postgres", cluster="gone")
    started = time.monotonic()
    with pytest.raises(CheckFailed, match="dsn") as failure:
        PgArchiverCheck(options).collect()
    assert time.monotonic() - started < 5
    [probe] = failure.value.measurements
    assert (probe.name, probe.value, probe.labels) == (
        "pg_archiver_probe_success",
        0.0,
        {"cluster": "gone"},
    )


def test_password_file_reaches_psql_as_pgpassfile(tmp_path: Path) -> None:
    # A script stands in for psql here: the point is what the check hands to it.
    fake = tmp_path / "psql"
    fake.write_text('#!/bin/sh\necho "$PGPASSFILE $PGCONNECT_TIMEOUT" >&2\nexit 2\n')
    fake.chmod(0o755)
    options = PgArchiverOptions(psql=str(fake), password_file="/etc/runwatch/pgpass")
    with pytest.raises(CheckFailed, match="/etc/runwatch/pgpass 5"):
        PgArchiverCheck(options).collect()


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "label"),
    [
        pytest.param(
            "host=/var/run/postgresql dbname=postgres",
            "/var/run/postgresql:5432",
            id="socket dir, default port",
        ),
        pytest.param("dbname=postgres host = db1 port=6432", "db1:6432", id="spaces around ="),
        pytest.param("host='/srv/my sockets' port=5433", "/srv/my sockets:5433", id="quoted"),
        pytest.param("postgresql://mon:secret@db2:5433/postgres", "db2:5433", id="uri"),
        pytest.param("postgresql:///postgres?host=/run/pg", "/run/pg:5432", id="uri, socket"),
        pytest.param("dbname=postgres", "default", id="no host"),
    ],
)
def test_cluster_label(dsn: str, label: str) -> None:
    assert cluster_label(dsn) == label


def test_parse_row_with_nulls_and_archive_mode() -> None:
    stats = parse_archiver_row("0|0|||1795339033.5|off\n")
    assert stats == ArchiverStats(0, 0, None, None, 1795339033.5, "off")
    assert not is_failing(stats)
    with pytest.raises(ValueError, match="one row"):
        parse_archiver_row("")


@pytest.mark.parametrize(
    ("last_archived", "last_failed", "failing"),
    [
        pytest.param(None, None, False, id="never tried"),
        pytest.param(100.0, None, False, id="never failed"),
        pytest.param(None, 100.0, True, id="failed, never archived"),
        pytest.param(200.0, 100.0, False, id="recovered"),
        pytest.param(100.0, 200.0, True, id="failing"),
    ],
)
def test_is_failing(last_archived: float | None, last_failed: float | None, failing: bool) -> None:
    stats = ArchiverStats(1, 1, last_archived, last_failed, 50.0, "on")
    assert is_failing(stats) is failing
