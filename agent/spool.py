"""The disk spool: every report is on disk before it is sent, and leaves only when acknowledged."""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SUFFIX = ".report"


@dataclass(frozen=True, slots=True)
class SpoolStats:
    reports: int
    bytes: int
    dropped: int


class Spool:
    """A directory of reports named by seq, plus the agent's identity (boot id, next seq).

    Files are written to a temporary name, fsynced and renamed, so a crash leaves either the
    whole report or none of it. When a bound is hit the oldest report goes first, and the drop
    is counted (and reported by the agent).
    """

    def __init__(self, directory: Path, max_bytes: int, max_reports: int) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._rejected = directory / "rejected"
        self._max_bytes = max_bytes
        self._max_reports = max_reports
        self._lock = threading.Lock()
        self._state_path = directory / "state.json"
        state = self._read_state()
        self.boot_id: str = str(state.get("boot_id") or uuid.uuid4().hex)
        self._next_seq: int = int(state.get("next_seq", 1))
        self.dropped: int = int(state.get("dropped", 0))
        self._entries: dict[int, int] = {}  # seq -> size
        for path in self._dir.glob(f"*{_SUFFIX}"):
            try:
                self._entries[int(path.stem)] = path.stat().st_size
            except (ValueError, OSError):
                log.warning("ignoring unexpected file in the spool: %s", path)
        self._bytes = sum(self._entries.values())
        if self._entries:
            # Never reuse a seq that may already have reached the collector.
            self._next_seq = max(self._next_seq, max(self._entries) + 1)
        for tmp in self._dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        self._write_state()

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self._state_path.read_text())
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("spool state %s unreadable (%s); starting a new sequence",
                      self._state_path, exc)
            return {}

    def _write_state(self) -> None:
        _atomic_write(self._state_path, json.dumps(
            {"boot_id": self.boot_id, "next_seq": self._next_seq, "dropped": self.dropped}
        ).encode())

    def next_seq(self) -> int:
        """Reserve the next seq, durably, so it is never used twice."""
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            self._write_state()
            return seq

    def put(self, seq: int, body: bytes) -> None:
        """Store a report; drop the oldest ones if a bound would be passed."""
        with self._lock:
            _atomic_write(self._path(seq), body)
            self._bytes += len(body) - self._entries.get(seq, 0)
            self._entries[seq] = len(body)
            dropped = 0
            while len(self._entries) > self._max_reports or self._bytes > self._max_bytes:
                oldest = min(self._entries)
                if oldest == seq:
                    break  # never drop the report just written
                self._path(oldest).unlink(missing_ok=True)
                self._bytes -= self._entries.pop(oldest)
                dropped += 1
            if dropped:
                self.dropped += dropped
                self._write_state()
                log.warning("spool full: dropped the %d oldest report(s); %d dropped in all. "
                            "Raise spool.max_bytes or spool.max_reports, or fix the collector",
                            dropped, self.dropped)

    def oldest(self) -> tuple[int, bytes] | None:
        """The oldest unacknowledged report, if any."""
        with self._lock:
            while self._entries:
                seq = min(self._entries)
                try:
                    return seq, self._path(seq).read_bytes()
                except FileNotFoundError:
                    self._bytes -= self._entries.pop(seq)
            return None

    def ack(self, seq: int) -> None:
        """The collector has the report: remove it."""
        with self._lock:
            self._path(seq).unlink(missing_ok=True)
            self._bytes -= self._entries.pop(seq, 0)

    def reject(self, seq: int, reason: str) -> None:
        """Keep a report the collector will never accept aside, so it does not block the rest."""
        with self._lock:
            self._rejected.mkdir(exist_ok=True)
            source = self._path(seq)
            if source.exists():
                os.replace(source, self._rejected / source.name)
                (self._rejected / f"{seq:020d}.reason").write_text(reason + "\n")
            self._bytes -= self._entries.pop(seq, 0)

    def stats(self) -> SpoolStats:
        with self._lock:
            return SpoolStats(len(self._entries), self._bytes, self.dropped)

    def _path(self, seq: int) -> Path:
        return self._dir / f"{seq:020d}{_SUFFIX}"


def _atomic_write(path: Path, body: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
