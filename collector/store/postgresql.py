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

import json
import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from collector.evaluation.rules import Severity
from collector.incidents.calls import Call, CallEvent, CallStatus
from collector.store.records import (
    STATE_COLUMNS,
    AuditEntry,
    BackupSuccess,
    CallLink,
    CheckStatus,
    HistoryPoint,
    HostRecord,
    HostSnapshot,
    OutboxOp,
    RuleStateRecord,
    SeriesRecord,
    Silence,
    StateChange,
    StoreTimings,
    rule_state_from_row,
    rule_state_to_row,
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
]

# Advisory lock keys: one for migrations, one per periodic job (see try_lead).
_MIGRATION_LOCK = 0x72756E77  # "runw"
_JOB_LOCK_BASE = 0x72750000
# How long a claimed outbox operation stays with its replica before others may take it.
DEFAULT_LEASE_SECONDS = 60.0


def _lock_key(text: str) -> int:
    """A stable signed 64-bit advisory lock key for a name (crc32 is stable across runs)."""
    return _JOB_LOCK_BASE + zlib.crc32(text.encode())


class PostgresStore:
    """Store backed by PostgreSQL. One connection; use from one thread at a time."""

    shared = True

    def __init__(self, dsn: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 owner: str | None = None, timings: StoreTimings | None = None) -> None:
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

    # -- schema ---------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                             (_MIGRATION_LOCK,))
            self._db.execute("CREATE TABLE IF NOT EXISTS runwatch_schema "
                             "(version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL "
                             "DEFAULT now())")
            row = self._db.execute("SELECT max(version) FROM runwatch_schema").fetchone()
            current = row[0] if row and row[0] is not None else 0
            if current > len(MIGRATIONS):
                raise RuntimeError(f"the database was migrated by a newer runwatch (schema "
                                   f"{current}, this one knows {len(MIGRATIONS)}); upgrade "
                                   "runwatch")
            for version in range(current + 1, len(MIGRATIONS) + 1):
                log.info("PostgreSQL store: applying schema migration %d", version)
                self._db.execute(MIGRATIONS[version - 1].encode())
                self._db.execute("INSERT INTO runwatch_schema (version) VALUES (%s)",
                                 (version,))

    @property
    def schema_version(self) -> int:
        row = self._db.execute("SELECT max(version) FROM runwatch_schema").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # -- transactions and coordination ----------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._mutex:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            started = time.perf_counter()
            self._db.execute("BEGIN")
            try:
                # Pipeline mode: statements whose results nobody reads (the writes of a report)
                # go to the server without waiting for each answer; a read waits for all before
                # it. A report then costs three round trips or so, not one per statement.
                # A failed statement raises at the next read, or when the pipeline ends.
                with self._db.pipeline():
                    yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                committing = time.perf_counter()
                self._db.execute("COMMIT")
                ended = time.perf_counter()
                self._timings.commit(ended - committing)
                self._timings.transaction(ended - started)
            finally:
                self._depth = 0

    def _affected(self, query: str, params: tuple[object, ...]) -> int:
        """Run a statement and return how many rows it changed. Inside a transaction (in
        pipeline mode) the count is known only once the server answered: the inner pipeline
        block waits for that when it ends."""
        with self._db.pipeline():
            cursor = self._db.execute(query, params)
        return cursor.rowcount

    def lock_host(self, host: str) -> tuple[HostRecord, int] | None:
        """Serialise work on one host across replicas (until the transaction ends); its row."""
        return self.lock_hosts([host]).get(host)

    def lock_hosts(self, hosts: Sequence[str]) -> dict[str, tuple[HostRecord, int]]:
        """lock_host() for several hosts in one round trip. The locks are taken in the order of
        their keys, so replicas locking overlapping sets of hosts cannot deadlock."""
        names = list(hosts)
        self._db.execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema()), k) FROM "
            "(SELECT DISTINCT hashtext(h) AS k FROM unnest(%s::text[]) AS h) AS keys ORDER BY k",
            (names,))
        return {row[0]: (HostRecord(*row[:8]), int(row[8])) for row in self._db.execute(
            "SELECT host, first_seen, last_report_at, interval_seconds, agent_version, "
            "boot_id, last_seq, labels, version FROM hosts WHERE host = ANY(%s)", (names,))}

    def bump_host_version(self, host: str) -> int:
        return self.bump_host_versions([host]).get(host, 0)

    def bump_host_versions(self, hosts: Sequence[str]) -> dict[str, int]:
        return {host: int(version) for host, version in self._db.execute(
            "UPDATE hosts SET version = version + 1 WHERE host = ANY(%s) RETURNING host, version",
            (list(hosts),))}

    def host_versions(self) -> dict[str, int]:
        return {host: int(version) for host, version in
                self._db.execute("SELECT host, version FROM hosts")}

    def hosts_to_tick(self, now: float, after_intervals: float, stale_rule: str) -> list[str]:
        """Hosts whose time-based evaluation may change something, read from the database
        (a replica's own view is current only for the hosts that report through it): silent
        past their staleness limit, marked stale or carrying a stale call, or with a problem
        waiting for its `for`."""
        rows = self._db.execute(
            "SELECT host FROM hosts WHERE %s - last_report_at > %s * interval_seconds "
            "UNION SELECT host FROM rule_states WHERE (rule = %s AND (severity <> %s "
            "OR call_id IS NOT NULL)) OR (rule <> %s AND severity IN (%s, %s, %s) "
            "AND call_id IS NULL)",
            (now, after_intervals, stale_rule, int(Severity.OK), stale_rule,
             int(Severity.WARNING), int(Severity.CRITICAL), int(Severity.UNKNOWN))).fetchall()
        return sorted(row[0] for row in rows)

    def load_host_snapshot(self, host: str) -> HostSnapshot:
        locked = self.lock_host(host)
        return HostSnapshot(
            record=locked[0] if locked else None,
            version=locked[1] if locked else 0,
            series=[SeriesRecord(h, name, key, json.loads(key), check, value, unit, ts)
                    for h, name, key, check, value, unit, ts in self._db.execute(
                        "SELECT host, name, labels_key, check_name, value, unit, timestamp "
                        "FROM series WHERE host = %s", (host,))],
            statuses=[CheckStatus(*row) for row in self._db.execute(
                "SELECT host, check_name, type, interval_seconds, last_run_at, "
                "duration_seconds, error_kind, error, output FROM check_status WHERE host = %s",
                (host,))],
            states=[rule_state_from_row(row) for row in self._db.execute(
                f"SELECT {self._STATE_COLUMNS} FROM rule_states WHERE host = %s",  # noqa: S608 -- constant column lists, values bound  # nosec B608
                (host,))],
        )

    def try_lead(self, job: str) -> bool:
        """Whether this replica runs `job` now: the holder of its session advisory lock does.

        The lock stays with this connection until it closes, so leadership is sticky, and it
        passes to another replica within one of its ticks after this one dies.
        """
        if job in self._led:
            return True
        # Keyed by schema too: advisory locks are per database, and two installations may
        # share one database in different schemas.
        row = self._db.execute("SELECT pg_try_advisory_lock(%s)",
                               (_lock_key(f"{self._schema}:{job}"),)).fetchone()
        if row and row[0]:
            self._led.add(job)
            log.info("this replica (%s) now runs %s", self.owner, job)
            return True
        return False

    def close(self) -> None:
        self._db.close()

    # -- what the agents reported ---------------------------------------------------------------

    def load_hosts(self) -> Iterator[HostRecord]:
        for row in self._db.execute("SELECT host, first_seen, last_report_at, interval_seconds, "
                                    "agent_version, boot_id, last_seq, labels FROM hosts"):
            yield HostRecord(*row)

    def save_host(self, host: HostRecord) -> None:
        self.save_hosts([host])

    def save_hosts(self, hosts: list[HostRecord]) -> None:
        if not hosts:
            return
        self._db.execute(
            "INSERT INTO hosts (host, first_seen, last_report_at, interval_seconds, "
            "agent_version, boot_id, last_seq, labels) SELECT h, f, r, i, a, b, s, l::jsonb "
            "FROM unnest(%b::text[], %b::float8[], %b::float8[], %b::float8[], %b::text[], "
            "%b::text[], %b::int8[], %b::text[]) AS u(h, f, r, i, a, b, s, l) "
            "ON CONFLICT (host) DO UPDATE SET last_report_at=excluded.last_report_at, "
            "interval_seconds=excluded.interval_seconds, agent_version=excluded.agent_version, "
            "boot_id=excluded.boot_id, last_seq=excluded.last_seq, labels=excluded.labels",
            ([h.host for h in hosts], _floats(h.first_seen for h in hosts),
             _floats(h.last_report_at for h in hosts),
             _floats(h.interval_seconds for h in hosts), [h.agent_version for h in hosts],
             [h.boot_id for h in hosts], [h.last_seq for h in hosts],
             [json.dumps(h.labels, sort_keys=True) for h in hosts]))

    def load_series(self) -> Iterator[SeriesRecord]:
        for host, name, key, check, value, unit, ts in self._db.execute(
                "SELECT host, name, labels_key, check_name, value, unit, timestamp FROM series"):
            yield SeriesRecord(host, name, key, json.loads(key), check, value, unit, ts)

    def save_series(self, series: list[SeriesRecord]) -> None:
        if not series:
            return
        # One statement for the whole report (arrays unnested), not one per series. The arrays
        # go in binary (%b): text arrays in the text format cost a regex escape per element.
        self._db.execute(
            "INSERT INTO series SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], "
            "%b::text[], %b::float8[], %b::text[], %b::float8[]) "
            "ON CONFLICT (host, name, labels_key) DO UPDATE SET "
            "check_name=excluded.check_name, value=excluded.value, unit=excluded.unit, "
            "timestamp=excluded.timestamp",
            ([s.host for s in series], [s.name for s in series],
             [s.labels_key for s in series], [s.check for s in series],
             _floats(s.value for s in series), [s.unit for s in series],
             _floats(s.timestamp for s in series)))

    def delete_series(self, keys: list[tuple[str, str, str]]) -> None:
        if keys:
            with self._db.cursor() as cursor:
                cursor.executemany("DELETE FROM series WHERE host=%s AND name=%s "
                                   "AND labels_key=%s", keys)

    def load_check_statuses(self) -> Iterator[CheckStatus]:
        for row in self._db.execute("SELECT host, check_name, type, interval_seconds, "
                                    "last_run_at, duration_seconds, error_kind, error, output "
                                    "FROM check_status"):
            yield CheckStatus(*row)

    def save_check_statuses(self, statuses: list[CheckStatus]) -> None:
        if not statuses:
            return
        self._db.execute(
            "INSERT INTO check_status SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], "
            "%b::float8[], %b::float8[], %b::float8[], %b::text[], %b::text[], %b::text[]) "
            "ON CONFLICT (host, check_name) DO UPDATE SET type=excluded.type, "
            "interval_seconds=excluded.interval_seconds, last_run_at=excluded.last_run_at, "
            "duration_seconds=excluded.duration_seconds, error_kind=excluded.error_kind, "
            "error=excluded.error, output=excluded.output",
            ([s.host for s in statuses], [s.check for s in statuses],
             [s.type for s in statuses], _floats(s.interval_seconds for s in statuses),
             _floats(s.last_run_at for s in statuses),
             _floats(s.duration_seconds for s in statuses),
             [s.error_kind for s in statuses], [s.error for s in statuses],
             [s.output for s in statuses]))

    # -- rule states ----------------------------------------------------------------------------

    _STATE_COLUMNS = STATE_COLUMNS

    def load_rule_states(self) -> Iterator[RuleStateRecord]:
        for row in self._db.execute(
                f"SELECT {self._STATE_COLUMNS} FROM rule_states"):  # noqa: S608 -- constant column lists, values bound  # nosec B608
            yield rule_state_from_row(row)

    def save_rule_states(self, states: list[RuleStateRecord]) -> None:
        if not states:
            return
        with self._db.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO rule_states ({self._STATE_COLUMNS}) "  # noqa: S608 -- constant column lists, values bound  # nosec B608
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (rule, host, labels_key) DO UPDATE SET "
                "severity=excluded.severity, value=excluded.value, "
                "problem_since=excluded.problem_since, call_id=excluded.call_id, "
                "call_severity=excluded.call_severity, changed_at=excluded.changed_at, "
                "detail=excluded.detail, changes=excluded.changes, flapping=excluded.flapping, "
                "peak=excluded.peak, call_flapping=excluded.call_flapping, "
                "silenced=excluded.silenced, absorbed_by=excluded.absorbed_by",
