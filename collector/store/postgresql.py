"""The shared store: PostgreSQL (psycopg 3), for several collector replicas on one database.

What makes replicas safe together lives here, in the database, not in configuration:
- every report's transaction takes a transaction-scoped advisory lock on its host, so two
  replicas never evaluate one host at once, and each host row carries a version that tells a
  replica when its in-memory view of that host is out of date;
- a unique index allows one open call per incident key;
- outbox operations are claimed with `FOR UPDATE SKIP LOCKED` under a lease that expires when
  the replica holding it dies;
- periodic jobs (staleness, ticket sync) run on whichever replica holds a session advisory
  lock, which PostgreSQL releases when that replica's connection ends.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import zlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from collector.evaluation.rules import Severity
from collector.store.records import HostRecord, OutboxOp, StoreTimings
from collector.store.sql import (
    FIRST_IN_LINE,
    HOST_COLUMNS,
    OP_COLUMNS,
    SQLStore,
    Upsert,
    column_arrays,
)

log = logging.getLogger(__name__)

# Each entry is one schema version; append, never edit. Applied in order under an advisory
# lock, so replicas that start together migrate once.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE hosts (
        host TEXT PRIMARY KEY,
        first_seen DOUBLE PRECISION NOT NULL,
        last_report_at DOUBLE PRECISION NOT NULL,
        interval_seconds DOUBLE PRECISION NOT NULL,
        agent_version TEXT NOT NULL,
        boot_id TEXT NOT NULL,
        last_seq BIGINT NOT NULL,
        version BIGINT NOT NULL DEFAULT 1
    );
    CREATE TABLE series (
        host TEXT NOT NULL,
        name TEXT NOT NULL,
        labels_key TEXT NOT NULL,
        check_name TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        unit TEXT NOT NULL,
        timestamp DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (host, name, labels_key)
    );
    CREATE TABLE check_status (
        host TEXT NOT NULL,
        check_name TEXT NOT NULL,
        type TEXT NOT NULL,
        interval_seconds DOUBLE PRECISION NOT NULL,
        last_run_at DOUBLE PRECISION NOT NULL,
        duration_seconds DOUBLE PRECISION NOT NULL,
        error_kind TEXT,
        error TEXT,
        output TEXT,
        PRIMARY KEY (host, check_name)
    );
    CREATE TABLE rule_states (
        rule TEXT NOT NULL,
        host TEXT NOT NULL,
        labels_key TEXT NOT NULL,
        severity INTEGER NOT NULL,
        value DOUBLE PRECISION,
        problem_since DOUBLE PRECISION,
        call_id BIGINT,
        call_severity INTEGER NOT NULL,
        changed_at DOUBLE PRECISION NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (rule, host, labels_key)
    );
    CREATE INDEX rule_states_by_host ON rule_states (host);
    CREATE TABLE calls (
        id BIGSERIAL PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        host TEXT NOT NULL,
        rule TEXT NOT NULL,
        labels JSONB NOT NULL,
        grp TEXT NOT NULL,
        assign TEXT NOT NULL,
        severity TEXT NOT NULL,
        priority TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
        summary TEXT NOT NULL,
        description TEXT NOT NULL,
        first_seen DOUBLE PRECISION NOT NULL,
        opened_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        resolved_at DOUBLE PRECISION,
        reopened INTEGER NOT NULL DEFAULT 0,
        closed_by_desk BOOLEAN NOT NULL DEFAULT FALSE
    );
    -- The register's promise, kept by the database for every replica: one open call per key.
    CREATE UNIQUE INDEX calls_one_open ON calls (fingerprint) WHERE status = 'open';
    CREATE INDEX calls_by_fingerprint ON calls (fingerprint, resolved_at);
    CREATE TABLE call_events (
        id BIGSERIAL PRIMARY KEY,
        call_id BIGINT NOT NULL REFERENCES calls (id),
        at DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX call_events_by_call ON call_events (call_id, at);
    CREATE TABLE outbox (
        id BIGSERIAL PRIMARY KEY,
        call_id BIGINT NOT NULL REFERENCES calls (id),
        sink TEXT NOT NULL,
        op TEXT NOT NULL,
        payload JSONB NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'dead')),
        last_error TEXT,
        delivered_at DOUBLE PRECISION,
        lease_owner TEXT,
        lease_until DOUBLE PRECISION
    );
    CREATE INDEX outbox_by_status ON outbox (status, next_attempt_at);
    CREATE INDEX outbox_by_call ON outbox (call_id, status, id);
    CREATE TABLE storm_members (
        umbrella_id BIGINT NOT NULL REFERENCES calls (id),
        fingerprint TEXT NOT NULL,
        summary TEXT NOT NULL,
        PRIMARY KEY (umbrella_id, fingerprint)
    );
    CREATE TABLE call_links (
        call_id BIGINT NOT NULL REFERENCES calls (id),
        sink TEXT NOT NULL,
        remote_id TEXT NOT NULL,
        url TEXT,
        remote_state TEXT,
        checked_at DOUBLE PRECISION,
        acknowledged_at DOUBLE PRECISION,
        escalated_at DOUBLE PRECISION,
        desk_closed_at DOUBLE PRECISION,
        PRIMARY KEY (call_id, sink)
    );
    """,
    """
    ALTER TABLE hosts ADD COLUMN labels JSONB NOT NULL DEFAULT '{}';
    ALTER TABLE rule_states ADD COLUMN changes TEXT NOT NULL DEFAULT '';
    ALTER TABLE rule_states ADD COLUMN flapping BOOLEAN NOT NULL DEFAULT FALSE;
    ALTER TABLE rule_states ADD COLUMN peak INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rule_states ADD COLUMN call_flapping BOOLEAN NOT NULL DEFAULT FALSE;
    ALTER TABLE rule_states ADD COLUMN silenced BOOLEAN NOT NULL DEFAULT FALSE;
    ALTER TABLE rule_states ADD COLUMN absorbed_by BIGINT;
    CREATE TABLE silences (
        id BIGSERIAL PRIMARY KEY,
        host_pattern TEXT NOT NULL,
        rule_pattern TEXT NOT NULL,
        starts_at DOUBLE PRECISION NOT NULL,
        ends_at DOUBLE PRECISION NOT NULL,
        reason TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        ended_by TEXT
    );
    CREATE INDEX silences_by_end ON silences (ends_at);
    CREATE TABLE history (
        host TEXT NOT NULL,
        name TEXT NOT NULL,
        labels_key TEXT NOT NULL,
        timestamp DOUBLE PRECISION NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (host, name, labels_key, timestamp)
    );
    CREATE INDEX history_by_time ON history (timestamp);
    """,
    """
    CREATE TABLE audit_log (
        id BIGSERIAL PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        via TEXT NOT NULL
    );
    CREATE TABLE state_changes (
        id BIGSERIAL PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        host TEXT NOT NULL,
        rule TEXT NOT NULL,
        labels_key TEXT NOT NULL,
        grp TEXT NOT NULL,
        severity INTEGER NOT NULL
    );
    CREATE INDEX state_changes_by_time ON state_changes (at);
    CREATE INDEX state_changes_by_series ON state_changes (host, rule, labels_key, id);
    CREATE TABLE backup_successes (
        host TEXT NOT NULL,
        name TEXT NOT NULL,
        labels_key TEXT NOT NULL,
        succeeded_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (host, name, labels_key, succeeded_at)
    );
    CREATE INDEX calls_by_opened ON calls (opened_at);
    """,
    # Rows rewritten on every report (each series' latest value, each check's last run, each
    # host's row) keep room on their page, so that an update stays on it (a HOT update): no
    # index entry to add, less WAL, and the old version is pruned without waiting for VACUUM.
    """
    ALTER TABLE series SET (fillfactor = 70);
    ALTER TABLE check_status SET (fillfactor = 70);
    ALTER TABLE hosts SET (fillfactor = 70);
    ALTER TABLE rule_states SET (fillfactor = 70);
    """,
    # Console sessions not signed out yet: signing out at one replica ends them at all.
    """
    CREATE TABLE console_sessions (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
    """,
    # When the collector was evaluating (one row per unbroken run), for service-level reports.
    """
    CREATE TABLE evaluation_spans (
        started_at DOUBLE PRECISION PRIMARY KEY,
        last_at DOUBLE PRECISION NOT NULL
    );
    """,
    # Retired hosts (runwatch host retire): the row stays for the reports.
    """
    ALTER TABLE hosts ADD COLUMN retired_at DOUBLE PRECISION;
    ALTER TABLE hosts ADD COLUMN retired_by TEXT;
    ALTER TABLE hosts ADD COLUMN retire_reason TEXT;
    """,
    # The console's call lists: one page by status, group, host or rule, newest first.
    """
    CREATE INDEX calls_by_status ON calls (status, id);
    CREATE INDEX calls_by_group ON calls (grp, status, id);
    CREATE INDEX calls_by_host ON calls (host, status, id);
    CREATE INDEX calls_by_rule ON calls (rule, status, id);
    """,
    # A rule state that never changed was kept with changed_at 0 (shown "since 1970"): it has
    # held since its host's first report.
    """
    UPDATE rule_states SET changed_at = COALESCE(
        (SELECT first_seen FROM hosts WHERE hosts.host = rule_states.host), changed_at)
    WHERE changed_at = 0;
    """,
    # Every ruled series for the console's graphs: one row per host per resolution step, its
    # series' points packed (records.pack_steps).
    """
    CREATE TABLE series_history (
        host TEXT NOT NULL,
        at BIGINT NOT NULL,
        points BYTEA NOT NULL,
        PRIMARY KEY (host, at)
    );
    """,
    # The services a call affects (issue 24), by name.
    """
    ALTER TABLE calls ADD COLUMN services JSONB NOT NULL DEFAULT '[]';
    """,
    # Each service's state changes (issue 24): its history on the status page, its since.
    """
    CREATE TABLE service_changes (
        service TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        state INTEGER NOT NULL
    );
    CREATE INDEX service_changes_by_service ON service_changes (service, at);
    CREATE INDEX service_changes_by_time ON service_changes (at);
    """,
    # Storm control's count of new calls per help desk, shared by every replica.
    """
    CREATE TABLE storm_opens (
        sink TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX storm_opens_by_sink ON storm_opens (sink, at);
    """,
    # Which replica last moved each host on: when it dies, another loads its hosts in bulk.
    """
    ALTER TABLE hosts ADD COLUMN owner TEXT;
    CREATE INDEX hosts_by_owner ON hosts (owner);
    """,
    # Operators' messages on the status page (issue 24).
    """
    CREATE TABLE status_messages (
        id BIGSERIAL PRIMARY KEY,
        service TEXT NOT NULL,
        text TEXT NOT NULL,
        posted_by TEXT NOT NULL,
        posted_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        updated_by TEXT NOT NULL,
        ended_at DOUBLE PRECISION,
        ended_by TEXT
    );
    """,
    # How far each unacknowledged call has climbed (issue 23: escalation).
    """
    CREATE TABLE call_escalations (
        call_id BIGINT PRIMARY KEY REFERENCES calls (id),
        level INTEGER NOT NULL,
        reached_at DOUBLE PRECISION NOT NULL,
        steps INTEGER NOT NULL
    );
    """,
    # Acknowledge links from notifications that were used: each works once (issue 23).
    """
    CREATE TABLE ack_links_used (
        link_id TEXT PRIMARY KEY,
        call_id BIGINT NOT NULL,
        recipient TEXT NOT NULL,
        used_at DOUBLE PRECISION NOT NULL
    );
    """,
    # Notification digests (issue 23): the messages each channel was sent, for its rate limit,
    # and the notifications a rate or storm digest carries instead.
    """
    CREATE TABLE notify_sent (
        sink TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX notify_sent_by_sink ON notify_sent (sink, at);
    CREATE TABLE notify_folded (
        id BIGSERIAL PRIMARY KEY,
        sink TEXT NOT NULL,
        call_id BIGINT NOT NULL,
        umbrella_id BIGINT,
        line TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        digest_op BIGINT
    );
    CREATE INDEX notify_folded_by_sink ON notify_folded (sink, digest_op);
    CREATE INDEX notify_folded_by_call ON notify_folded (call_id, sink);
    CREATE INDEX notify_folded_by_umbrella ON notify_folded (umbrella_id, sink);
    """,
    # A service-level call and the calls of its causes (issue 24), linked both ways.
    """
    CREATE TABLE service_call_parts (
        service_call BIGINT NOT NULL,
        call_id BIGINT NOT NULL,
        linked_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (service_call, call_id)
    );
    CREATE INDEX service_call_parts_by_call ON service_call_parts (call_id);
    """,
]

