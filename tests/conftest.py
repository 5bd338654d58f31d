"""Shared fixtures: a clock that tests move by hand, the PostgreSQL schemas, processes.

The helpers they use live in tests/helpers; import them from there, not from this file."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.app import CollectorService
from tests.helpers import PG_DSN, FakeClock, collector_config, pg_unavailable_reason

# The whole suite's logs are scanned for tokens and test secrets (tests/secretscan.py);
# pytester runs inner sessions in the plugin's own test; tests.helpers.browser holds the
# browser tests' fixtures (browser, console).
pytest_plugins = ["tests.secretscan", "pytester", "tests.helpers.browser"]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile` keeps each file in one worker and the help desk files together."""
    if config.getoption("dist") != "loadfile":
        return None
    from tests.helpers.xdist import FileScheduling

    return FileScheduling(config, log)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def pg_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    return pg_unavailable_reason()


@pytest.fixture
def pg_dsn(pg_unavailable: str | None) -> Iterator[str]:
    """A DSN whose search_path is a fresh schema, dropped after the test.

    Commits do not wait for the WAL to reach the disk (synchronous_commit=off): a third less
    time for the PostgreSQL tests, and nothing a test sees changes while the server stays up.
    """
    if pg_unavailable:
        pytest.skip(pg_unavailable)
    import psycopg

    schema = f"runwatch_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_DSN} options='-c search_path={schema} -c synchronous_commit=off'"
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
def make_service(
    tmp_path: Path, clock: FakeClock, store_backend: dict[str, Any]
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


@pytest.fixture
def processes() -> Iterator[Any]:
    """Processes a test starts, stopped by PID when it ends, whatever happened."""
    from tests.procs import Processes

    started = Processes()
    yield started
    started.stop_all()
