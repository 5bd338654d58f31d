"""The SQL both stores run, written once: SQLite and PostgreSQL differ only in the hooks below.

Queries are written with `?` placeholders; a backend's `_sql()` turns them into its own
(`%s` for psycopg). Where the dialects really differ, a backend overrides a hook or a whole
method: how a transaction begins and batches (`_begin`, `_batched`), how many rows a statement
changed (`_affected`), how rows are written in bulk (`_upsert`), JSON columns (`_json_in`,
`_json_out`), the row that orders call events, row locks on a read (`_FOR_UPDATE`), and the
outbox lease PostgreSQL keeps (`_LEASE_CLEAR`). Replica coordination and migrations live in
each backend.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from collector.incidents.calls import Call, CallEvent, CallStatus
from collector.store.call_search import CallPage, CallSearch, like_pattern, search_sql
from collector.store.digests import DigestRows
from collector.store.records import (
    STATE_COLUMNS,
    AuditEntry,
    BackupSuccess,
    CallLink,
    CheckStatus,
    EscalationState,
    HistoryPoint,
    HistoryStep,
    HostRecord,
    HostRetirement,
    HostSnapshot,
    OutboxOp,
    RuleStateRecord,
    SeriesRecord,
    Silence,
    StateChange,
    StatusMessage,
    StoreTimings,
    pack_steps,
    rule_state_from_row,
    rule_state_to_row,
    unpack_steps,
)

HOST_COLUMNS = (
    "host, first_seen, last_report_at, interval_seconds, agent_version, boot_id, last_seq, labels"
)
SERIES_COLUMNS = "host, name, labels_key, check_name, value, unit, timestamp"
STATUS_COLUMNS = (
    "host, check_name, type, interval_seconds, last_run_at, duration_seconds, "
    "error_kind, error, output"
)
CALL_COLUMNS = (
    "id, fingerprint, host, rule, labels, grp, assign, severity, priority, status, "
    "summary, description, first_seen, opened_at, updated_at, resolved_at, "
    "reopened, services"
)
MESSAGE_COLUMNS = (
    "id, service, text, posted_by, posted_at, updated_at, updated_by, ended_at, ended_by"
)
OP_COLUMNS = (
    "id, call_id, sink, op, payload, created_at, attempts, next_attempt_at, status, "
    "last_error, delivered_at"
)
LINK_COLUMNS = (
    "call_id, sink, remote_id, url, remote_state, checked_at, acknowledged_at, "
    "escalated_at, desk_closed_at"
)
SILENCE_COLUMNS = (
    "id, host_pattern, rule_pattern, starts_at, ends_at, reason, created_by, created_at, ended_by"
)
# An outbox operation goes only when nothing before it for the same call and sink is waiting.
FIRST_IN_LINE = (
    "NOT EXISTS (SELECT 1 FROM outbox e WHERE e.call_id = o.call_id "
    "AND e.sink = o.sink AND e.id < o.id AND e.status IN ('pending', 'dead'))"
)


@dataclass(frozen=True, slots=True)
class Upsert:
    """An INSERT that updates the row a key already names: one table's write, for both
    dialects. `types` are the PostgreSQL types of the columns, for its bulk form (arrays
    unnested in one statement); a type `text:jsonb` is sent as text and stored as JSON."""

    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    update: tuple[str, ...]  # set from the new row on conflict; () does nothing
    types: tuple[str, ...] = ()  # () : one statement per row, even on PostgreSQL

    def conflict(self) -> str:
        if not self.key:
            return ""
        if not self.update:
            return " ON CONFLICT DO NOTHING"
        return (
            f" ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET "  # nosec B608 -- constant column names
            + ", ".join(f"{column}=excluded.{column}" for column in self.update)
        )

    def with_values(self) -> str:
        """The statement for one row of `?` placeholders."""
        return (
            f"INSERT INTO {self.table} ({', '.join(self.columns)}) "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            f"VALUES ({', '.join('?' for _ in self.columns)}){self.conflict()}"
        )


def _upsert(table: str, columns: str, key: str, types: str = "", *, keep: str = "") -> Upsert:
    """An Upsert from comma-separated lists; on conflict, every column but the key and
    `keep` (columns the first write sets for good) takes the new row's value."""
    names = tuple(c.strip() for c in columns.split(","))
    keys = tuple(c.strip() for c in key.split(",") if c.strip())
    kept = {c.strip() for c in keep.split(",")}
    return Upsert(
        table,
        names,
        keys,
        tuple(c for c in names if c not in keys and c not in kept),
        tuple(t.strip() for t in types.split(",") if t.strip()),
    )


HOSTS = _upsert(
    "hosts",
    HOST_COLUMNS,
    "host",
    "text, float8, float8, float8, text, text, int8, text:jsonb",
    keep="first_seen",
)
SERIES = _upsert(
    "series",
    SERIES_COLUMNS,
    "host, name, labels_key",
    "text, text, text, text, float8, text, float8",
)
STATUSES = _upsert(
    "check_status",
    STATUS_COLUMNS,
    "host, check_name",
    "text, text, text, float8, float8, float8, text, text, text",
)
HISTORY = _upsert(
    "history",
    "host, name, labels_key, timestamp, value",
    "host, name, labels_key, timestamp",
    "text, text, text, float8, float8",
)
RULE_STATES = _upsert("rule_states", STATE_COLUMNS, "rule, host, labels_key")
STATE_CHANGES = _upsert("state_changes", "at, host, rule, labels_key, grp, severity", "")
BACKUPS = Upsert(
    "backup_successes",
    ("host", "name", "labels_key", "succeeded_at"),
    ("host", "name", "labels_key", "succeeded_at"),
    (),
)
SESSIONS = _upsert("console_sessions", "key, name, expires_at", "key")
EVALUATION_SPANS = _upsert("evaluation_spans", "started_at, last_at", "started_at")
LINKS = _upsert("call_links", LINK_COLUMNS, "call_id, sink")
STORM_MEMBERS = _upsert(
    "storm_members", "umbrella_id, fingerprint, summary", "umbrella_id, fingerprint"
)