# Advisory lock keys: one for migrations, one per periodic job (see try_lead).
_MIGRATION_LOCK = 0x72756E77  # "runw"
_JOB_LOCK_BASE = 0x72750000
# How long a claimed outbox operation stays with its replica before others may take it.
DEFAULT_LEASE_SECONDS = 60.0


def _lock_key(text: str) -> int:
    """A stable signed 64-bit advisory lock key for a name (crc32 is stable across runs)."""
    return _JOB_LOCK_BASE + zlib.crc32(text.encode())


class PostgresStore(SQLStore):
    """Store backed by PostgreSQL. One connection; use from one thread at a time."""

    shared = True
    _FOR_UPDATE = " FOR UPDATE"
    _LEASE_CLEAR = ", lease_owner=NULL, lease_until=NULL"
    _EVENT_ORDER = "id"
    _LIKE = "ILIKE"
    _APPEND_POINTS = "series_history.points || excluded.points"
    _BINARY = ' COLLATE "C"'

    def __init__(
        self,
        dsn: str,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        owner: str | None = None,
        timings: StoreTimings | None = None,
    ) -> None:
        self._dsn = dsn
        self._timings = timings or StoreTimings()
        self._db = psycopg.connect(dsn, autocommit=True)
        self._lease_seconds = lease_seconds
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._depth = 0
        self._led: set[str] = set()
        self._mutex = threading.RLock()
        self._migrate()
        row = self._db.execute("SELECT current_schema()").fetchone()
        self._schema = str(row[0]) if row else "public"
        self._storm_lock = _lock_key(f"{self._schema}:storm control")
        self._notify_lock = _lock_key(f"{self._schema}:notification digests")
        # Held while this connection lives: other replicas tell from it that this one is up.
        self._db.execute("SELECT pg_try_advisory_lock(%s)", (self._replica_key(self.owner),))

    # -- schema ---------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._db.transaction():
            self._db.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_MIGRATION_LOCK,)
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS runwatch_schema "
                "(version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL "
                "DEFAULT now())"
            )
            row = self._db.execute("SELECT max(version) FROM runwatch_schema").fetchone()
            current = row[0] if row and row[0] is not None else 0
            if current > len(MIGRATIONS):
                raise RuntimeError(
                    f"the database was migrated by a newer runwatch (schema "
                    f"{current}, this one knows {len(MIGRATIONS)}); upgrade "
                    "runwatch"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                log.info("PostgreSQL store: applying schema migration %d", version)
                self._db.execute(MIGRATIONS[version - 1].encode())
                self._db.execute("INSERT INTO runwatch_schema (version) VALUES (%s)", (version,))

    @property
    def schema_version(self) -> int:
        row = self._db.execute("SELECT max(version) FROM runwatch_schema").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # -- the dialect ------------------------------------------------------------------------------

    def _sql(self, query: str) -> str:
        return _placeholders(query)

    def _many(self, query: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            with self._db.cursor() as cursor:
                cursor.executemany(self._sql(query), rows)

    def _affected(self, query: str, params: Sequence[Any]) -> int:
        """Run a statement and return how many rows it changed. Inside a transaction (in
        pipeline mode) the count is known only once the server answered: the inner pipeline
        block waits for that when it ends."""
        with self._db.pipeline():
            cursor = self._run(query, params)
        return int(cursor.rowcount)

    def _insert(self, query: str, params: Sequence[Any]) -> int:
        row = self._run(query + " RETURNING id", params).fetchone()
        assert row is not None
        return int(row[0])

    def _upsert(self, upsert: Upsert, rows: list[tuple[Any, ...]]) -> None:
        if not upsert.types:
            super()._upsert(upsert, rows)
            return
        if not rows:
            return
        # One statement for all the rows (arrays unnested), not one per row. The arrays go in
        # binary (%b): text arrays in the text format cost a regex escape per element.
        arrays = ", ".join(f"%b::{kind.split(':')[0]}[]" for kind in upsert.types)
        names = ", ".join(upsert.columns)
        values = ", ".join(
            f"{name}::{kind.split(':')[1]}" if ":" in kind else name
            for name, kind in zip(upsert.columns, upsert.types, strict=True)
        )
        self._db.execute(
            f"INSERT INTO {upsert.table} ({names}) SELECT {values} "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            f"FROM unnest({arrays}) AS u({names}){upsert.conflict()}",
            column_arrays(upsert, rows),
        )

    def _among(self, values: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        return "= ANY(?)", (list(values),)

    def _json_in(self, value: Any, *, sort_keys: bool = False) -> Any:
        return Jsonb(value)

    def _json_out(self, value: Any) -> Any:
        return value

    def _batched(self) -> AbstractContextManager[Any]:
        # Pipeline mode: statements whose results nobody reads (the writes of a report) go to
        # the server without waiting for each answer; a read waits for all before it. A
        # report then costs three round trips or so, not one per statement. A failed
        # statement raises at the next read, or when the pipeline ends.
        pipeline: AbstractContextManager[Any] = self._db.pipeline()
        return pipeline

    def _guarded(self) -> AbstractContextManager[Any]:
        return self._mutex

    # -- coordination between replicas ------------------------------------------------------------

    def lock_hosts(self, hosts: Sequence[str]) -> dict[str, tuple[HostRecord, int]]:
        """lock_host() for several hosts in one round trip. The locks are taken in the order of
        their keys, so replicas locking overlapping sets of hosts cannot deadlock."""
        names = list(hosts)
        self._db.execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema()), k) FROM "
            "(SELECT DISTINCT hashtext(h) AS k FROM unnest(%s::text[]) AS h) AS keys ORDER BY k",
            (names,),
        )
        return {
            row[0]: (self._host(row), int(row[8]))
            for row in self._db.execute(
                f"SELECT {HOST_COLUMNS}, version FROM hosts WHERE host = ANY(%s)",  # noqa: S608 -- constant column lists, values bound  # nosec B608
                (names,),
            )
        }

    def bump_host_versions(self, hosts: Sequence[str]) -> dict[str, int]:
        """Move the hosts' versions on, and note this replica as the one that did."""
        return {
            host: int(version)
            for host, version in self._db.execute(
                "UPDATE hosts SET version = version + 1, owner = %s WHERE host = ANY(%s) "
                "RETURNING host, version",
                (self.owner, list(hosts)),
            )
        }

    def _replica_key(self, owner: str) -> int:
        return _lock_key(f"{self._schema}:replica:{owner}")

    def orphaned_hosts(self) -> dict[str, int]:
        """The hosts (and their versions) last moved on by replicas that are gone: those
        whose connection, and with it their lock, has ended."""
        owners = [
            row[0]
            for row in self._db.execute(
                "SELECT DISTINCT owner FROM hosts WHERE owner IS NOT NULL AND owner <> %s",
                (self.owner,),
            )
        ]
        if not owners:
            return {}
        keys = {self._replica_key(owner): owner for owner in owners}
        live = {
            int(row[0])
            for row in self._db.execute(
                "SELECT (l.classid::int8 << 32) | l.objid::int8 FROM pg_locks l "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database()) "
                "AND ((l.classid::int8 << 32) | l.objid::int8) = ANY(%s)",
                (list(keys),),
            )
        }
        gone = [owner for key, owner in keys.items() if key not in live]
        if not gone:
            return {}
        return {
            host: int(version)
            for host, version in self._db.execute(
                "SELECT host, version FROM hosts WHERE owner = ANY(%s)", (gone,)
            )
        }

    def adopt_hosts(self, versions: Mapping[str, int]) -> None:
        """Note this replica as the one holding these hosts now, those still at the given
        versions (no other replica moved them on meanwhile), without moving them on: its
        view of them is current."""
        self._db.execute(
            "UPDATE hosts SET owner = %s FROM unnest(%s::text[], %s::int8[]) AS u(host, version) "
            "WHERE hosts.host = u.host AND hosts.version = u.version",
            (self.owner, list(versions), list(versions.values())),
        )

    def host_versions(self) -> dict[str, int]:
        return {
            host: int(version)
            for host, version in self._db.execute("SELECT host, version FROM hosts")
        }

    def hosts_to_tick(self, now: float, after_intervals: float, stale_rule: str) -> list[str]:
        """Hosts whose time-based evaluation may change something, read from the database
        (a replica's own view is current only for the hosts that report through it): silent
        past their staleness limit, marked stale or carrying a stale call, or with a problem
        waiting for its `for`."""
        rows = self._db.execute(
            "SELECT host FROM hosts WHERE %s - last_report_at > %s * interval_seconds "
            "AND retired_at IS NULL "
            "UNION SELECT host FROM rule_states WHERE (rule = %s AND (severity <> %s "
            "OR call_id IS NOT NULL)) OR (rule <> %s AND severity IN (%s, %s, %s) "
            "AND call_id IS NULL)",
            (
                now,
                after_intervals,
                stale_rule,
                int(Severity.OK),
                stale_rule,
                int(Severity.WARNING),
                int(Severity.CRITICAL),
                int(Severity.UNKNOWN),
            ),
        ).fetchall()
        return sorted(row[0] for row in rows)

    def try_lead(self, job: str) -> bool:
        """Whether this replica runs `job` now: the holder of its session advisory lock does.

        The lock stays with this connection until it closes, so leadership is sticky, and it
        passes to another replica within one of its ticks after this one dies.
        """
        if job in self._led:
            return True
        # Keyed by schema too: advisory locks are per database, and two installations may
        # share one database in different schemas.
        row = self._db.execute(
            "SELECT pg_try_advisory_lock(%s)", (_lock_key(f"{self._schema}:{job}"),)
        ).fetchone()
        if row and row[0]:
            self._led.add(job)
            log.info("this replica (%s) now runs %s", self.owner, job)
            return True
        return False

    def close(self) -> None:
        self._db.close()

    def _lock_storm(self) -> None:
        """Storm control's count is read and written by one replica at a time: the lock is
        the transaction's. One lock for every help desk, so no two replicas can wait for each
        other's (and a transaction takes it after its hosts' locks, as every one does)."""
        self._db.execute("SELECT pg_advisory_xact_lock(%s)", (self._storm_lock,))

    def _lock_notify(self) -> None:
        """The rate limit's count and the digests' rows, one replica at a time (the
        transaction's lock, like storm control's)."""
        self._db.execute("SELECT pg_advisory_xact_lock(%s)", (self._notify_lock,))

    # -- the outbox: operations claimed under a lease ---------------------------------------------

    def due_ops(self, now: float, limit: int) -> list[OutboxOp]:
        """Claim pending operations that are due and first in line for their call.

        Claimed rows are leased to this replica for `lease_seconds`: others skip them (also
        while the claim's transaction is open, by SKIP LOCKED), and take them over once the
        lease has run out, which is what happens to the claims of a replica that died.
        """
        rows = self._db.execute(
            f"UPDATE outbox SET lease_owner=%s, lease_until=%s WHERE id IN ("  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "SELECT id FROM outbox o WHERE status = 'pending' AND next_attempt_at <= %s "
            "AND (lease_until IS NULL OR lease_until < %s OR lease_owner = %s) "
            f"AND {FIRST_IN_LINE} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) "
            f"RETURNING {OP_COLUMNS}",
            (self.owner, now + self._lease_seconds, now, now, self.owner, limit),
        ).fetchall()
        return sorted((self._op(row) for row in rows), key=lambda op: op.id)

    def next_due_at(self) -> float | None:
        row = self._db.execute(
            "SELECT min(greatest(next_attempt_at, coalesce(lease_until, 0))) "
            "FROM outbox WHERE status = 'pending'"
        ).fetchone()
        return row[0] if row else None


@functools.lru_cache(maxsize=512)
def _placeholders(query: str) -> str:
    """A query written with `?` placeholders, in psycopg's `%s` style."""
    return query.replace("?", "%s")
