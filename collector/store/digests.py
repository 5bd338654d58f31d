"""The store's part of notification digests: the rate limit's count and the folded messages.

`notify_sent` counts the messages each channel was sent (one row per message), like storm
control's `storm_opens`: replicas sharing the store count against one limit, and a restart
goes on counting where it stood. `notify_folded` keeps each notification that went into a
digest instead of going on its own: one the rate limit held back (`umbrella_id` NULL, carried
by the rate digest `digest_op` once that is sealed), or one a storm's digest took in
(`umbrella_id`: the storm's umbrella call). Both stores run these statements (sql.py binds the
placeholders); the PostgreSQL store takes a transaction lock first (`_lock_notify`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collector.store.records import OutboxOp

# The outbox operation of a rate digest (a notification's is "notify").
DIGEST_OP = "digest"


class DigestRows:
    """Mixed into SQLStore: the rows behind notification digests."""

    def _run(self, query: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def _affected(self, query: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    def _insert(self, query: str, params: Sequence[Any]) -> int:
        raise NotImplementedError

    def _json_in(self, value: Any, *, sort_keys: bool = False) -> Any:
        raise NotImplementedError

    def _op(self, row: Sequence[Any]) -> OutboxOp:
        raise NotImplementedError

    def _lock_notify(self) -> None:
        """Keep other writers off the digests' rows until the transaction ends (a store with
        one writer has nothing to do)."""

    def claim_notify_slot(self, sink: str, now: float, window: float, limit: int) -> float:
        """Count a message to `sink` if fewer than `limit` were counted within the `window`
        seconds before `now`, and return `now`; else count nothing and return when the oldest
        message that fills the window leaves it (the time a digest may go)."""
        self._lock_notify()
        since = now - window
        self._run("DELETE FROM notify_sent WHERE sink=? AND at <= ?", (sink, since))
        rows = self._run(
            "SELECT at FROM notify_sent WHERE sink=? AND at > ? ORDER BY at DESC LIMIT ?",
            (sink, since, limit),
        ).fetchall()
        if len(rows) >= limit:
            return float(rows[-1][0]) + window
        self._run("INSERT INTO notify_sent (sink, at) VALUES (?, ?)", (sink, now))
        return now

    def count_notify_sent(self, sink: str, now: float) -> None:
        """Count a message to `sink` that goes whatever the count (a digest)."""
        self._run("INSERT INTO notify_sent (sink, at) VALUES (?, ?)", (sink, now))

    def pending_digest(self, sink: str) -> int | None:
        """The rate digest for `sink` that still takes notifications in (not sealed yet)."""
        self._lock_notify()
        row = self._run(
            "SELECT id FROM outbox o WHERE sink=? AND op=? AND status='pending' "
            "AND NOT EXISTS (SELECT 1 FROM notify_folded f WHERE f.digest_op = o.id) "
            "ORDER BY id LIMIT 1",
            (sink, DIGEST_OP),
        ).fetchone()
        return int(row[0]) if row else None

    def fold_notification(
        self, sink: str, call_id: int, umbrella_id: int | None, line: str, now: float
    ) -> int:
        """Keep a notification that goes in a digest instead of on its own."""
        return self._insert(
            "INSERT INTO notify_folded (sink, call_id, umbrella_id, line, at) "
            "VALUES (?, ?, ?, ?, ?)",
            (sink, call_id, umbrella_id, line, now),
        )

    def seal_digest(self, op_id: int, sink: str) -> list[tuple[float, str]]:
        """The (time, line) of each notification rate digest `op_id` carries: the ones held
        back for `sink` until now, taken the first time (a retry gets the same ones)."""
        self._lock_notify()
        taken = self._run(
            "SELECT at, line FROM notify_folded WHERE digest_op=? ORDER BY id", (op_id,)
        ).fetchall()
        if not taken:
            self._run(
                "UPDATE notify_folded SET digest_op=? "
                "WHERE sink=? AND umbrella_id IS NULL AND digest_op IS NULL",
                (op_id, sink),
            )
            taken = self._run(
                "SELECT at, line FROM notify_folded WHERE digest_op=? ORDER BY id", (op_id,)
            ).fetchall()
        return [(float(at), str(line)) for at, line in taken]

    def folded_into(self, call_id: int, sink: str) -> int | None:
        """The storm umbrella whose digest took this call's messages to `sink` in, if one did."""
        row = self._run(
            "SELECT umbrella_id FROM notify_folded WHERE call_id=? AND sink=? "
            "AND umbrella_id IS NOT NULL LIMIT 1",
            (call_id, sink),
        ).fetchone()
        return int(row[0]) if row else None

    def unfold(self, call_id: int, sink: str) -> None:
        """The call's messages to `sink` go on their own again (its storm is over)."""
        self._run(
            "DELETE FROM notify_folded WHERE call_id=? AND sink=? AND umbrella_id IS NOT NULL",
            (call_id, sink),
        )

    def storm_folded(self, umbrella_id: int, sink: str, limit: int) -> tuple[int, int, list[str]]:
        """How many calls a storm's digest to `sink` took in, how many of them are resolved,
        and the first `limit` lines."""
        row = self._run(
            "SELECT count(*), sum(CASE WHEN c.status = 'resolved' THEN 1 ELSE 0 END) "
            "FROM notify_folded f JOIN calls c ON c.id = f.call_id "
            "WHERE f.umbrella_id=? AND f.sink=?",
            (umbrella_id, sink),
        ).fetchone()
        lines = self._run(
            "SELECT line FROM notify_folded WHERE umbrella_id=? AND sink=? ORDER BY id LIMIT ?",
            (umbrella_id, sink, limit),
        ).fetchall()
        total, resolved = (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
        return total, resolved, [str(line) for (line,) in lines]

    def unsent_notifications(self, sink: str, group: str, rule: str) -> list[OutboxOp]:
        """Notifications to `sink` about calls of `group` (not of `rule`: the storm umbrella)
        that have not been tried yet."""
        from collector.store.sql import OP_COLUMNS

        rows = self._run(
            f"SELECT {', '.join('o.' + c for c in OP_COLUMNS.split(', '))} FROM outbox o "  # noqa: S608 -- constant column lists, values bound  # nosec B608
            "JOIN calls c ON c.id = o.call_id WHERE o.sink=? AND o.op='notify' "
            "AND o.status='pending' AND o.attempts=0 AND c.grp=? AND c.rule<>? ORDER BY o.id",
            (sink, group, rule),
        )
        return [self._op(row) for row in rows]

    def supersede_op(self, op_id: int, now: float, why: str) -> bool:
        """Mark an operation that was never tried done without sending it, saying why."""
        return (
            self._affected(
                "UPDATE outbox SET status='done', delivered_at=?, last_error=? "
                "WHERE id=? AND status='pending' AND attempts=0",
                (now, why, op_id),
            )
            > 0
        )

    def last_planned_at(self, call_id: int, sink: str) -> float | None:
        """When the latest notification about the call to `sink` was (or is) to go."""
        row = self._run(
            "SELECT max(next_attempt_at) FROM outbox WHERE call_id=? AND sink=?",
            (call_id, sink),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def set_payload(self, op_id: int, payload: dict[str, Any]) -> None:
        """Keep what an operation carries as it was first sent: a retry sends the same."""
        self._run("UPDATE outbox SET payload=? WHERE id=?", (self._json_in(payload), op_id))
