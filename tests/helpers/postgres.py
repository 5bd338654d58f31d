"""The PostgreSQL that runs on the test machine (local, trust auth, a database named `test`)."""

from __future__ import annotations

import os

PG_DSN = os.environ.get(
    "RUNWATCH_TEST_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=5"
)


def pg_unavailable_reason() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg not installed (pip install 'runwatch[postgresql]')"
    try:
        psycopg.connect(PG_DSN, autocommit=True).close()
    except psycopg.Error as exc:
        return (
            f"PostgreSQL not reachable with {PG_DSN!r} (Debian package: postgresql; "
            f"set RUNWATCH_TEST_PG_DSN): {str(exc).strip()[:200]}"
        )
    return None