class SQLStore(DigestRows):
    """Every query the two stores share. Subclasses set `_db` (a DB-API connection whose
    `execute` returns a cursor) and `_timings`, and override the hooks their dialect needs."""

    _db: Any
    _timings: StoreTimings
    _depth: int = 0
    _BEGIN = "BEGIN"
    _FOR_UPDATE = ""  # a row lock on a read, where the dialect has one
    _LEASE_CLEAR = ""  # what ends an outbox operation's lease, where there is one
    _EVENT_ORDER = "rowid"  # what orders call events written at the same time
    _LIKE = "LIKE"  # a LIKE blind to case (SQLite's is, for ASCII)
    # A step's points written after others of the same host and step: appended (SQLite's ||
    # makes text of two blobs; the cast takes the bytes back as they are).
    _APPEND_POINTS = "CAST(series_history.points || excluded.points AS BLOB)"
    _BINARY = ""  # what orders text by code point, as Python does (SQLite's default)

    # -- dialect hooks ----------------------------------------------------------------------

    def _sql(self, query: str) -> str:
        """The query in the driver's placeholder style."""
        return query

    def _run(self, query: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(self._sql(query), params)

    def _many(self, query: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._db.executemany(self._sql(query), rows)

    def _affected(self, query: str, params: Sequence[Any]) -> int:
        """Run a statement and return how many rows it changed."""
        return int(self._run(query, params).rowcount)

    def _insert(self, query: str, params: Sequence[Any]) -> int:
        """Run an INSERT into a table with an `id` key; return the new row's id."""
        cursor = self._run(query, params)
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def _json_fifth(self, row: Sequence[Any]) -> list[Any]:
        """A calls or outbox row's values, its JSON column (labels, payload: the fifth) read."""
        values = list(row)
        values[4] = self._json_out(values[4])
        return values

    def _insert_record(self, table: str, columns: str, record: object) -> int:
        """INSERT the attributes of `record` that `columns` names (as columns of the same names)
        into `table`; return the new row's id."""
        names = columns.split(", ")
        marks = ", ".join("?" * len(names))
        return self._insert(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608 -- constant table and columns, values bound  # nosec B608
            [getattr(record, name) for name in names],
        )

    def _upsert(self, upsert: Upsert, rows: list[tuple[Any, ...]]) -> None:
        """Write rows (in `upsert.columns` order), each updating the row its key names."""
        self._many(upsert.with_values(), rows)

    def _json_in(self, value: Any, *, sort_keys: bool = False) -> Any:
        """A value for a JSON column."""
        return json.dumps(value, sort_keys=sort_keys)

    def _json_out(self, value: Any) -> Any:
        """A JSON column's value as Python."""
        return json.loads(value)

    def _batched(self) -> AbstractContextManager[None]:
        """Around a transaction's body: where the driver may send statements without waiting."""
        return contextlib.nullcontext()

    def _guarded(self) -> AbstractContextManager[Any]:
        """Around a whole transaction: a lock where the connection is shared by threads."""
        return contextlib.nullcontext()

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._guarded():
            if self._depth:  # nested: part of the outer transaction
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            started = time.perf_counter()
            self._db.execute(self._BEGIN)
            self._depth = 1
            try:
                with self._batched():
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

    # -- replica coordination: what every backend can answer alike ----------------------------

    def lock_host(self, host: str) -> tuple[HostRecord, int] | None:
        return self.lock_hosts([host]).get(host)

    def lock_hosts(self, hosts: Sequence[str]) -> dict[str, tuple[HostRecord, int]]:
        raise NotImplementedError

    def bump_host_version(self, host: str) -> int:
        return self.bump_host_versions([host]).get(host, 0)

    def bump_host_versions(self, hosts: Sequence[str]) -> dict[str, int]:
        raise NotImplementedError

    def load_host_snapshot(self, host: str) -> HostSnapshot:
        return self.load_host_snapshots([host])[host]

    def load_host_snapshots(
        self,
        hosts: Sequence[str],
        locked: Mapping[str, tuple[HostRecord, int]] | None = None,
    ) -> dict[str, HostSnapshot]:
        """Everything stored about each of `hosts`, in one query per table for all of them
        (a replica taking over many hosts at once). `locked`: what lock_hosts() gave for
        them in this transaction, if the caller has it (else they are locked here)."""
        names = list(dict.fromkeys(hosts))
        if not names:
            return {}
        if locked is None:
            locked = self.lock_hosts(names)
        among, args = self._among(names)
        retired = {r.host: r for r in self._retirements_where(f" AND host {among}", args)}
        series: dict[str, list[SeriesRecord]] = {}
        for record in self._series_where(f"WHERE host {among}", args):
            series.setdefault(record.host, []).append(record)
        statuses: dict[str, list[CheckStatus]] = {}
        for row in self._run(
            f"SELECT {STATUS_COLUMNS} FROM check_status WHERE host {among}",  # noqa: S608 -- constant column lists, values bound  # nosec B608
            args,
        ):
            status = CheckStatus(*row)
            statuses.setdefault(status.host, []).append(status)
        states: dict[str, list[RuleStateRecord]] = {}
        for row in self._run(
            f"SELECT {STATE_COLUMNS} FROM rule_states WHERE host {among}",  # noqa: S608 -- constant column lists, values bound  # nosec B608
            args,
        ):
            state = rule_state_from_row(row)
            states.setdefault(state.host, []).append(state)
        snapshots = {}
        for host in names:
            found = locked.get(host)
            retirement = retired.get(host) if found else None
            snapshots[host] = HostSnapshot(
                record=found[0] if found and retirement is None else None,
                retirement=retirement,
                version=found[1] if found else 0,
                series=series.get(host, []),
                statuses=statuses.get(host, []),
                states=states.get(host, []),
            )
        return snapshots

    def _among(self, values: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        """A condition that a column is one of `values`, and its parameters."""
        return f"IN ({', '.join('?' for _ in values)})", tuple(values)

    # -- what the agents reported -------------------------------------------------------------

    def _host(self, row: Sequence[Any]) -> HostRecord:
        host, first, last, interval, version, boot, seq, labels = row[:8]
        return HostRecord(host, first, last, interval, version, boot, seq, self._json_out(labels))

    def load_hosts(self) -> Iterator[HostRecord]:
        """The hosts that are not retired."""
        for row in self._run(f"SELECT {HOST_COLUMNS} FROM hosts WHERE retired_at IS NULL"):  # noqa: S608 -- constant column lists  # nosec B608
            yield self._host(row)

    # -- retired hosts: the row stays (first_seen, last report) for the reports ----------------

    def _retirements_where(self, clause: str, args: tuple[Any, ...]) -> list[HostRetirement]:
        rows = self._run(
            f"SELECT {HOST_COLUMNS}, retired_at, retired_by, retire_reason FROM hosts "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            f"WHERE retired_at IS NOT NULL{clause} ORDER BY host",
            args,
        )
        return [HostRetirement(row[0], row[8], row[9], row[10], self._host(row)) for row in rows]

    def retirements(self) -> list[HostRetirement]:
        """Every retired host, by name: when, by whom and why, and its last record."""
        return self._retirements_where("", ())

    def retirement_of(self, host: str) -> HostRetirement | None:
        """The host's retirement, if it is retired."""
        found = self._retirements_where(" AND host=?", (host,))
        return found[0] if found else None

    def retire_host(self, host: str, at: float, by: str, reason: str) -> HostRetirement | None:
        """Mark a known host retired and drop its series, checks and rule states (its calls,
        state changes and history stay); None when no such host reports, or it is retired."""
        if not self._affected(
            "UPDATE hosts SET retired_at=?, retired_by=?, retire_reason=? "
            "WHERE host=? AND retired_at IS NULL",
            (at, by, reason, host),
        ):
            return None
        for table in ("series", "check_status", "rule_states"):
            self._run(f"DELETE FROM {table} WHERE host=?", (host,))  # noqa: S608 -- constant table names  # nosec B608
        return self.retirement_of(host)

    def restore_host(self, host: str, now: float) -> HostRetirement | None:
        """Bring a retired host back: it counts as heard from `now`, so it has its staleness
        limit to report again. Returns the retirement that ended (None if it was not retired)."""
        ended = self.retirement_of(host)
        if ended is None:
            return None
        self._run(
            "UPDATE hosts SET retired_at=NULL, retired_by=NULL, retire_reason=NULL, "
            "last_report_at=? WHERE host=?",
            (now, host),
        )
        return ended

    def save_host(self, host: HostRecord) -> None:
        self.save_hosts([host])

    def save_hosts(self, hosts: list[HostRecord]) -> None:
        self._upsert(
            HOSTS,
            [
                (
                    h.host,
                    h.first_seen,
                    h.last_report_at,
                    h.interval_seconds,
                    h.agent_version,
                    h.boot_id,
                    h.last_seq,
                    json.dumps(h.labels, sort_keys=True),
                )
                for h in hosts
            ],
        )

    def load_series(self) -> Iterator[SeriesRecord]:
        return self._series_where("", ())

    def _series_where(self, clause: str, args: tuple[Any, ...]) -> Iterator[SeriesRecord]:
        for host, name, key, check, value, unit, ts in self._run(
            f"SELECT {SERIES_COLUMNS} FROM series {clause}",  # noqa: S608 -- constant column lists, values bound  # nosec B608
            args,
        ):
            yield SeriesRecord(host, name, key, json.loads(key), check, value, unit, ts)

    def save_series(self, series: list[SeriesRecord]) -> None:
        self._upsert(
            SERIES,
            [(s.host, s.name, s.labels_key, s.check, s.value, s.unit, s.timestamp) for s in series],
        )

    def delete_series(self, keys: list[tuple[str, str, str]]) -> None:
        self._many("DELETE FROM series WHERE host=? AND name=? AND labels_key=?", keys)

    def load_check_statuses(self) -> Iterator[CheckStatus]:
        for row in self._run(f"SELECT {STATUS_COLUMNS} FROM check_status"):  # noqa: S608 -- constant column lists  # nosec B608
            yield CheckStatus(*row)

    def save_check_statuses(self, statuses: list[CheckStatus]) -> None:
        self._upsert(
            STATUSES,
            [
                (
                    s.host,
                    s.check,
                    s.type,
                    s.interval_seconds,
                    s.last_run_at,
                    s.duration_seconds,
                    s.error_kind,
                    s.error,
                    s.output,
                )
                for s in statuses
            ],
        )

    def delete_check_statuses(self, keys: list[tuple[str, str]]) -> None:
        self._many("DELETE FROM check_status WHERE host=? AND check_name=?", keys)

    def load_rule_states(self) -> Iterator[RuleStateRecord]:
        for row in self._run(f"SELECT {STATE_COLUMNS} FROM rule_states"):  # noqa: S608 -- constant column lists  # nosec B608
            yield rule_state_from_row(row)

    def save_rule_states(self, states: list[RuleStateRecord]) -> None:
        self._upsert(RULE_STATES, [rule_state_to_row(r) for r in states])

    # -- history for forecasts ----------------------------------------------------------------

    def add_history(self, points: list[HistoryPoint]) -> None:
        self._upsert(
            HISTORY, [(p.host, p.name, p.labels_key, p.timestamp, p.value) for p in points]
        )

    def load_history(self, since: float) -> Iterator[HistoryPoint]:
        for row in self._run(
            "SELECT host, name, labels_key, timestamp, value FROM history "
            "WHERE timestamp >= ? ORDER BY timestamp",
            (since,),
        ):
            yield HistoryPoint(*row)

    def prune_history(self, before: float) -> int:
        return self._affected("DELETE FROM history WHERE timestamp < ?", (before,))

    # -- history of every ruled series, for the console's graphs --------------------------------
    # One row per host per step, keyed by (host, at), holding the points of the host's series
    # in that step (records.pack_steps): a host page reads one range of a few hundred rows,
    # pruning a host deletes the front of its range, and each row carries its host and time
    # once, not once per series. Points written later for the same step (a check that reports
    # apart, another replica) are appended to the row; reading, the last point of a series in
    # a row wins.

    def add_steps(self, steps: list[HistoryStep]) -> None:
        self._many(
            "INSERT INTO series_history (host, at, points) VALUES (?, ?, ?) "  # noqa: S608 -- the dialect's constant SQL  # nosec B608
            f"ON CONFLICT (host, at) DO UPDATE SET points = {self._APPEND_POINTS}",
            pack_steps(steps),
        )

    def read_steps(
        self, host: str, since: float, until: float, series: int | None = None
    ) -> list[HistoryStep]:
        """The host's steps that start within [since, until], oldest first; of one series
        only, with `series`."""
        rows = self._run(
            "SELECT at, points FROM series_history WHERE host=? AND at>=? AND at<=? ORDER BY at",
            (host, math.floor(since), math.floor(until)),
        )
        return [
            step
            for at, points in rows
            for step in unpack_steps(host, at, bytes(points))
            if series is None or step.series == series
        ]

    def prune_steps(self, before: float, after: str, hosts: int) -> str | None:
        """Drop the steps older than `before` of the next `hosts` hosts after `after`, in
        name order (a walk over the key's first column, one index probe per host). Return the
        last host pruned, to go on from; None when the walk reached the end."""
        found = [
            row[0]
            for row in self._run(
                "WITH RECURSIVE walk(host, n) AS ("
                " SELECT (SELECT host FROM series_history WHERE host>? ORDER BY host LIMIT 1), 1"
                " UNION ALL"
                " SELECT (SELECT s.host FROM series_history s WHERE s.host>walk.host"
                " ORDER BY s.host LIMIT 1), n+1 FROM walk"
                " WHERE walk.host IS NOT NULL AND n<?"
                ") SELECT host FROM walk WHERE host IS NOT NULL",
                (after, hosts),
            )
        ]
        cutoff = math.floor(before)
        self._many("DELETE FROM series_history WHERE host=? AND at<?", [(h, cutoff) for h in found])
        return found[-1] if len(found) == hosts else None

    # -- the audit log and the records of service-level reports -------------------------------

    def add_audit(self, entry: AuditEntry) -> int:
        return self._insert_record("audit_log", "at, actor, action, target, detail, via", entry)

    def list_audit(self, limit: int) -> list[AuditEntry]:
        """The newest `limit` entries, newest first."""
        rows = self._run(
            "SELECT id, at, actor, action, target, detail, via FROM audit_log "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [AuditEntry(*row) for row in rows]

    def audit_page(self, text: str, offset: int, limit: int) -> tuple[list[AuditEntry], int]:
        """One page of the entries, newest first, whose who, action, target or detail hold
        every word of `text` (in any case), and how many do in all."""
        where: list[str] = []
        args: list[Any] = []
        for word in text.split():
            pattern = like_pattern(word, glob=False)
            where.append(
                "("
                + " OR ".join(
                    f"{column} {self._LIKE} ? ESCAPE '\\'"
                    for column in ("actor", "action", "target", "detail")
                )
                + ")"
            )
            args.extend([pattern] * 4)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        total = int(self._run(f"SELECT count(*) FROM audit_log {clause}", args).fetchone()[0])  # noqa: S608 -- clauses of constant text, values bound  # nosec B608
        if offset >= total:
            return [], total
        rows = self._run(
            "SELECT id, at, actor, action, target, detail, via FROM audit_log "  # noqa: S608 -- clauses of constant text, values bound  # nosec B608
            f"{clause} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [AuditEntry(*row) for row in rows], total

    def audit_between(self, since: float, until: float, prefix: str) -> list[AuditEntry]:
        """Entries in [since, until) whose action begins with `prefix` (e.g. "call."), oldest
        first."""
        rows = self._run(
            "SELECT id, at, actor, action, target, detail, via FROM audit_log "
            "WHERE at >= ? AND at < ? AND action LIKE ? ORDER BY at, id",
            (since, until, f"{prefix}%"),
        )
        return [AuditEntry(*row) for row in rows]

    def add_state_changes(self, changes: list[StateChange]) -> None:
        self._upsert(
            STATE_CHANGES,
            [(c.at, c.host, c.rule, c.labels_key, c.group, c.severity) for c in changes],
        )

    def state_changes(self, since: float, until: float) -> list[StateChange]:
        """The changes in [since, until), each series' last one before `since` first (where
        the period starts from), in the order they happened."""
        rows = self._run(
            "SELECT at, host, rule, labels_key, grp, severity, id FROM state_changes "
            "WHERE at >= ? AND at < ? "
            "UNION ALL SELECT s.at, s.host, s.rule, s.labels_key, s.grp, s.severity, s.id "
            "FROM state_changes s JOIN (SELECT MAX(id) AS id FROM state_changes WHERE at < ? "
            "GROUP BY host, rule, labels_key) last ON s.id = last.id "
            "ORDER BY 1, 7",
            (since, until, since),
        )
        return [StateChange(*row[:6]) for row in rows]

    def add_backup_successes(self, successes: list[BackupSuccess]) -> None:
        self._upsert(BACKUPS, [(b.host, b.name, b.labels_key, b.succeeded_at) for b in successes])

    def backup_successes(self, since: float, until: float) -> list[BackupSuccess]:
        """Successes in [since, until), and each job's first and newest one before `since`
        (that the job already ran before the period, and how old its backup was then)."""
        rows = self._run(
            "SELECT host, name, labels_key, succeeded_at FROM backup_successes "
            "WHERE succeeded_at >= ? AND succeeded_at < ? "
            "UNION SELECT host, name, labels_key, MIN(succeeded_at) FROM backup_successes "
            "WHERE succeeded_at < ? GROUP BY host, name, labels_key "
            "UNION SELECT host, name, labels_key, MAX(succeeded_at) FROM backup_successes "
            "WHERE succeeded_at < ? GROUP BY host, name, labels_key "
            "ORDER BY 1, 2, 3, 4",
            (since, until, since, since),
        )
        return [BackupSuccess(*row) for row in rows]

    def calls_opened_between(self, since: float, until: float) -> list[Call]:
        """Calls first opened in [since, until), oldest first."""
        rows = self._run(
            f"SELECT {CALL_COLUMNS} FROM calls "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "WHERE opened_at >= ? AND opened_at < ? ORDER BY opened_at, id",
            (since, until),
        )
        return [self._call(row) for row in rows]

    def record_evaluation(self, now: float, gap: float) -> None:
        """Extend the collector's current run of evaluations to `now`, or begin a new one
        when the last evaluation is more than `gap` seconds old (the collector was down)."""
        extended = self._affected(
            "UPDATE evaluation_spans SET last_at=? WHERE started_at="
            "(SELECT MAX(started_at) FROM evaluation_spans) AND last_at >= ? AND last_at <= ?",
            (now, now - gap, now),
        )
        if not extended:
            self._upsert(EVALUATION_SPANS, [(now, now)])

    def evaluation_spans(self) -> list[tuple[float, float]]:
        """Every run of evaluations: (first, last evaluation), oldest first."""
        rows = self._run("SELECT started_at, last_at FROM evaluation_spans ORDER BY started_at")
        return [(float(a), float(b)) for a, b in rows]

    def add_service_changes(self, changes: list[tuple[str, float, int]]) -> None:
        """Services whose state changed: (service, when, state as ServiceState's number)."""
        if changes:
            self._many("INSERT INTO service_changes (service, at, state) VALUES (?, ?, ?)", changes)

    def service_changes(self, since: float, until: float) -> list[tuple[str, float, int]]:
        """The services' state changes in [since, until), oldest first."""
        rows = self._run(
            "SELECT service, at, state FROM service_changes WHERE at >= ? AND at < ? "
            "ORDER BY at, service",
            (since, until),
        )
        return [(str(name), float(at), int(state)) for name, at, state in rows]

    def last_service_states(self, before: float | None = None) -> dict[str, tuple[float, int]]:
        """Each service's last state change (before `before`, if given): (when, state)."""
        rows = self._run(
            "SELECT c.service, c.at, c.state FROM service_changes c JOIN "
            "(SELECT service, MAX(at) AS at FROM service_changes WHERE at < ? GROUP BY service) "
            "l ON c.service = l.service AND c.at = l.at",
            (float("inf") if before is None else before,),
        )
        return {str(name): (float(at), int(state)) for name, at, state in rows}

    # -- the status page's messages -----------------------------------------------------------

    def add_status_message(self, message: StatusMessage) -> int:
        columns = "service, text, posted_by, posted_at, updated_at, updated_by"
        return self._insert_record("status_messages", columns, message)

    def change_status_message(
        self, message_id: int, text: str | None, by: str, now: float
    ) -> StatusMessage | None:
        """A message's new text (`text`), or its end (None); None if it has ended already."""
        if text is None:
            changed = self._affected(
                "UPDATE status_messages SET ended_at=?, ended_by=? WHERE id=? AND ended_at IS NULL",
                (now, by, message_id),
            )
        else:
            changed = self._affected(
                "UPDATE status_messages SET text=?, updated_at=?, updated_by=? "
                "WHERE id=? AND ended_at IS NULL",
                (text, now, by, message_id),
            )
        if not changed:
            return None
        row = self._run(
            f"SELECT {MESSAGE_COLUMNS} FROM status_messages WHERE id=?",  # noqa: S608 -- constant column lists, values bound  # nosec B608
            (message_id,),
        ).fetchone()
        return StatusMessage(*row)

    def status_messages(self, include_ended: bool = False) -> list[StatusMessage]:
        """The messages not ended (or all), newest first."""
        where = "" if include_ended else "WHERE ended_at IS NULL "
        rows = self._run(
            f"SELECT {MESSAGE_COLUMNS} FROM status_messages {where}ORDER BY id DESC"  # noqa: S608 -- constant column lists and clause  # nosec B608
        )
        return [StatusMessage(*row) for row in rows]

    # -- acknowledge links from notifications -------------------------------------------------

    def use_ack_link(self, link_id: str, call_id: int, recipient: str, now: float) -> bool:
        """Record the link as used; False if it was already (one winner among racing uses)."""
        return (
            self._affected(
                "INSERT INTO ack_links_used (link_id, call_id, recipient, used_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (link_id) DO NOTHING",
                (link_id, call_id, recipient, now),
            )
            == 1
        )

    def ack_link_used(self, link_id: str) -> float | None:
        """When the link was used, or None."""
        row = self._run("SELECT used_at FROM ack_links_used WHERE link_id=?", (link_id,)).fetchone()
        return float(row[0]) if row else None

    # -- console sessions ---------------------------------------------------------------------

    def add_session(self, key: str, name: str, expires_at: float) -> None:
        self._upsert(SESSIONS, [(key, name, expires_at)])

    def session_live(self, key: str, now: float) -> bool:
        """Whether the session was added, has not ended and has not expired by `now`."""
        return (
            self._run(
                "SELECT 1 FROM console_sessions WHERE key=? AND expires_at > ?", (key, now)
            ).fetchone()
            is not None
        )

    def end_session(self, key: str) -> bool:
        """Forget a session (signed out); return whether it was there."""
        return self._affected("DELETE FROM console_sessions WHERE key=?", (key,)) > 0

    def prune_sessions(self, now: float) -> int:
        """Forget the sessions expired by `now`; return how many."""
        return self._affected("DELETE FROM console_sessions WHERE expires_at <= ?", (now,))

    # -- maintenance windows ------------------------------------------------------------------

    def add_silence(self, silence: Silence) -> int:
        columns = "host_pattern, rule_pattern, starts_at, ends_at, reason, created_by, created_at"
        return self._insert_record("silences", columns, silence)

    def list_silences(self, ending_after: float | None) -> list[Silence]:
        """Silences that end after the given time (all when None), oldest first."""
        if ending_after is None:
            rows = self._run(f"SELECT {SILENCE_COLUMNS} FROM silences ORDER BY id")  # noqa: S608 -- constant column lists  # nosec B608
        else:
            rows = self._run(
                f"SELECT {SILENCE_COLUMNS} FROM silences "  # noqa: S608 -- constant column lists, values bound  # nosec B608
                "WHERE ends_at > ? ORDER BY id",
                (ending_after,),
            )
        return [Silence(*row) for row in rows]

    def end_silence(self, silence_id: int, now: float, by: str) -> Silence | None:
        """End a silence now; return it as it was, or None if it had already ended."""
        row = self._run(
            f"SELECT {SILENCE_COLUMNS} FROM silences "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            f"WHERE id=? AND ends_at > ?{self._FOR_UPDATE}",
            (silence_id, now),
        ).fetchone()
        if row is None:
            return None
        self._run(
            "UPDATE silences SET ends_at=?, ended_by=? WHERE id=?",
            (max(now, row[3]), by, silence_id),
        )
        return Silence(*row)

    # -- the built-in call register -----------------------------------------------------------

    def _call(self, row: Sequence[Any]) -> Call:
        values = self._json_fifth(row)
        values[-1] = self._json_out(values[-1])  # services
        return Call(*values)

    def insert_call(self, call: Call) -> int:
        return self._insert(
            "INSERT INTO calls (fingerprint, host, rule, labels, grp, assign, severity, priority, "
            "status, summary, description, first_seen, opened_at, updated_at, resolved_at, "
            "reopened, services) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                call.fingerprint,
                call.host,
                call.rule,
                self._json_in(call.labels, sort_keys=True),
                call.group,
                call.assign,
                call.severity,
                call.priority,
                call.status,
                call.summary,
                call.description,
                call.first_seen,
                call.opened_at,
                call.updated_at,
                call.resolved_at,
                call.reopened,
                self._json_in(call.services),
            ),
        )

    def update_call(self, call: Call) -> None:
        self._run(
            "UPDATE calls SET severity=?, priority=?, status=?, summary=?, description=?, "
            "updated_at=?, resolved_at=?, reopened=?, services=? WHERE id=?",
            (
                call.severity,
                call.priority,
                call.status,
                call.summary,
                call.description,
                call.updated_at,
                call.resolved_at,
                call.reopened,
                self._json_in(call.services),
                call.id,
            ),
        )

    def add_call_event(self, event: CallEvent) -> None:
        self._run(
            "INSERT INTO call_events (call_id, at, kind, text) VALUES (?, ?, ?, ?)",
            (event.call_id, event.at, event.kind, event.text),
        )

    def get_call(self, call_id: int) -> Call | None:
        row = self._run(
            f"SELECT {CALL_COLUMNS} FROM calls WHERE id=?",  # noqa: S608 -- constant column lists, values bound  # nosec B608
            (call_id,),
        ).fetchone()
        return self._call(row) if row else None

    def find_open_call(self, fingerprint: str) -> Call | None:
        row = self._run(
            f"SELECT {CALL_COLUMNS} FROM calls "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "WHERE fingerprint=? AND status='open'",
            (fingerprint,),
        ).fetchone()
        return self._call(row) if row else None

    def find_open_call_id(self, fingerprint: str) -> int | None:
        """The id of the open call with this key, without reading the call."""
        row = self._run(
            "SELECT id FROM calls WHERE fingerprint=? AND status='open'", (fingerprint,)
        ).fetchone()
        return int(row[0]) if row else None

    def call_rule(self, call_id: int) -> tuple[str, str] | None:
        """A call's rule and status, without its texts."""
        row = self._run("SELECT rule, status FROM calls WHERE id=?", (call_id,)).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def find_resolved_call(self, fingerprint: str, since: float) -> Call | None:
        row = self._run(
            f"SELECT {CALL_COLUMNS} FROM calls "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "WHERE fingerprint=? AND status='resolved' AND resolved_at >= ? "
            "AND NOT closed_by_desk ORDER BY resolved_at DESC LIMIT 1",
            (fingerprint, since),
        ).fetchone()
        return self._call(row) if row else None

    def list_calls(self, status: CallStatus | None, group: str | None, limit: int) -> list[Call]:
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            where.append("status=?")
            args.append(status)
        if group is not None:
            where.append("grp=?")
            args.append(group)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._run(
            f"SELECT {CALL_COLUMNS} FROM calls {clause} "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        return [self._call(row) for row in rows]

    def search_calls(self, search: CallSearch) -> CallPage:
        """One page of the calls that match, sorted, and how many match in all."""
        clause, args, order = search_sql(search, self._LIKE)
        total = self._run(f"SELECT count(*) FROM calls {clause}", args).fetchone()[0]  # noqa: S608 -- clauses of constant text, values bound  # nosec B608
        if not total or search.offset >= total:
            return CallPage([], int(total))
        rows = self._run(
            f"SELECT {CALL_COLUMNS} FROM calls {clause} {order} LIMIT ? OFFSET ?",  # noqa: S608 -- clauses of constant text, values bound  # nosec B608
            (*args, search.limit, search.offset),
        )
        return CallPage([self._call(row) for row in rows], int(total))

    def call_events(self, call_id: int) -> list[CallEvent]:
        rows = self._run(
            "SELECT call_id, at, kind, text FROM call_events "  # noqa: S608 -- constant column name  # nosec B608
            f"WHERE call_id=? ORDER BY at, {self._EVENT_ORDER}",
            (call_id,),
        )
        return [CallEvent(*row) for row in rows]

    def last_call_event(self, call_id: int) -> CallEvent | None:
        row = self._run(
            "SELECT call_id, at, kind, text FROM call_events WHERE call_id=? "  # noqa: S608 -- constant column name  # nosec B608
            f"ORDER BY at DESC, {self._EVENT_ORDER} DESC LIMIT 1",
            (call_id,),
        ).fetchone()
        return CallEvent(*row) if row else None

    def open_calls_of(self, host: str) -> list[Call]:
        """The host's open calls, oldest first."""
        rows = self._run(
            f"SELECT {CALL_COLUMNS} FROM calls WHERE host=? AND status='open' ORDER BY id",  # noqa: S608 -- constant column lists, values bound  # nosec B608
            (host,),
        )
        return [self._call(row) for row in rows]

    def open_calls_by_group(self) -> dict[str, int]:
        rows = self._run("SELECT grp, count(*) FROM calls WHERE status='open' GROUP BY grp")
        return {group: int(count) for group, count in rows}

    def retire_call(self, call_id: int, now: float) -> None:
        """Resolve a call the help desk closed, for good: it is never reopened."""
        self._run(
            "UPDATE calls SET status='resolved', resolved_at=?, updated_at=?, "
            "closed_by_desk=TRUE WHERE id=?",
            (now, now, call_id),
        )

    # -- escalation: how far each unacknowledged call has climbed --------------------------------

    _ESCALATION = (
        "SELECT c.id, c.grp, c.opened_at, c.reopened, coalesce(e.level, 0), e.reached_at, "
        "coalesce(e.steps, 0) FROM calls c LEFT JOIN call_escalations e ON e.call_id = c.id "
    )

    def escalation_candidates(self, groups: Sequence[str]) -> list[EscalationState]:
        """The open calls of `groups` that nobody acknowledged, with how far each climbed."""
        if not groups:
            return []
        marks = ", ".join("?" * len(groups))
        rows = self._run(
            f"{self._ESCALATION}WHERE c.status = 'open' AND c.grp IN ({marks}) "  # noqa: S608 -- constant text and placeholders, values bound  # nosec B608
            "AND NOT EXISTS (SELECT 1 FROM call_events v WHERE v.call_id = c.id "
            "AND v.kind = 'acknowledged') ORDER BY c.id",
            tuple(groups),
        )
        return [EscalationState(*row) for row in rows]

    def escalation_of(self, call_id: int) -> EscalationState | None:
        row = self._run(f"{self._ESCALATION}WHERE c.id = ?", (call_id,)).fetchone()
        return EscalationState(*row) if row else None

    def advance_escalation(self, call_id: int, level: int, at: float, steps_was: int) -> bool:
        """Record that the call reached `level` at `at`, unless someone took a step since
        `steps_was` was read; return whether this was the one step taken."""
        if steps_was == 0:
            return bool(
                self._affected(
                    "INSERT INTO call_escalations (call_id, level, reached_at, steps) "
                    "VALUES (?, ?, ?, 1) ON CONFLICT (call_id) DO NOTHING",
                    (call_id, level, at),
                )
            )
        return bool(
            self._affected(
                "UPDATE call_escalations SET level = ?, reached_at = ?, steps = steps + 1 "
                "WHERE call_id = ? AND steps = ?",
                (level, at, call_id, steps_was),
            )
        )

    def _lock_storm(self) -> None:
        """Keep other writers off storm control's count until the transaction ends (a store
        with one writer has nothing to do)."""

    def claim_storm_slot(self, sink: str, now: float, window: float, limit: int) -> bool:
        """Count a new call on `sink` for storm control, if fewer than `limit` were counted
        within the `window` seconds before `now`; return whether it was (False: a storm).

        The count is in the store, so every replica sharing it counts against one limit;
        a transaction that rolls back takes its count back with it."""
        self._lock_storm()
        since = now - window
        self._run("DELETE FROM storm_opens WHERE sink=? AND at <= ?", (sink, since))
        row = self._run(
            "SELECT count(*) FROM storm_opens WHERE sink=? AND at > ?", (sink, since)
        ).fetchone()
        if row is not None and int(row[0]) >= limit:
            return False
        self._run("INSERT INTO storm_opens (sink, at) VALUES (?, ?)", (sink, now))
        return True

    def link_service_call(self, service_call: int, call_id: int, now: float) -> bool:
        """Link a service-level call to the call of one of its causes; return whether the link
        is new (False: they were linked already)."""
        return bool(
            self._affected(
                "INSERT INTO service_call_parts (service_call, call_id, linked_at) "
                "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (service_call, call_id, now),
            )
        )

    def service_call_parts(self, service_call: int) -> list[int]:
        """The calls linked to a service-level call, in the order they were linked."""
        rows = self._run(
            "SELECT call_id FROM service_call_parts WHERE service_call=? "
            "ORDER BY linked_at, call_id",
            (service_call,),
        )
        return [int(row[0]) for row in rows]

    def service_calls_of(self, call_id: int) -> list[int]:
        """The service-level calls a call is linked to, oldest link first."""
        rows = self._run(
            "SELECT service_call FROM service_call_parts WHERE call_id=? "
            "ORDER BY linked_at, service_call",
            (call_id,),
        )
        return [int(row[0]) for row in rows]

    def put_storm_member(self, umbrella_id: int, fingerprint: str, summary: str) -> None:
        self._upsert(STORM_MEMBERS, [(umbrella_id, fingerprint, summary)])

    def drop_storm_member(self, umbrella_id: int, fingerprint: str) -> None:
        self._run(
            "DELETE FROM storm_members WHERE umbrella_id=? AND fingerprint=?",
            (umbrella_id, fingerprint),
        )

    def storm_members(self, umbrella_id: int) -> list[tuple[str, str]]:
        """(fingerprint, summary) of the problems an umbrella call lists."""
        rows = self._run(
            "SELECT fingerprint, summary FROM storm_members WHERE umbrella_id=? ORDER BY summary",
            (umbrella_id,),
        )
        return [(fp, text) for fp, text in rows]

    def storm_list(
        self, umbrella_id: int, limit: int, recovered_prefix: str
    ) -> tuple[int, int, list[str]]:
        """How many problems an umbrella call lists, how many of them have recovered (their
        summary starts with `recovered_prefix`), and the first `limit` summaries: those still
        failing first, each part in the order of its text. Costs the same whatever the count."""
        marked = f"substr(summary, 1, {len(recovered_prefix)}) = ?"
        row = self._run(
            f"SELECT count(*), coalesce(sum(CASE WHEN {marked} THEN 1 ELSE 0 END), 0) "  # noqa: S608 -- a constant length, values bound  # nosec B608
            "FROM storm_members WHERE umbrella_id=?",
            (recovered_prefix, umbrella_id),
        ).fetchone()
        shown = self._run(
            f"SELECT summary FROM storm_members WHERE umbrella_id=? "  # noqa: S608 -- a constant length and collation, values bound  # nosec B608
            f"ORDER BY {marked}, summary{self._BINARY} LIMIT ?",
            (umbrella_id, recovered_prefix, limit),
        )
        total, recovered = (int(row[0]), int(row[1])) if row else (0, 0)
        return total, recovered, [str(text) for (text,) in shown]

    # -- the outbox and links to tickets ------------------------------------------------------

    def _op(self, row: Sequence[Any]) -> OutboxOp:
        return OutboxOp(*self._json_fifth(row))

    def enqueue(self, op: OutboxOp) -> int:
        return self._insert(
            "INSERT INTO outbox (call_id, sink, op, payload, created_at, next_attempt_at, "
            "status) VALUES (?, ?, ?, ?, ?, ?, 'pending')",
            (
                op.call_id,
                op.sink,
                op.op,
                self._json_in(op.payload),
                op.created_at,
                max(op.created_at, op.next_attempt_at),  # later: held back (quiet hours)
            ),
        )

    def has_ops(self, call_id: int, sink: str) -> bool:
        """Whether anything for this call was ever queued for `sink`, delivered or not, on its
        own or in a digest (collector/store/digests.py)."""
        return (
            self._run(
                "SELECT 1 FROM outbox WHERE call_id=? AND sink=? UNION ALL "
                "SELECT 1 FROM notify_folded WHERE call_id=? AND sink=? LIMIT 1",
                (call_id, sink, call_id, sink),
            ).fetchone()
            is not None
        )

    def release_held(self, call_id: int, sink: str, now: float) -> int:
        """Make this call's operations for `sink` that wait for a later time due now (an
        urgent notification must not wait behind a quiet-hours one); return how many."""
        return self._affected(
            "UPDATE outbox SET next_attempt_at=? WHERE call_id=? AND sink=? "
            "AND status='pending' AND next_attempt_at>? AND attempts=0",
            (now, call_id, sink, now),
        )

    def due_ops(self, now: float, limit: int) -> list[OutboxOp]:
        """Pending operations that are due and first in line for their call."""
        rows = self._run(
            f"SELECT {OP_COLUMNS} FROM outbox o WHERE status = 'pending' "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            f"AND next_attempt_at <= ? AND {FIRST_IN_LINE} ORDER BY id LIMIT ?",
            (now, limit),
        )
        return [self._op(row) for row in rows]

    def has_undelivered(self, call_id: int, sink: str) -> bool:
        return (
            self._run(
                "SELECT 1 FROM outbox WHERE call_id=? AND sink=? "
                "AND status IN ('pending', 'dead') LIMIT 1",
                (call_id, sink),
            ).fetchone()
            is not None
        )

    def next_due_at(self) -> float | None:
        row = self._run(
            "SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'"
        ).fetchone()
        return row[0] if row else None

    def mark_done(self, op_id: int, now: float) -> None:
        self._run(
            "UPDATE outbox SET status='done', delivered_at=?, attempts=attempts+1, "  # noqa: S608 -- constant clause, values bound  # nosec B608
            f"last_error=NULL{self._LEASE_CLEAR} WHERE id=?",
            (now, op_id),
        )

    def mark_retry(self, op_id: int, next_attempt_at: float, error: str) -> None:
        self._run(
            "UPDATE outbox SET attempts=attempts+1, next_attempt_at=?, "  # noqa: S608 -- constant clause, values bound  # nosec B608
            f"last_error=?{self._LEASE_CLEAR} WHERE id=?",
            (next_attempt_at, error, op_id),
        )

    def mark_dead(self, op_id: int, error: str) -> None:
        self._run(
            "UPDATE outbox SET status='dead', attempts=attempts+1, "  # noqa: S608 -- constant clause, values bound  # nosec B608
            f"last_error=?{self._LEASE_CLEAR} WHERE id=?",
            (error, op_id),
        )

    def list_ops(self, status: str | None, limit: int) -> list[OutboxOp]:
        where, args = ("WHERE status=?", [status]) if status else ("", [])
        rows = self._run(
            f"SELECT {OP_COLUMNS} FROM outbox {where} "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        return [self._op(row) for row in rows]

    def retry_dead(self, op_id: int | None, now: float) -> int:
        """Put dead letters (one, or all) back in line; return how many."""
        if op_id is None:
            return self._affected(
                "UPDATE outbox SET status='pending', next_attempt_at=? WHERE status='dead'", (now,)
            )
        return self._affected(
            "UPDATE outbox SET status='pending', next_attempt_at=? WHERE status='dead' AND id=?",
            (now, op_id),
        )

    def discard_dead(self, op_id: int, now: float) -> int:
        """Give up on one dead letter, so the call's later operations can go; return 0 or 1."""
        return self._affected(
            "UPDATE outbox SET status='done', delivered_at=?, last_error='discarded by an "
            "operator: ' || coalesce(last_error, '') WHERE status='dead' AND id=?",
            (now, op_id),
        )

    def outbox_counts(self) -> dict[tuple[str, str], int]:
        """(sink, status) -> count, for pending and dead operations."""
        rows = self._run(
            "SELECT sink, status, count(*) FROM outbox "
            "WHERE status IN ('pending', 'dead') GROUP BY sink, status"
        )
        return {(sink, status): int(count) for sink, status, count in rows}

    def outbox_oldest_pending(self) -> dict[str, float]:
        """sink -> since when its oldest pending operation has been due (Unix time): when it
        was written, or for one held back (a notification in quiet hours) when it falls due."""
        rows = self._run(
            "SELECT sink, min(CASE WHEN attempts = 0 AND next_attempt_at > created_at "
            "THEN next_attempt_at ELSE created_at END) FROM outbox WHERE status = 'pending' "
            "GROUP BY sink"
        )
        return {sink: float(created_at) for sink, created_at in rows}

    def get_link(self, call_id: int, sink: str) -> CallLink | None:
        row = self._run(
            f"SELECT {LINK_COLUMNS} FROM call_links "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "WHERE call_id=? AND sink=?",
            (call_id, sink),
        ).fetchone()
        return CallLink(*row) if row else None

    def save_link(self, link: CallLink) -> None:
        self._upsert(
            LINKS,
            [
                (
                    link.call_id,
                    link.sink,
                    link.remote_id,
                    link.url,
                    link.remote_state,
                    link.checked_at,
                    link.acknowledged_at,
                    link.escalated_at,
                    link.desk_closed_at,
                )
            ],
        )

    def open_links(self) -> list[CallLink]:
        """Links of calls that are open here: the ones two-way sync watches."""
        rows = self._run(
            "SELECT l.call_id, l.sink, l.remote_id, l.url, l.remote_state, l.checked_at, "
            "l.acknowledged_at, l.escalated_at, l.desk_closed_at FROM call_links l "
            "JOIN calls c ON c.id = l.call_id WHERE c.status = 'open'"
        )
        return [CallLink(*row) for row in rows]


def column_arrays(upsert: Upsert, rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as one list per column, for a bulk write that unnests arrays. psycopg refuses a
    float8[] that mixes int and float, and an interval or a measurement may come as an int."""
    columns: list[list[Any]] = [list(values) for values in zip(*rows, strict=True)]
    for index, kind in enumerate(upsert.types):
        if kind == "float8":
            columns[index] = [None if v is None else float(v) for v in columns[index]]
    return columns
