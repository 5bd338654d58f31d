"""The replica protocol, in one place: lock hosts, compare versions, reload, bump.

Collector replicas sharing one PostgreSQL store each keep a view of the fleet in memory. A
host's stored version moves on every change to what is stored about it. Whatever changes a
host (a report, the tick, a call resolved by hand) does so inside `ReplicaSync.hold()`, which
locks the host for the transaction, reloads this view of it when another replica moved it
on, and moves its version on when the change is stored. On a store that is not shared
(SQLite: one collector owns the file, and BEGIN IMMEDIATE keeps everyone else out) this view
is always current, and `hold()` is just the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from collector.store.protocols import ReplicaStore
from collector.view.fleet import Fleet


class HeldHosts:
    """The hosts a hold() locked, and those whose stored version moves when it ends."""

    def __init__(self, shared: bool, locked: Iterable[str]) -> None:
        self._shared = shared
        self._locked = frozenset(locked)
        self._changed: set[str] = set()

    def missing(self, host: str) -> bool:
        """Whether the shared store holds nothing about the host (another replica forgot
        it, or it never reported): there is nothing to evaluate."""
        return self._shared and host not in self._locked

    def changed(self, hosts: Iterable[str]) -> None:
        """Mark hosts changed: their versions move on when the hold ends."""
        self._changed.update(hosts)


class ReplicaSync:
    """Keep this replica's view of each host it changes current with the shared store."""

    def __init__(self, fleet: Fleet, store: ReplicaStore) -> None:
        self._fleet = fleet
        self._store = store
        # Hosts this view reloaded because another replica had moved them on: when it
        # grows, a replica may have died and left its hosts to this one (view/takeover.py).
        self.reloaded = 0

    @contextmanager
    def hold(self, hosts: Sequence[str], now: float) -> Iterator[HeldHosts]:
        """A transaction holding `hosts`: other replicas wait for them until it ends, this
        view of each is brought up to date first, and the versions of those marked changed
        move on at the end (inside the transaction)."""
        store = self._store
        with store.transaction():
            if not store.shared:
                yield HeldHosts(False, ())
                return
            locked = store.lock_hosts(hosts)
            behind = [
                host
                for host, (_, version) in locked.items()
                if not self._fleet.is_current(host, version)
            ]
            if behind:  # all of them in a few queries, not a few each
                self.reloaded += len(behind)
                for host, snapshot in store.load_host_snapshots(behind, locked).items():
                    self._fleet.reload_host(snapshot, host, now)
            held = HeldHosts(True, locked)
            yield held
            if held._changed:
                self._fleet.set_versions(store.bump_host_versions(sorted(held._changed)))

    def current_of(self, hosts: Iterable[str]) -> list[str]:
        """Those of `hosts` this view holds at their stored version (all of them, unshared)."""
        if not self._store.shared:
            return list(hosts)
        versions = self._store.host_versions()
        return [host for host in hosts if self._fleet.version_of(host) == versions.get(host)]
