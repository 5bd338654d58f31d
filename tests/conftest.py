"""Shared fixtures: a clock that tests move by hand, and reports built in one line."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.schema import SCHEMA_VERSION, CheckError, CheckRun, Measurement, Report
from collector.app import CollectorService
from collector.config import collector_config_from_dict

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))

# The whole suite's logs are scanned for tokens and test secrets (tests/secretscan.py);
# pytester runs inner sessions in the plugin's own test.
pytest_plugins = ["tests.secretscan", "pytester"]


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


GROUPS = {
    "systems-administration": {"sink": "helpdesk", "assign": "Systems Administration",
                               "reopen_within": "1h"},
    "computer-operations": {"sink": "helpdesk", "assign": "Computer Operations",
                            "on_recovery": "comment"},
}

FS_RULE = {"name": "filesystem_full", "metric": "fs_used_ratio", "warning": 0.85,
           "critical": 0.95, "clear": 0.80, "for": "5m", "owner": "systems-administration"}


def collector_config(tmp_path: Path, rules: list[dict[str, Any]] | None = None,
                     **extra: Any) -> Any:
    data: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "sinks": {"helpdesk": {"type": "builtin"}},
        "groups": GROUPS,
        "rules": [FS_RULE] if rules is None else rules,
        "staleness": {"after_intervals": 3, "owner": "systems-administration"},
        # The name Litestar's TestClient sends in its Host header.
        "allowed_hosts": ["testserver.local"],
    }
    data.update(extra)
    return collector_config_from_dict(data)


# The PostgreSQL that runs on the test machine (local, trust auth, a database named `test`).
PG_DSN = os.environ.get("RUNWATCH_TEST_PG_DSN", "host=127.0.0.1 port=5432 dbname=test "
                                                "user=postgres connect_timeout=5")


@pytest.fixture(scope="session")
def pg_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg not installed (pip install 'runwatch[postgresql]')"
    try:
        psycopg.connect(PG_DSN, autocommit=True).close()
    except psycopg.Error as exc:
        return (f"PostgreSQL not reachable with {PG_DSN!r} (Debian package: postgresql; "
                f"set RUNWATCH_TEST_PG_DSN): {str(exc).strip()[:200]}")
    return None


@pytest.fixture
def pg_dsn(pg_unavailable: str | None) -> Iterator[str]:
    """A DSN whose search_path is a fresh schema, dropped after the test."""
    if pg_unavailable:
        pytest.skip(pg_unavailable)
    import psycopg

    schema = f"runwatch_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_DSN} options='-c search_path={schema}'"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The `store:` config of each backend: tests using make_service run on both."""
    if request.param == "postgresql":
        return {"backend": "postgresql", "dsn": request.getfixturevalue("pg_dsn")}
    return {"backend": "sqlite"}


@pytest.fixture
def make_service(tmp_path: Path, clock: FakeClock, store_backend: dict[str, Any]
                 ) -> Callable[..., CollectorService]:
    services: list[CollectorService] = []

    def make(rules: list[dict[str, Any]] | None = None, **extra: Any) -> CollectorService:
        extra.setdefault("store", store_backend)
        service = CollectorService(collector_config(tmp_path, rules, **extra), clock=clock)
        services.append(service)
        return service

    yield make  # type: ignore[misc]
    for service in services:
        service.close()


class Reporter:
    """Builds successive reports for one host, as an agent would."""

    def __init__(self, host: str, clock: FakeClock, interval: float = 60.0) -> None:
        self.host = host
        self.clock = clock
        self.interval = interval
        self.seq = 0
        self.boot_id = "boot-1"

    def report(self, values: dict[str, float] | None = None, *,
               labels: dict[str, str] | None = None, check: str = "filesystem",
               error: str | None = None, measurements: list[Measurement] | None = None,
               output: str | None = None) -> Report:
        self.seq += 1
        now = self.clock()
        items = list(measurements or [])
        for name, value in (values or {}).items():
            items.append(Measurement(check=check, name=name, value=value, unit="ratio",
                                     labels=labels if labels is not None else {"mountpoint": "/"},
                                     timestamp=now))
        runs = [CheckRun(check=check, type=check, interval_seconds=self.interval,
                         started_at=now, duration_seconds=0.01,
                         error=CheckError(kind="error", message=error) if error else None,
                         output=output)]
        return Report(schema_version=SCHEMA_VERSION, host=self.host, agent_version="test",
                      boot_id=self.boot_id, seq=self.seq, sent_at=now,
                      interval_seconds=self.interval, measurements=items, checks=runs)


@pytest.fixture
def processes() -> Iterator[Any]:
    """Processes a test starts, stopped by PID when it ends, whatever happened."""
    from tests.procs import Processes

    started = Processes()
    yield started
    started.stop_all()


def tool(name: str, package: str) -> str:
    """Path of an external tool, or skip the test naming the Debian package that provides it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package: {package})")
    return path