[rule_state_to_row(r) for r in states])

    def delete_check_statuses(self, keys: list[tuple[str, str]]) -> None:
        if keys:
            with self._db.cursor() as cursor:
                cursor.executemany("DELETE FROM check_status WHERE host=%s AND check_name=%s",
                                   keys)

    # -- history for forecasts -------------------------------------------------------------------

    def add_history(self, points: list[HistoryPoint]) -> None:
        if not points:
            return
        self._db.execute(
            "INSERT INTO history SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], "
            "%b::float8[], %b::float8[]) ON CONFLICT (host, name, labels_key, timestamp) "
            "DO UPDATE SET value=excluded.value",
            ([p.host for p in points], [p.name for p in points], [p.labels_key for p in points],
             _floats(p.timestamp for p in points), _floats(p.value for p in points)))

    def load_history(self, since: float) -> Iterator[HistoryPoint]:
        for row in self._db.execute("SELECT host, name, labels_key, timestamp, value "
                                    "FROM history WHERE timestamp >= %s ORDER BY timestamp",
                                    (since,)):
            yield HistoryPoint(*row)

    def prune_history(self, before: float) -> int:
        return self._affected("DELETE FROM history WHERE timestamp < %s", (before,))

    # -- the audit log and the records of service-level reports ---------------------------------

    def add_audit(self, entry: AuditEntry) -> int:
        row = self._db.execute(
            "INSERT INTO audit_log (at, actor, action, target, detail, via) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (entry.at, entry.actor, entry.action, entry.target, entry.detail, entry.via)
        ).fetchone()
        assert row is not None
        return int(row[0])

    def list_audit(self, limit: int) -> list[AuditEntry]:
        """The newest `limit` entries, newest first."""
        rows = self._db.execute("SELECT id, at, actor, action, target, detail, via FROM "
                                "audit_log ORDER BY id DESC LIMIT %s", (limit,))
        return [AuditEntry(*row) for row in rows]

    def add_state_changes(self, changes: list[StateChange]) -> None:
        if changes:
            with self._db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO state_changes (at, host, rule, labels_key, grp, severity) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    [(c.at, c.host, c.rule, c.labels_key, c.group, c.severity) for c in changes])

    def state_changes(self, since: float, until: float) -> list[StateChange]:
        """The changes in [since, until), each series' last one before `since` first (where
        the period starts from), in the order they happened."""
        rows = self._db.execute(
            "SELECT at, host, rule, labels_key, grp, severity, id FROM state_changes "
            "WHERE at >= %s AND at < %s "
            "UNION ALL SELECT s.at, s.host, s.rule, s.labels_key, s.grp, s.severity, s.id "
            "FROM state_changes s JOIN (SELECT MAX(id) AS id FROM state_changes WHERE at < %s "
            "GROUP BY host, rule, labels_key) last ON s.id = last.id "
            "ORDER BY 1, 7", (since, until, since))
        return [StateChange(*row[:6]) for row in rows]

    def add_backup_successes(self, successes: list[BackupSuccess]) -> None:
        if successes:
            with self._db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO backup_successes (host, name, labels_key, succeeded_at) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [(b.host, b.name, b.labels_key, b.succeeded_at) for b in successes])

    def backup_successes(self, since: float, until: float) -> list[BackupSuccess]:
        """Successes in [since, until), and each job's first one before `since` (to tell
        that the job already ran before the period)."""
        rows = self._db.execute(
            "SELECT host, name, labels_key, succeeded_at FROM backup_successes "
            "WHERE succeeded_at >= %s AND succeeded_at < %s "
            "UNION SELECT host, name, labels_key, MIN(succeeded_at) FROM backup_successes "
            "WHERE succeeded_at < %s GROUP BY host, name, labels_key "
            "ORDER BY 1, 2, 3, 4", (since, until, since))
        return [BackupSuccess(*row) for row in rows]

    def calls_opened_between(self, since: float, until: float) -> list[Call]:
        """Calls first opened in [since, until), oldest first."""
        rows = self._db.execute(
            f"SELECT {self._CALL_COLUMNS} FROM calls "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "WHERE opened_at >= %s AND opened_at < %s ORDER BY opened_at, id", (since, until))
        return [self._call(row) for row in rows]

    # -- console sessions ------------------------------------------------------------------------

    def add_session(self, key: str, name: str, expires_at: float) -> None:
        self._db.execute("INSERT INTO console_sessions (key, name, expires_at) "
                         "VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
                         "name=excluded.name, expires_at=excluded.expires_at",
                         (key, name, expires_at))

    def session_live(self, key: str, now: float) -> bool:
        """Whether the session was added, has not ended and has not expired by `now`."""
        return self._db.execute("SELECT 1 FROM console_sessions WHERE key=%s AND "
                                "expires_at > %s", (key, now)).fetchone() is not None

    def end_session(self, key: str) -> bool:
        """Forget a session (signed out); return whether it was there."""
        return self._affected("DELETE FROM console_sessions WHERE key=%s", (key,)) > 0

    def prune_sessions(self, now: float) -> int:
        """Forget the sessions expired by `now`; return how many."""
        return self._affected("DELETE FROM console_sessions WHERE expires_at <= %s", (now,))

    # -- maintenance windows ---------------------------------------------------------------------

    _SILENCE_COLUMNS = ("id, host_pattern, rule_pattern, starts_at, ends_at, reason, "
                        "created_by, created_at, ended_by")

    def add_silence(self, silence: Silence) -> int:
        row = self._db.execute(
            "INSERT INTO silences (host_pattern, rule_pattern, starts_at, ends_at, reason, "
            "created_by, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (silence.host_pattern, silence.rule_pattern, silence.starts_at, silence.ends_at,
             silence.reason, silence.created_by, silence.created_at)).fetchone()
        assert row is not None
        return int(row[0])

    def list_silences(self, ending_after: float | None) -> list[Silence]:
        """Silences that end after the given time (all when None), oldest first."""
        if ending_after is None:
            rows = self._db.execute(
                f"SELECT {self._SILENCE_COLUMNS} FROM silences ORDER BY id")  # noqa: S608 -- constant column lists, values bound  # nosec B608
        else:
            rows = self._db.execute(
                f"SELECT {self._SILENCE_COLUMNS} FROM silences "  # noqa: S608 -- constant column lists, values bound  # nosec B608
                "WHERE ends_at > %s ORDER BY id", (ending_after,))
        return [Silence(*row) for row in rows]

    def end_silence(self, silence_id: int, now: float, by: str) -> Silence | None:
        """End a silence now; return it as it was, or None if it had already ended."""
        row = self._db.execute(
            f"SELECT {self._SILENCE_COLUMNS} FROM silences "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "WHERE id=%s AND ends_at > %s FOR UPDATE", (silence_id, now)).fetchone()
        if row is None:
            return None
        self._db.execute("UPDATE silences SET ends_at=%s, ended_by=%s WHERE id=%s",
                         (max(now, row[3]), by, silence_id))
        return Silence(*row)

    # -- the built-in call register -------------------------------------------------------------

    _CALL_COLUMNS = ("id, fingerprint, host, rule, labels, grp, assign, severity, priority, "
                     "status, summary, description, first_seen, opened_at, updated_at, "
                     "resolved_at, reopened")

    @staticmethod
    def _call(row: tuple[Any, ...]) -> Call:
        return Call(*row)

    def insert_call(self, call: Call) -> int:
        row = self._db.execute(
            "INSERT INTO calls (fingerprint, host, rule, labels, grp, assign, severity, "
            "priority, status, summary, description, first_seen, opened_at, updated_at, "
            "resolved_at, reopened) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s) RETURNING id",
            (call.fingerprint, call.host, call.rule, Jsonb(call.labels), call.group,
             call.assign, call.severity, call.priority, call.status, call.summary,
             call.description, call.first_seen, call.opened_at, call.updated_at,
             call.resolved_at, call.reopened)).fetchone()
        assert row is not None
        return int(row[0])

    def update_call(self, call: Call) -> None:
        self._db.execute(
            "UPDATE calls SET severity=%s, priority=%s, status=%s, summary=%s, description=%s, "
            "updated_at=%s, resolved_at=%s, reopened=%s WHERE id=%s",
            (call.severity, call.priority, call.status, call.summary, call.description,
             call.updated_at, call.resolved_at, call.reopened, call.id))

    def add_call_event(self, event: CallEvent) -> None:
        self._db.execute("INSERT INTO call_events (call_id, at, kind, text) "
                         "VALUES (%s, %s, %s, %s)",
                         (event.call_id, event.at, event.kind, event.text))

    def get_call(self, call_id: int) -> Call | None:
        row = self._db.execute(f"SELECT {self._CALL_COLUMNS} FROM calls "  # noqa: S608 -- constant column lists, values bound  # nosec B608
                               "WHERE id=%s", (call_id,)).fetchone()
        return self._call(row) if row else None

    def find_open_call(self, fingerprint: str) -> Call | None:
        row = self._db.execute(
            f"SELECT {self._CALL_COLUMNS} FROM calls "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "WHERE fingerprint=%s AND status='open'", (fingerprint,)).fetchone()
        return self._call(row) if row else None

    def find_resolved_call(self, fingerprint: str, since: float) -> Call | None:
        row = self._db.execute(
            f"SELECT {self._CALL_COLUMNS} FROM calls "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "WHERE fingerprint=%s AND status='resolved' AND resolved_at >= %s "
            "AND NOT closed_by_desk ORDER BY resolved_at DESC LIMIT 1",
            (fingerprint, since)).fetchone()
        return self._call(row) if row else None

    def list_calls(self, status: CallStatus | None, group: str | None, limit: int) -> list[Call]:
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            where.append("status=%s")
            args.append(status)
        if group is not None:
            where.append("grp=%s")
            args.append(group)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(
            f"SELECT {self._CALL_COLUMNS} FROM calls {clause} "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "ORDER BY id DESC LIMIT %s", (*args, limit))
        return [self._call(row) for row in rows]

    def call_events(self, call_id: int) -> list[CallEvent]:
        rows = self._db.execute("SELECT call_id, at, kind, text FROM call_events "
                                "WHERE call_id=%s ORDER BY at, id", (call_id,))
        return [CallEvent(*row) for row in rows]

    def last_call_event(self, call_id: int) -> CallEvent | None:
        row = self._db.execute("SELECT call_id, at, kind, text FROM call_events "
                               "WHERE call_id=%s ORDER BY at DESC, id DESC LIMIT 1",
                               (call_id,)).fetchone()
        return CallEvent(*row) if row else None

    def open_calls_by_group(self) -> dict[str, int]:
        rows = self._db.execute("SELECT grp, count(*) FROM calls WHERE status='open' "
                                "GROUP BY grp")
        return {group: int(count) for group, count in rows}

    def retire_call(self, call_id: int, now: float) -> None:
        self._db.execute("UPDATE calls SET status='resolved', resolved_at=%s, updated_at=%s, "
                         "closed_by_desk=TRUE WHERE id=%s", (now, now, call_id))

    def put_storm_member(self, umbrella_id: int, fingerprint: str, summary: str) -> None:
        self._db.execute("INSERT INTO storm_members VALUES (%s, %s, %s) ON CONFLICT "
                         "(umbrella_id, fingerprint) DO UPDATE SET summary=excluded.summary",
                         (umbrella_id, fingerprint, summary))

    def drop_storm_member(self, umbrella_id: int, fingerprint: str) -> None:
        self._db.execute("DELETE FROM storm_members WHERE umbrella_id=%s AND fingerprint=%s",
                         (umbrella_id, fingerprint))

    def storm_members(self, umbrella_id: int) -> list[tuple[str, str]]:
        rows = self._db.execute("SELECT fingerprint, summary FROM storm_members "
                                "WHERE umbrella_id=%s ORDER BY summary", (umbrella_id,))
        return [(fp, text) for fp, text in rows]

    # -- the outbox ------------------------------------------------------------------------------

    _OP_COLUMNS = ("id, call_id, sink, op, payload, created_at, attempts, next_attempt_at, "
                   "status, last_error, delivered_at")

    @staticmethod
    def _op(row: tuple[Any, ...]) -> OutboxOp:
        return OutboxOp(*row)

    def enqueue(self, op: OutboxOp) -> int:
        row = self._db.execute(
            "INSERT INTO outbox (call_id, sink, op, payload, created_at, next_attempt_at, "
            "status) VALUES (%s, %s, %s, %s, %s, %s, 'pending') RETURNING id",
            (op.call_id, op.sink, op.op, Jsonb(op.payload), op.created_at,
             op.created_at)).fetchone()
        assert row is not None
        return int(row[0])

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
            "AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.call_id = o.call_id "
            "AND e.sink = o.sink AND e.id < o.id AND e.status IN ('pending', 'dead')) "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) "
            f"RETURNING {self._OP_COLUMNS}",
            (self.owner, now + self._lease_seconds, now, now, self.owner, limit)).fetchall()
        return sorted((self._op(row) for row in rows), key=lambda op: op.id)

    def has_undelivered(self, call_id: int, sink: str) -> bool:
        row = self._db.execute("SELECT 1 FROM outbox WHERE call_id=%s AND sink=%s "
                               "AND status IN ('pending', 'dead') LIMIT 1",
                               (call_id, sink)).fetchone()
        return row is not None

    def next_due_at(self) -> float | None:
        row = self._db.execute("SELECT min(greatest(next_attempt_at, coalesce(lease_until, 0))) "
                               "FROM outbox WHERE status = 'pending'").fetchone()
        return row[0] if row else None

    def mark_done(self, op_id: int, now: float) -> None:
        self._db.execute("UPDATE outbox SET status='done', delivered_at=%s, "
                         "attempts=attempts+1, last_error=NULL, lease_owner=NULL, "
                         "lease_until=NULL WHERE id=%s", (now, op_id))

    def mark_retry(self, op_id: int, next_attempt_at: float, error: str) -> None:
        self._db.execute("UPDATE outbox SET attempts=attempts+1, next_attempt_at=%s, "
                         "last_error=%s, lease_owner=NULL, lease_until=NULL WHERE id=%s",
                         (next_attempt_at, error, op_id))

    def mark_dead(self, op_id: int, error: str) -> None:
        self._db.execute("UPDATE outbox SET status='dead', attempts=attempts+1, last_error=%s, "
                         "lease_owner=NULL, lease_until=NULL WHERE id=%s", (error, op_id))

    def list_ops(self, status: str | None, limit: int) -> list[OutboxOp]:
        where, args = ("WHERE status=%s", [status]) if status else ("", [])
        rows = self._db.execute(
            f"SELECT {self._OP_COLUMNS} FROM outbox {where} "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "ORDER BY id DESC LIMIT %s", (*args, limit))
        return [self._op(row) for row in rows]

    def retry_dead(self, op_id: int | None, now: float) -> int:
        if op_id is None:
            return self._affected("UPDATE outbox SET status='pending', next_attempt_at=%s "
                                  "WHERE status='dead'", (now,))
        return self._affected("UPDATE outbox SET status='pending', next_attempt_at=%s "
                              "WHERE status='dead' AND id=%s", (now, op_id))

    def discard_dead(self, op_id: int, now: float) -> int:
        return self._affected(
            "UPDATE outbox SET status='done', delivered_at=%s, last_error='discarded by an "
            "operator: ' || coalesce(last_error, '') WHERE status='dead' AND id=%s",
            (now, op_id))

    def outbox_counts(self) -> dict[tuple[str, str], int]:
        rows = self._db.execute("SELECT sink, status, count(*) FROM outbox "
                                "WHERE status IN ('pending', 'dead') GROUP BY sink, status")
        return {(sink, status): int(count) for sink, status, count in rows}

    def outbox_oldest_pending(self) -> dict[str, float]:
        """sink -> when its oldest pending operation was written (Unix time)."""
        rows = self._db.execute("SELECT sink, min(created_at) FROM outbox "
                                "WHERE status = 'pending' GROUP BY sink")
        return {sink: float(created_at) for sink, created_at in rows}

    _LINK_COLUMNS = ("call_id, sink, remote_id, url, remote_state, checked_at, acknowledged_at, "
                     "escalated_at, desk_closed_at")

    def get_link(self, call_id: int, sink: str) -> CallLink | None:
        row = self._db.execute(f"SELECT {self._LINK_COLUMNS} FROM call_links "  # noqa: S608 -- constant column lists, values bound  # nosec B608
                               "WHERE call_id=%s AND sink=%s", (call_id, sink)).fetchone()
        return CallLink(*row) if row else None

    def save_link(self, link: CallLink) -> None:
        self._db.execute(
            f"INSERT INTO call_links ({self._LINK_COLUMNS}) "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (call_id, sink) DO UPDATE "
            "SET remote_id=excluded.remote_id, url=excluded.url, "
            "remote_state=excluded.remote_state, checked_at=excluded.checked_at, "
            "acknowledged_at=excluded.acknowledged_at, escalated_at=excluded.escalated_at, "
            "desk_closed_at=excluded.desk_closed_at",
            (link.call_id, link.sink, link.remote_id, link.url, link.remote_state,
             link.checked_at, link.acknowledged_at, link.escalated_at, link.desk_closed_at))

    def open_links(self) -> list[CallLink]:
        rows = self._db.execute(
            "SELECT l.call_id, l.sink, l.remote_id, l.url, l.remote_state, l.checked_at, "
            "l.acknowledged_at, l.escalated_at, l.desk_closed_at FROM call_links l "
            "JOIN calls c ON c.id = l.call_id WHERE c.status = 'open'")
        return [CallLink(*row) for row in rows]


def _floats(values: Iterable[float | None]) -> list[float | None]:
    """Values for a binary float8[] parameter: psycopg refuses a list that mixes int and
    float, and a check's interval or a measurement may come as an int."""
    return [None if value is None else float(value) for value in values]
