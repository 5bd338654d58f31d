"""Shared fixtures: a clock that tests move by hand, the PostgreSQL schemas, processes.

The helpers they use live in tests/helpers; import them from there, not from this file."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.service import CollectorService
from tests.helpers import PG_DSN, FakeClock, collector_config, pg_unavailable_reason

# The whole suite's logs are scanned for tokens and test secrets (tests/secretscan.py);
# pytester runs inner sessions in the plugin's own test.
pytest_plugins = ["tests.secretscan", "pytester"]

# Tests that share something run in one xdist worker (`--dist loadgroup`), in file order, as
# they do without xdist:
# - the real help desks keep their data in one system-wide database each, and their session
#   fixtures provision it, so two workers must not start them at once. A test module may ask for
#   one by name at run time, so a module that holds the fixture counts too;
# - the tests of a module that share a module- or class-scoped fixture (a PostgreSQL cluster, a
#   restic repository, a Prometheus): it is made once, and later tests may build on earlier ones.
HELPDESK_FIXTURES = ("redmine_server", "rt_server")
SHARED_SCOPES = ("module", "class")


def xdist_group(item: pytest.Item) -> str | None:
    """The group a test runs in under xdist, or None to run it on any worker."""
    module, fixtures = getattr(item, "module", None), getattr(item, "fixturenames", ())
    if any(name in fixtures or hasattr(module, name) for name in HELPDESK_FIXTURES):
        return "helpdesks"
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    if module is not None and any(d.scope in SHARED_SCOPES for chain in defs for d in chain):
        return module.__name__
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = xdist_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


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


@pytest.fixture
def processes() -> Iterator[Any]:
    """Processes a test starts, stopped by PID when it ends, whatever happened."""
    from tests.procs import Processes

    started = Processes()
    yield started
    started.stop_all()

