"""The embedded store: one SQLite file in WAL mode, owned by one collector process."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from checks.filemodes import create_private_file, make_private_dir
from collector.store.records import HostRecord, StoreTimings
from collector.store.sql import HOST_COLUMNS, SQLStore

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

_SINCE_FIRST_REPORT = (
    "UPDATE rule_states SET changed_at = COALESCE("
    "(SELECT first_seen FROM hosts WHERE hosts.host = rule_states.host), changed_at) "
    "WHERE changed_at = 0"
)

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
    5: (
        # When the collector was evaluating (one row per unbroken run), so that service-level
        # reports can tell time nobody watched from time that was up or down.
        """CREATE TABLE evaluation_spans (
            started_at REAL PRIMARY KEY,
            last_at REAL NOT NULL
        )""",
    ),
    6: (
        # Retired hosts (runwatch host retire): the row stays for the reports.
        "ALTER TABLE hosts ADD COLUMN retired_at REAL",
        "ALTER TABLE hosts ADD COLUMN retired_by TEXT",
        "ALTER TABLE hosts ADD COLUMN retire_reason TEXT",
    ),
    7: (
        # The console's call lists: one page by status, group, host or rule, newest first.
        "CREATE INDEX calls_by_status ON calls (status, id)",
        "CREATE INDEX calls_by_group ON calls (grp, status, id)",
        "CREATE INDEX calls_by_host ON calls (host, status, id)",
        "CREATE INDEX calls_by_rule ON calls (rule, status, id)",
    ),
    8: (
        # A rule state that never changed was kept with changed_at 0 (shown "since 1970"): it
        # has held since its host's first report.
        _SINCE_FIRST_REPORT,
    ),
    9: (
        # Every ruled series for the console's graphs: one row per host per resolution step,
        # its series' points packed (records.pack_steps). No rowid: the key is the row.
        """CREATE TABLE series_history (
            host TEXT NOT NULL,
            at INTEGER NOT NULL,
            points BLOB NOT NULL,
            PRIMARY KEY (host, at)
        ) WITHOUT ROWID""",
    ),
    10: (
        # The services a call affects (issue 24), by name: a JSON list.
        "ALTER TABLE calls ADD COLUMN services TEXT NOT NULL DEFAULT '[]'",
    ),
    11: (
        # Each service's state changes (issue 24): its history on the status page, its since.
        """CREATE TABLE service_changes (
            service TEXT NOT NULL,
            at REAL NOT NULL,
            state INTEGER NOT NULL
        )""",
        "CREATE INDEX service_changes_by_service ON service_changes (service, at)",
        "CREATE INDEX service_changes_by_time ON service_changes (at)",
    ),
    12: (
        # Storm control's count of new calls per help desk (kept across restarts).
        "CREATE TABLE storm_opens (sink TEXT NOT NULL, at REAL NOT NULL)",
        "CREATE INDEX storm_opens_by_sink ON storm_opens (sink, at)",
    ),
    13: (
        # Operators' messages on the status page (issue 24).
        """CREATE TABLE status_messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            service TEXT NOT NULL,
            text TEXT NOT NULL,
            posted_by TEXT NOT NULL,
            posted_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            updated_by TEXT NOT NULL,
            ended_at REAL,
            ended_by TEXT
        )""",
    ),
    14: (
        # How far each unacknowledged call has climbed (issue 23: escalation).
        """CREATE TABLE call_escalations (
            call_id INTEGER PRIMARY KEY REFERENCES calls (id),
            level INTEGER NOT NULL,
            reached_at REAL NOT NULL,
            steps INTEGER NOT NULL
        )""",
    ),
    15: (
        # Acknowledge links from notifications that were used: each works once (issue 23).
        """CREATE TABLE ack_links_used (
            link_id TEXT PRIMARY KEY,
            call_id INTEGER NOT NULL,
            recipient TEXT NOT NULL,
            used_at REAL NOT NULL
        )""",
    ),
    16: (
        # Notification digests (issue 23): the messages each channel was sent, for its rate
        # limit, and the notifications a rate or storm digest carries instead.
        "CREATE TABLE notify_sent (sink TEXT NOT NULL, at REAL NOT NULL)",
        "CREATE INDEX notify_sent_by_sink ON notify_sent (sink, at)",
        """CREATE TABLE notify_folded (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sink TEXT NOT NULL,
            call_id INTEGER NOT NULL,
            umbrella_id INTEGER,
            line TEXT NOT NULL,
            at REAL NOT NULL,
            digest_op INTEGER
        )""",
        "CREATE INDEX notify_folded_by_sink ON notify_folded (sink, digest_op)",
        "CREATE INDEX notify_folded_by_call ON notify_folded (call_id, sink)",
        "CREATE INDEX notify_folded_by_umbrella ON notify_folded (umbrella_id, sink)",
    ),
    17: (
        # A service-level call and the calls of its causes (issue 24), linked both ways.
        """CREATE TABLE service_call_parts (
            service_call INTEGER NOT NULL,
            call_id INTEGER NOT NULL,
            linked_at REAL NOT NULL,
            PRIMARY KEY (service_call, call_id)
        )""",
        "CREATE INDEX service_call_parts_by_call ON service_call_parts (call_id)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)


class SQLiteStore(SQLStore):
    """Store backed by SQLite (WAL). Use from one thread; the collector core is single-threaded."""

    shared = False
    _BEGIN = "BEGIN IMMEDIATE"

    def __init__(
        self,
        path: Path,
        timings: StoreTimings | None = None,
        *,
        checkpoint_in_background: bool = False,
        max_bytes: int | None = None,
    ) -> None:
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
            raise RuntimeError(
                f"{path} was written by a newer runwatch (schema {version}); "
                "upgrade runwatch or point data_dir elsewhere"
            )
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

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._db.close()

    # -- coordination: one process owns the file, so there is nothing to coordinate -----------

    def lock_hosts(self, hosts: Sequence[str]) -> dict[str, tuple[HostRecord, int]]:
        """The hosts' rows; BEGIN IMMEDIATE already keeps everyone else out."""
        found = {}
        for host in hosts:
            row = self._run(f"SELECT {HOST_COLUMNS} FROM hosts WHERE host=?", (host,)).fetchone()  # noqa: S608 -- constant column lists, values bound  # nosec B608
            if row is not None:
                found[host] = (self._host(row), 0)
        return found

    def bump_host_versions(self, hosts: Sequence[str]) -> dict[str, int]:
        return dict.fromkeys(hosts, 0)  # one writer: its view is always current

    def host_versions(self) -> dict[str, int]:
        return {}

    def try_lead(self, job: str) -> bool:
        return True

    def orphaned_hosts(self) -> dict[str, int]:
        return {}  # no other replica to lose

    def adopt_hosts(self, versions: Mapping[str, int]) -> None:
        pass

    def hosts_to_tick(self, now: float, after_intervals: float, stale_rule: str) -> list[str]:
        return []  # not shared: the collector's own view is complete


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
