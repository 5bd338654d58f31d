"""Open the store a config names."""

from __future__ import annotations

from collector.config import CollectorConfig
from collector.store.protocols import Store
from collector.store.records import StoreTimings
from collector.store.sqlite import SQLiteStore


def open_store(
    config: CollectorConfig, timings: StoreTimings | None = None, *, background: bool = False
) -> Store:
    """The store the config names: SQLite in data_dir, or a shared PostgreSQL database.

    `background`: the collector's main connection, whose SQLite WAL checkpoints go to a
    thread of their own."""
    if config.store.backend == "postgresql":
        from collector.store.postgresql import PostgresStore  # psycopg only where it is used

        assert config.store.dsn is not None  # the config requires it
        return PostgresStore(
            config.store.dsn, lease_seconds=float(config.outbox.lease), timings=timings
        )
    return SQLiteStore(
        config.data_dir / "runwatch.db",
        timings,
        checkpoint_in_background=background,
        max_bytes=config.store.max_bytes,
    )
