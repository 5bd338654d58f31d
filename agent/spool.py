"""The disk spool: every report is on disk before it is sent, and leaves only when acknowledged."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SUFFIX = ".report"
# Seqs are reserved on disk this many at a time, so a report costs one fsync, not two. A crash
# leaves the rest of a block unused (a gap the collector ignores); a clean close() does not.
SEQ_BLOCK = 64
DEFAULT_MAX_AGE_SECONDS = 7 * 86400


@dataclass(frozen=True, slots=True)
class SpoolStats:
    reports: int
    bytes: int
    dropped: int


class Spool:
    """A directory of reports named by seq, plus the agent's identity (boot id, next seq).

    Files are written to a temporary name, fsynced and renamed, so a crash leaves either the
    whole report or none of it. When a bound (count, bytes or age) is hit the oldest report goes
    first, and the drop is counted (and reported by the agent). A report's age is its file's
    mtime, so it survives a restart.
    """

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        max_reports: int,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._rejected = directory / "rejected"
        self._max_bytes = max_bytes
        self._max_reports = max_reports
        self._max_age = max_age_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state_path = directory / "state.json"
        state = self._read_state()
        self.boot_id: str = str(state.get("boot_id") or uuid.uuid4().hex)
        self._next_seq: int = int(state.get("next_seq", 1))
        self._reserved_until = self._next_seq  # the seqs below it are reserved on disk
        self.dropped: int = int(state.get("dropped", 0))
        self._entries: dict[int, int] = {}  # seq -> size
        self._written: dict[int, float] = {}  # seq -> when it was spooled (Unix seconds)
        self._latest: tuple[int, bytes] | None = None  # the last put, to send without a read
        for path in self._dir.glob(f"*{_SUFFIX}"):
            try:
                seq, info = int(path.stem), path.stat()
            except (ValueError, OSError):
                log.warning("ignoring unexpected file in the spool: %s", path)
                continue
            self._entries[seq], self._written[seq] = info.st_size, info.st_mtime
        self._bytes = sum(self._entries.values())
        if self._entries:
            # Never reuse a seq that may already have reached the collector.
            self._next_seq = max(self._next_seq, max(self._entries) + 1)
        for tmp in self._dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        with self._lock:
            self._enforce_bounds(keep=None)
        self._write_state()

    def set_bounds(self, max_bytes: int, max_reports: int, max_age_seconds: float) -> None:
        """Apply new bounds (on reload); they take effect at the next report."""
        with self._lock:
            self._max_bytes, self._max_reports = max_bytes, max_reports
            self._max_age = max_age_seconds

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self._state_path.read_text())
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error(
                "spool state %s unreadable (%s); starting a new sequence", self._state_path, exc
            )
            return {}

    def _write_state(self) -> None:
        """Record identity, drops, and the seqs reserved so far. Hold the lock (or be in init)."""
        self._reserved_until = max(self._reserved_until, self._next_seq)
        _atomic_write(
            self._state_path,
            json.dumps(
                {"boot_id": self.boot_id, "next_seq": self._reserved_until, "dropped": self.dropped}
            ).encode(),
        )

    def next_seq(self) -> int:
        """Take the next seq; it is reserved on disk first, so it is never used twice."""
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            if self._next_seq > self._reserved_until:
                self._reserved_until = seq + SEQ_BLOCK
                self._write_state()
            return seq

    def close(self) -> None:
        """Give back the seqs reserved but not used, so a clean restart leaves no gap."""
        with self._lock:
            self._reserved_until = self._next_seq
            self._write_state()

    def put(self, seq: int, body: bytes) -> None:
        """Store a report; drop the oldest ones if a bound would be passed."""
        with self._lock:
            written = self._clock()
            _atomic_write(self._path(seq), body, mtime=written)
            self._bytes += len(body) - self._entries.get(seq, 0)
            self._entries[seq] = len(body)
            self._written[seq] = written
            self._latest = (seq, body)
            if self._enforce_bounds(keep=seq):
                self._write_state()

    def _enforce_bounds(self, keep: int | None) -> int:
        """Drop the oldest reports past a bound, never `keep`; count them. Hold the lock."""
        too_old = too_many = 0
        cutoff = self._clock() - self._max_age
        while self._entries:
            oldest = min(self._entries)
            if oldest == keep:
                break  # never drop the report just written
            if self._written.get(oldest, cutoff) < cutoff:
                too_old += 1
            elif len(self._entries) > self._max_reports or self._bytes > self._max_bytes:
                too_many += 1
            else:
                break
            self._forget(oldest)
            self._path(oldest).unlink(missing_ok=True)
        self.dropped += too_old + too_many
        if too_old:
            log.warning(
                "spool: dropped %d report(s) older than spool.max_age (%gs); %d dropped "
                "in all. Raise spool.max_age, or fix the collector",
                too_old,
                self._max_age,
                self.dropped,
            )
        if too_many:
            log.warning(
                "spool full: dropped the %d oldest report(s); %d dropped in all. "
                "Raise spool.max_bytes or spool.max_reports, or fix the collector",
                too_many,
                self.dropped,
            )
        return too_old + too_many

    def _forget(self, seq: int) -> None:
        if self._latest is not None and self._latest[0] == seq:
            self._latest = None
        self._bytes -= self._entries.pop(seq, 0)
        self._written.pop(seq, None)

    def oldest(self) -> tuple[int, bytes] | None:
        """The oldest unacknowledged report, if any."""
        with self._lock:
            while self._entries:
                seq = min(self._entries)
                if self._latest is not None and self._latest[0] == seq:
                    return self._latest
                try:
                    return seq, self._path(seq).read_bytes()
                except FileNotFoundError:
                    self._forget(seq)
            return None

    def ack(self, seq: int) -> None:
        """The collector has the report: remove it."""
        with self._lock:
            self._path(seq).unlink(missing_ok=True)
            self._forget(seq)

    def reject(self, seq: int, reason: str) -> None:
        """Keep a report the collector will never accept aside, so it does not block the rest."""
        with self._lock:
            self._rejected.mkdir(exist_ok=True, mode=0o700)
            source = self._path(seq)
            if source.exists():
                os.replace(source, self._rejected / source.name)
                _atomic_write(self._rejected / f"{seq:020d}.reason", (reason + "\n").encode())
            self._forget(seq)

    def stats(self) -> SpoolStats:
        with self._lock:
            return SpoolStats(len(self._entries), self._bytes, self.dropped)

    def _path(self, seq: int) -> Path:
        return self._dir / f"{seq:020d}{_SUFFIX}"


def _atomic_write(path: Path, body: bytes, mtime: float | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view) :]
        if mtime is not None:
            # The spool's clock, not the file system's, dates a report (for spool.max_age).
            os.utime(fd, (mtime, mtime))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
