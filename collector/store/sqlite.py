"""The embedded store: one SQLite file in WAL mode, owned by one collector process."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from checks.filemodes import create_private_file, make_private_dir
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

SCHEMA = """
CREATE TABLE IF NOT EXISTS hosts (
    host TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_report_at REAL NOT NULL,
    interval_seconds REAL NOT NULL,
    agent_version TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    last_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    host TEXT NOT NULL,
    name TEXT NOT NULL,
    labels_key TEXT NOT NULL,
    check_name TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    timestamp REAL NOT NULL,
    PRIMARY KEY (host, name, labels_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS check_status (
    host TEXT NOT NULL,
    check_name TEXT NOT NULL,
    type TEXT NOT NULL,
    interval_seconds REAL NOT NULL,
    last_run_at REAL NOT NULL,
    duration_seconds REAL NOT NULL,
    error_kind TEXT,
    error TEXT,
    output TEXT,
    PRIMARY KEY (host, check_name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rule_states (
    rule TEXT NOT NULL,
    host TEXT NOT NULL,
    labels_key TEXT NOT NULL,
    severity INTEGER NOT NULL,
    value REAL,
    problem_since REAL,
    call_id INTEGER,
    call_severity INTEGER NOT NULL,
    changed_at REAL NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (rule, host, labels_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    host TEXT NOT NULL,
    rule TEXT NOT NULL,
    labels TEXT NOT NULL,
    grp TEXT NOT NULL,
    assign TEXT NOT NULL,
    severity TEXT NOT NULL,
    priority TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    summary TEXT NOT NULL,
    description TEXT NOT NULL,
    first_seen REAL NOT NULL,
    opened_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    resolved_at REAL,
    reopened INTEGER NOT NULL DEFAULT 0,
    closed_by_desk INTEGER NOT NULL DEFAULT 0   -- never reopened: a new call follows it
);
-- The register's promise: never more than one open call per incident key.
CREATE UNIQUE INDEX IF NOT EXISTS calls_one_open ON calls (fingerprint) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS calls_by_fingerprint ON calls (fingerprint, resolved_at);
CREATE TABLE IF NOT EXISTS call_events (
    call_id INTEGER NOT NULL REFERENCES calls (id),
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_events_by_call ON call_events (call_id, at);
-- The durable outbox: call operations for external help desks, written in the same
-- transaction as the change that caused them, delivered in order per call.
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id INTEGER NOT NULL REFERENCES calls (id),
    sink TEXT NOT NULL,
    op TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'dead')),
    last_error TEXT,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_by_call ON outbox (call_id, status, id);
-- Problems held back by storm control, listed on their group's umbrella call.
CREATE TABLE IF NOT EXISTS storm_members (
    umbrella_id INTEGER NOT NULL REFERENCES calls (id),
    fingerprint TEXT NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (umbrella_id, fingerprint)
) WITHOUT ROWID;
-- Where each call lives in its help desk.
CREATE TABLE IF NOT EXISTS call_links (
    call_id INTEGER NOT NULL REFERENCES calls (id),
    sink TEXT NOT NULL,
    remote_id TEXT NOT NULL,
    url TEXT,
    remote_state TEXT,
    checked_at REAL,
    acknowledged_at REAL,
    escalated_at REAL,
    desk_closed_at REAL,        -- closed by the help desk while the problem persisted
    PRIMARY KEY (call_id, sink)
) WITHOUT ROWID;
"""

# Each step brings a store of the previous version up to the next; a new store runs them all.
# Keep the SQL plain, so the PostgreSQL backend can follow step by step.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        # Agent labels, for host groups.
        "ALTER TABLE hosts ADD COLUMN labels TEXT NOT NULL DEFAULT '{}'",
        # Flapping, maintenance and dependencies, as the rule state machine tracks them.
        "ALTER TABLE rule_states ADD COLUMN changes TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE rule_states ADD COLUMN flapping INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE rule_states ADD COLUMN peak INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE rule_states ADD COLUMN call_flapping INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE rule_states ADD COLUMN silenced INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE rule_states ADD COLUMN absorbed_by INTEGER",
        """CREATE TABLE silences (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            host_pattern TEXT NOT NULL,
            rule_pattern TEXT NOT NULL,
            starts_at REAL NOT NULL,
            ends_at REAL NOT NULL,
            reason TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at REAL NOT NULL,
            ended_by TEXT
        )""",
        "CREATE INDEX silences_by_end ON silences (ends_at)",
        # Downsampled series for forecasts: one point per series per resolution step.
        """CREATE TABLE history (
            host TEXT NOT NULL,
            name TEXT NOT NULL,
            labels_key TEXT NOT NULL,
            timestamp REAL NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY (host, name, labels_key, timestamp)
        )""",
        "CREATE INDEX history_by_time ON history (timestamp)",
    ),
    3: (
        # Service-level reports and the console: who changed what, when rules changed
        # severity, and each successful backup the agents reported.
        """CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            via TEXT NOT NULL
        )""",
        """CREATE TABLE state_changes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            host TEXT NOT NULL,
            rule TEXT NOT NULL,
            labels_key TEXT NOT NULL,
            grp TEXT NOT NULL,
            severity INTEGER NOT NULL
        )""",
        "CREATE INDEX state_changes_by_time ON state_changes (at)",
        "CREATE INDEX state_changes_by_series ON state_changes (host, rule, labels_key, id)",
        """CREATE TABLE backup_successes (
            host TEXT NOT NULL,
            name TEXT NOT NULL,
            labels_key TEXT NOT NULL,
            succeeded_at REAL NOT NULL,
            PRIMARY KEY (host, name, labels_key, succeeded_at)
        )""",
        "CREATE INDEX calls_by_opened ON calls (opened_at)",
    ),
    4: (
        # Console sessions not signed out yet (signing out deletes the row).
        """CREATE TABLE console_sessions (
            key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)


class SQLiteStore:
    """Store backed by SQLite (WAL). Use from one thread; the collector core is single-threaded."""

    shared = False

    def __init__(self, path: Path, timings: StoreTimings | None = None, *,
                 checkpoint_in_background: bool = False, max_bytes: int | None = None) -> None:
        self._timings = timings or StoreTimings()
        make_private_dir(path.parent)
        # Made 0600 before SQLite opens it: SQLite would make it 0644 (less the umask), and
        # gives its -wal and -shm files the store's own mode.
        create_private_file(path)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._checkpointer: _Checkpointer | None = None
        if checkpoint_in_background:
            # SQLite checkpoints the WAL inside whichever commit crosses 1,000 pages: that
            # commit copies the pages and syncs the file while every queued report waits.
            # A thread with its own connection does it instead (see _Checkpointer).
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = _Checkpointer(path)
            self._checkpointer.start()
        # NORMAL in WAL mode: a power cut can lose the last commits, never corrupt the file.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path} was written by a newer runwatch (schema {version}); "
                               "upgrade runwatch or point data_dir elsewhere")
        self._db.executescript(SCHEMA)  # version 1, where it is missing
        for target in sorted(MIGRATIONS):
            if version < target:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in MIGRATIONS[target]:
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={target}")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        if max_bytes is not None:
            # A write that would grow the file past it fails with "database or disk is full",
            # as a full disk does (SQLite keeps the limit at least at the current size).
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
            self._db.execute(f"PRAGMA max_page_count={max(1, max_bytes // page_size)}")
        self._depth = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:  # nested: part of the outer transaction
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        started = time.perf_counter()
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
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

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._db.close()

    # -- coordination: one process owns the file, so there is nothing to coordinate -----------

    def lock_host(self, host: str) -> tuple[HostRecord, int] | None:
        """The host's row; BEGIN IMMEDIATE already keeps everyone else out."""
        row = self._db.execute("SELECT host, first_seen, last_report_at, interval_seconds, "
                               "agent_version, boot_id, last_seq, labels FROM hosts WHERE host=?",
                               (host,)).fetchone()
        if row is None:
            return None
        name, first, last, interval, version, boot, seq, labels = row
        return HostRecord(name, first, last, interval, version, boot, seq, json.loads(labels)), 0

    def lock_hosts(self, hosts: Sequence[str]) -> dict[str, tuple[HostRecord, int]]:
        return {host: locked for host in hosts if (locked := self.lock_host(host)) is not None}

    def bump_host_version(self, host: str) -> int:
        return 0  # one writer: its view is always current

    def bump_host_versions(self, hosts: Sequence[str]) -> dict[str, int]:
        return dict.fromkeys(hosts, 0)

    def host_versions(self) -> dict[str, int]:
        return {}

    def load_host_snapshot(self, host: str) -> HostSnapshot:
        locked = self.lock_host(host)
        return HostSnapshot(
            record=locked[0] if locked else None, version=0,
            series=[s for s in self._series_where("WHERE host=?", (host,))],
            statuses=[CheckStatus(*row) for row in self._db.execute(
                "SELECT host, check_name, type, interval_seconds, last_run_at, "
                "duration_seconds, error_kind, error, output FROM check_status WHERE host=?",
                (host,))],
            states=[r for r in self.load_rule_states() if r.host == host])

    def try_lead(self, job: str) -> bool:
        return True

    def hosts_to_tick(self, now: float, after_intervals: float, stale_rule: str) -> list[str]:
        return []  # not shared: the collector's own view is complete

    # -- what the agents reported -------------------------------------------------------------

    def load_hosts(self) -> Iterator[HostRecord]:
        for host, first, last, interval, version, boot, seq, labels in self._db.execute(
                "SELECT host, first_seen, last_report_at, interval_seconds, agent_version, "
                "boot_id, last_seq, labels FROM hosts"):
            yield HostRecord(host, first, last, interval, version, boot, seq, json.loads(labels))

    def save_host(self, host: HostRecord) -> None:
        self.save_hosts([host])

    def save_hosts(self, hosts: list[HostRecord]) -> None:
        self._db.executemany(
            "INSERT INTO hosts (host, first_seen, last_report_at, interval_seconds, "
            "agent_version, boot_id, last_seq, labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (host) DO UPDATE SET "
            "last_report_at=excluded.last_report_at, interval_seconds=excluded.interval_seconds, "
            "agent_version=excluded.agent_version, boot_id=excluded.boot_id, "
            "last_seq=excluded.last_seq, labels=excluded.labels",
            [(host.host, host.first_seen, host.last_report_at, host.interval_seconds,
              host.agent_version, host.boot_id, host.last_seq,
              json.dumps(host.labels, sort_keys=True)) for host in hosts])

    def load_series(self) -> Iterator[SeriesRecord]:
        return self._series_where("", ())

    def _series_where(self, clause: str, args: tuple[Any, ...]) -> Iterator[SeriesRecord]:
        for host, name, key, check, value, unit, ts in self._db.execute(
                "SELECT host, name, labels_key, check_name, value, unit, timestamp "  # noqa: S608 -- constant column lists, values bound  # nosec B608
                f"FROM series {clause}", args):
            yield SeriesRecord(host, name, key, json.loads(key), check, value, unit, ts)

    def save_series(self, series: list[SeriesRecord]) -> None:
        self._db.executemany(
            "INSERT INTO series VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host, name, labels_key) "
            "DO UPDATE SET check_name=excluded.check_name, value=excluded.value, "
            "unit=excluded.unit, timestamp=excluded.timestamp",
            [(s.host, s.name, s.labels_key, s.check, s.value, s.unit, s.timestamp)
             for s in series])

    def delete_series(self, keys: list[tuple[str, str, str]]) -> None:
        self._db.executemany("DELETE FROM series WHERE host=? AND name=? AND labels_key=?", keys)

    def load_check_statuses(self) -> Iterator[CheckStatus]:
        for row in self._db.execute("SELECT host, check_name, type, interval_seconds, "
                                    "last_run_at, duration_seconds, error_kind, error, output "
                                    "FROM check_status"):
            yield CheckStatus(*row)

    def save_check_statuses(self, statuses: list[CheckStatus]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO check_status VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(s.host, s.check, s.type, s.interval_seconds, s.last_run_at, s.duration_seconds,
              s.error_kind, s.error, s.output) for s in statuses])

    def delete_check_statuses(self, keys: list[tuple[str, str]]) -> None:
        self._db.executemany("DELETE FROM check_status WHERE host=? AND check_name=?", keys)

    # -- history for forecasts ------------------------------------------------------------------

    def add_history(self, points: list[HistoryPoint]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO history (host, name, labels_key, timestamp, value) "
            "VALUES (?, ?, ?, ?, ?)",
            [(p.host, p.name, p.labels_key, p.timestamp, p.value) for p in points])

    def load_history(self, since: float) -> Iterator[HistoryPoint]:
        for row in self._db.execute("SELECT host, name, labels_key, timestamp, value "
                                    "FROM history WHERE timestamp >= ? ORDER BY timestamp",
                                    (since,)):
            yield HistoryPoint(*row)

    def prune_history(self, before: float) -> int:
        return self._db.execute("DELETE FROM history WHERE timestamp < ?", (before,)).rowcount

    # -- the audit log and the records of service-level reports ---------------------------------

    def add_audit(self, entry: AuditEntry) -> int:
        row = self._db.execute(
            "INSERT INTO audit_log (at, actor, action, target, detail, via) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (entry.at, entry.actor, entry.action, entry.target, entry.detail, entry.via)
        ).fetchone()
        assert row is not None
        return int(row[0])

    def list_audit(self, limit: int) -> list[AuditEntry]:
        """The newest `limit` entries, newest first."""
        rows = self._db.execute("SELECT id, at, actor, action, target, detail, via FROM "
                                "audit_log ORDER BY id DESC LIMIT ?", (limit,))
        return [AuditEntry(*row) for row in rows]

    def add_state_changes(self, changes: list[StateChange]) -> None:
        if changes:
            self._db.executemany(
                "INSERT INTO state_changes (at, host, rule, labels_key, grp, severity) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(c.at, c.host, c.rule, c.labels_key, c.group, c.severity) for c in changes])

    def state_changes(self, since: float, until: float) -> list[StateChange]:
        """The changes in [since, until), each series' last one before `since` first (where
        the period starts from), in the order they happened."""
        rows = self._db.execute(
            "SELECT at, host, rule, labels_key, grp, severity, id FROM state_changes "
            "WHERE at >= ? AND at < ? "
            "UNION ALL SELECT s.at, s.host, s.rule, s.labels_key, s.grp, s.severity, s.id "
            "FROM state_changes s JOIN (SELECT MAX(id) AS id FROM state_changes WHERE at < ? "
            "GROUP BY host, rule, labels_key) last ON s.id = last.id "
            "ORDER BY 1, 7", (since, until, since))
        return [StateChange(*row[:6]) for row in rows]

    def add_backup_successes(self, successes: list[BackupSuccess]) -> None:
        if successes:
            self._db.executemany(
                "INSERT INTO backup_successes (host, name, labels_key, succeeded_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(b.host, b.name, b.labels_key, b.succeeded_at) for b in successes])

    def backup_successes(self, since: float, until: float) -> list[BackupSuccess]:
        """Successes in [since, until), and each job's first one before `since` (to tell
        that the job already ran before the period)."""
        rows = self._db.execute(
            "SELECT host, name, labels_key, succeeded_at FROM backup_successes "
            "WHERE succeeded_at >= ? AND succeeded_at < ? "
            "UNION SELECT host, name, labels_key, MIN(succeeded_at) FROM backup_successes "
            "WHERE succeeded_at < ? GROUP BY host, name, labels_key "
            "ORDER BY 1, 2, 3, 4", (since, until, since))
        return [BackupSuccess(*row) for row in rows]

    def calls_opened_between(self, since: float, until: float) -> list[Call]:
        """Calls first opened in [since, until), oldest first."""
        rows = self._db.execute(
            f"SELECT {self._CALL_COLUMNS} FROM calls "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "WHERE opened_at >= ? AND opened_at < ? ORDER BY opened_at, id", (since, until))
        return [self._call(row) for row in rows]

    # -- maintenance windows --------------------------------------------------------------------

    _SILENCE_COLUMNS = ("id, host_pattern, rule_pattern, starts_at, ends_at, reason, "
                        "created_by, created_at, ended_by")

    def add_silence(self, silence: Silence) -> int:
        cursor = self._db.execute(
            "INSERT INTO silences (host_pattern, rule_pattern, starts_at, ends_at, reason, "
            "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (silence.host_pattern, silence.rule_pattern, silence.starts_at, silence.ends_at,
             silence.reason, silence.created_by, silence.created_at))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def list_silences(self, ending_after: float | None) -> list[Silence]:
        """Silences that end after the given time (all when None), oldest first."""
        where, args = ("WHERE ends_at > ?", (ending_after,)) if ending_after is not None \
            else ("", ())
        rows = self._db.execute(
            f"SELECT {self._SILENCE_COLUMNS} FROM silences {where} ORDER BY id", args)  # noqa: S608 -- constant column lists, values bound  # nosec B608
        return [Silence(*row) for row in rows]

    def end_silence(self, silence_id: int, now: float, by: str) -> Silence | None:
        """End a silence now; return it as it was, or None if it had already ended."""
        row = self._db.execute(
            f"SELECT {self._SILENCE_COLUMNS} FROM silences "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "WHERE id=? AND ends_at > ?", (silence_id, now)).fetchone()
        if row is None:
            return None
        self._db.execute("UPDATE silences SET ends_at=?, ended_by=? WHERE id=?",
                         (max(now, row[3]), by, silence_id))
        return Silence(*row)

    # -- console sessions ------------------------------------------------------------------------

    def add_session(self, key: str, name: str, expires_at: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO console_sessions VALUES (?, ?, ?)",
                         (key, name, expires_at))

    def session_live(self, key: str, now: float) -> bool:
        """Whether the session was added, has not ended and has not expired by `now`."""
        return self._db.execute("SELECT 1 FROM console_sessions WHERE key=? AND expires_at > ?",
                                (key, now)).fetchone() is not None

    def end_session(self, key: str) -> bool:
        """Forget a session (signed out); return whether it was there."""
        return self._db.execute("DELETE FROM console_sessions WHERE key=?", (key,)).rowcount > 0

    def prune_sessions(self, now: float) -> int:
        """Forget the sessions expired by `now`; return how many."""
        return self._db.execute("DELETE FROM console_sessions WHERE expires_at <= ?",
                                (now,)).rowcount

    # -- rule states ----------------------------------------------------------------------------

    _STATE_COLUMNS = STATE_COLUMNS

    def load_rule_states(self) -> Iterator[RuleStateRecord]:
        for row in self._db.execute(
                f"SELECT {self._STATE_COLUMNS} FROM rule_states"):  # noqa: S608 -- constant column lists, values bound  # nosec B608
            yield rule_state_from_row(row)

    def save_rule_states(self, states: list[RuleStateRecord]) -> None:
        self._db.executemany(
            f"INSERT OR REPLACE INTO rule_states ({self._STATE_COLUMNS}) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [rule_state_to_row(r) for r in states])

    # -- the built-in call register -------------------------------------------------------------

    _CALL_COLUMNS = ("id, fingerprint, host, rule, labels, grp, assign, severity, priority, "
                     "status, summary, description, first_seen, opened_at, updated_at, "
                     "resolved_at, reopened")

    @staticmethod
    def _call(row: tuple[Any, ...]) -> Call:
        values = list(row)
        values[4] = json.loads(values[4])
        return Call(*values)

    def insert_call(self, call: Call) -> int:
        cursor = self._db.execute(
            "INSERT INTO calls (fingerprint, host, rule, labels, grp, assign, severity, priority, "
            "status, summary, description, first_seen, opened_at, updated_at, resolved_at, "
            "reopened) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (call.fingerprint, call.host, call.rule, json.dumps(call.labels, sort_keys=True),
             call.group, call.assign, call.severity, call.priority, call.status, call.summary,
             call.description, call.first_seen, call.opened_at, call.updated_at,
             call.resolved_at, call.reopened))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def update_call(self, call: Call) -> None:
        self._db.execute(
            "UPDATE calls SET severity=?, priority=?, status=?, summary=?, description=?, "
            "updated_at=?, resolved_at=?, reopened=? WHERE id=?",
            (call.severity, call.priority, call.status, call.summary, call.description,
             call.updated_at, call.resolved_at, call.reopened, call.id))

    def add_call_event(self, event: CallEvent) -> None:
        self._db.execute("INSERT INTO call_events VALUES (?, ?, ?, ?)",
                         (event.call_id, event.at, event.kind, event.text))

    def get_call(self, call_id: int) -> Call | None:
        row = self._db.execute(f"SELECT {self._CALL_COLUMNS} FROM calls WHERE id=?",  # noqa: S608 -- constant column lists, values bound  # nosec B608
                               (call_id,)).fetchone()
        return self._call(row) if row else None

    def find_open_call(self, fingerprint: str) -> Call | None:
        row = self._db.execute(
            f"SELECT {self._CALL_COLUMNS} FROM calls "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "WHERE fingerprint=? AND status='open'", (fingerprint,)).fetchone()
        return self._call(row) if row else None

    def find_resolved_call(self, fingerprint: str, since: float) -> Call | None:
        row = self._db.execute(
            f"SELECT {self._CALL_COLUMNS} FROM calls "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "WHERE fingerprint=? AND status='resolved' AND resolved_at >= ? "
            "AND closed_by_desk = 0 "
            "ORDER BY resolved_at DESC LIMIT 1", (fingerprint, since)).fetchone()
        return self._call(row) if row else None

    def list_calls(self, status: CallStatus | None, group: str | None, limit: int) -> list[Call]:
        where: list[str] = []
        args: list[str] = []
        if status is not None:
            where.append("status=?")
            args.append(status)
        if group is not None:
            where.append("grp=?")
            args.append(group)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(
            f"SELECT {self._CALL_COLUMNS} FROM calls {clause} "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "ORDER BY id DESC LIMIT ?", (*args, limit))
        return [self._call(row) for row in rows]

    def call_events(self, call_id: int) -> list[CallEvent]:
        rows = self._db.execute("SELECT call_id, at, kind, text FROM call_events "
                                "WHERE call_id=? ORDER BY at, rowid", (call_id,))
        return [CallEvent(*row) for row in rows]

    # -- the outbox ----------------------------------------------------------------------------

    def enqueue(self, op: OutboxOp) -> int:
        cursor = self._db.execute(
            "INSERT INTO outbox (call_id, sink, op, payload, created_at, next_attempt_at, "
            "status) VALUES (?, ?, ?, ?, ?, ?, 'pending')",
            (op.call_id, op.sink, op.op, json.dumps(op.payload), op.created_at, op.created_at))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    _OP_COLUMNS = ("id, call_id, sink, op, payload, created_at, attempts, next_attempt_at, "
                   "status, last_error, delivered_at")

    @staticmethod
    def _op(row: tuple[Any, ...]) -> OutboxOp:
        values = list(row)
        values[4] = json.loads(values[4])
        return OutboxOp(*values)

    def due_ops(self, now: float, limit: int) -> list[OutboxOp]:
        """Pending operations that are due and first in line for their call."""
        rows = self._db.execute(
            f"SELECT {self._OP_COLUMNS} FROM outbox o WHERE status = 'pending' "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "AND next_attempt_at <= ? AND NOT EXISTS (SELECT 1 FROM outbox e WHERE "
            "e.call_id = o.call_id AND e.sink = o.sink AND e.id < o.id "
            "AND e.status IN ('pending', 'dead')) ORDER BY id LIMIT ?", (now, limit))
        return [self._op(row) for row in rows]

    def has_undelivered(self, call_id: int, sink: str) -> bool:
        row = self._db.execute("SELECT 1 FROM outbox WHERE call_id=? AND sink=? "
                               "AND status IN ('pending', 'dead') LIMIT 1",
                               (call_id, sink)).fetchone()
        return row is not None

    def next_due_at(self) -> float | None:
        row = self._db.execute("SELECT min(next_attempt_at) FROM outbox "
                               "WHERE status = 'pending'").fetchone()
        return row[0] if row else None

    def mark_done(self, op_id: int, now: float) -> None:
        self._db.execute("UPDATE outbox SET status='done', delivered_at=?, attempts=attempts+1, "
                         "last_error=NULL WHERE id=?", (now, op_id))

    def mark_retry(self, op_id: int, next_attempt_at: float, error: str) -> None:
        self._db.execute("UPDATE outbox SET attempts=attempts+1, next_attempt_at=?, "
                         "last_error=? WHERE id=?", (next_attempt_at, error, op_id))

    def mark_dead(self, op_id: int, error: str) -> None:
        self._db.execute("UPDATE outbox SET status='dead', attempts=attempts+1, last_error=? "
                         "WHERE id=?", (error, op_id))

    def list_ops(self, status: str | None, limit: int) -> list[OutboxOp]:
        where, args = ("WHERE status=?", [status]) if status else ("", [])
        rows = self._db.execute(
            f"SELECT {self._OP_COLUMNS} FROM outbox {where} "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "ORDER BY id DESC LIMIT ?", (*args, limit))
        return [self._op(row) for row in rows]

    def retry_dead(self, op_id: int | None, now: float) -> int:
        """Put dead letters (one, or all) back in line; return how many."""
        if op_id is None:
            cursor = self._db.execute("UPDATE outbox SET status='pending', next_attempt_at=? "
                                      "WHERE status='dead'", (now,))
        else:
            cursor = self._db.execute("UPDATE outbox SET status='pending', next_attempt_at=? "
                                      "WHERE status='dead' AND id=?", (now, op_id))
        return cursor.rowcount

    def discard_dead(self, op_id: int, now: float) -> int:
        """Give up on one dead letter, so the call's later operations can go; return 0 or 1."""
        cursor = self._db.execute(
            "UPDATE outbox SET status='done', delivered_at=?, last_error='discarded by an "
            "operator: ' || coalesce(last_error, '') WHERE status='dead' AND id=?", (now, op_id))
        return cursor.rowcount

    def outbox_counts(self) -> dict[tuple[str, str], int]:
        """(sink, status) -> count, for pending and dead operations."""
        rows = self._db.execute("SELECT sink, status, count(*) FROM outbox "
                                "WHERE status IN ('pending', 'dead') GROUP BY sink, status")
        return {(sink, status): count for sink, status, count in rows}

    def outbox_oldest_pending(self) -> dict[str, float]:
        """sink -> when its oldest pending operation was written (Unix time)."""
        rows = self._db.execute("SELECT sink, min(created_at) FROM outbox "
                                "WHERE status = 'pending' GROUP BY sink")
        return {sink: created_at for sink, created_at in rows}

    def get_link(self, call_id: int, sink: str) -> CallLink | None:
        row = self._db.execute("SELECT call_id, sink, remote_id, url, remote_state, checked_at, "
                               "acknowledged_at, escalated_at, desk_closed_at FROM call_links "
                               "WHERE call_id=? AND sink=?", (call_id, sink)).fetchone()
        return CallLink(*row) if row else None

    def save_link(self, link: CallLink) -> None:
        self._db.execute("INSERT OR REPLACE INTO call_links VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (link.call_id, link.sink, link.remote_id, link.url, link.remote_state,
                          link.checked_at, link.acknowledged_at, link.escalated_at,
                          link.desk_closed_at))

    def open_links(self) -> list[CallLink]:
        """Links of calls that are open here: the ones two-way sync watches."""
        rows = self._db.execute(
            "SELECT l.call_id, l.sink, l.remote_id, l.url, l.remote_state, l.checked_at, "
            "l.acknowledged_at, l.escalated_at, l.desk_closed_at FROM call_links l "
            "JOIN calls c ON c.id = l.call_id WHERE c.status = 'open'")
        return [CallLink(*row) for row in rows]

    def put_storm_member(self, umbrella_id: int, fingerprint: str, summary: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO storm_members VALUES (?, ?, ?)",
                         (umbrella_id, fingerprint, summary))

    def drop_storm_member(self, umbrella_id: int, fingerprint: str) -> None:
        self._db.execute("DELETE FROM storm_members WHERE umbrella_id=? AND fingerprint=?",
                         (umbrella_id, fingerprint))

    def storm_members(self, umbrella_id: int) -> list[tuple[str, str]]:
        """(fingerprint, summary) of the problems an umbrella call lists."""
        rows = self._db.execute("SELECT fingerprint, summary FROM storm_members "
                                "WHERE umbrella_id=? ORDER BY summary", (umbrella_id,))
        return [(fp, text) for fp, text in rows]

    def retire_call(self, call_id: int, now: float) -> None:
        """Resolve a call the help desk closed, for good: it is never reopened."""
        self._db.execute("UPDATE calls SET status='resolved', resolved_at=?, updated_at=?, "
                         "closed_by_desk=1 WHERE id=?", (now, now, call_id))

    def last_call_event(self, call_id: int) -> CallEvent | None:
        row = self._db.execute("SELECT call_id, at, kind, text FROM call_events WHERE call_id=? "
                               "ORDER BY at DESC, rowid DESC LIMIT 1", (call_id,)).fetchone()
        return CallEvent(*row) if row else None

    def open_calls_by_group(self) -> dict[str, int]:
        rows = self._db.execute("SELECT grp, count(*) FROM calls WHERE status='open' "
                                "GROUP BY grp")
        return {group: count for group, count in rows}


class _Checkpointer(threading.Thread):
    """Checkpoint the WAL every `every` seconds from a connection of its own.

    First PASSIVE, which copies what the WAL holds without blocking the collector's writes;
    then RESTART, which copies the few pages written meanwhile (briefly holding writes) so the
    WAL starts over from its beginning and does not grow.
    """

    def __init__(self, path: Path, every: float = 1.0) -> None:
        super().__init__(name="sqlite-checkpoint", daemon=True)
        self._path = path
        self._every = every
        self._stopping = threading.Event()

    def run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=2000")
            while not self._stopping.wait(self._every):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                except sqlite3.Error as exc:
                    log.warning("WAL checkpoint of %s failed (will retry): %s", self._path, exc)
        finally:
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            db.close()

    def stop(self) -> None:
        self._stopping.set()
        self.join(10)
