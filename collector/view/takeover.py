"""Taking over a dead replica's hosts in bulk.

Replicas sharing one PostgreSQL store each keep a view of the hosts that report through them
(view/replica.py). When a replica dies, the load balancer sends its agents to the others, and
each of their reports would find this view of its host out of date and reload it alone: 5,000
hosts one query after another, while reports queue behind them. Instead, as soon as reloads
show up, this replica asks the store which hosts were last moved on by replicas that are gone
(each replica holds a lock while its connection lives), and loads them in chunks, a few
queries per chunk, yielding between chunks so that reports are served meanwhile. It notes
itself as their holder, so that another survivor does not load them too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from collector.store.protocols import ReplicaStore
from collector.view.fleet import Fleet
from collector.view.replica import ReplicaSync

log = logging.getLogger(__name__)

# Hosts loaded per transaction: a few queries each, and a short hold of the event loop.
CHUNK = 100


class Takeover:
    """Load the hosts of replicas that are gone into this view, in bulk."""

    def __init__(
        self, fleet: Fleet, store: ReplicaStore, sync: ReplicaSync, chunk: int = CHUNK
    ) -> None:
        self._fleet = fleet
        self._store = store
        self._sync = sync
        self._chunk = chunk
        self._seen = 0  # sync.reloaded when last looked at

    def slices(self, now: float) -> Iterator[None]:
        """Take over what dead replicas left, yielding after each chunk; nothing at all (not
        even a query) unless this view has had to reload hosts since the last time."""
        if not self._store.shared or self._sync.reloaded == self._seen:
            return
        self._seen = self._sync.reloaded
        orphans = self._store.orphaned_hosts()
        if not orphans:
            return
        hosts = sorted(orphans)
        began = time.perf_counter()
        loaded = 0
        for start in range(0, len(hosts), self._chunk):
            loaded += self._take(hosts[start : start + self._chunk], orphans, now)
            yield
        log.warning(
            "took over %d host(s) left by replicas that are gone (%d loaded, the rest "
            "already current here) in %.2f s",
            len(hosts),
            loaded,
            time.perf_counter() - began,
        )

    def _take(self, hosts: list[str], orphans: dict[str, int], now: float) -> int:
        """One chunk, in one transaction: lock, load those this view holds at another
        version, note this replica as their holder. Returns how many were loaded."""
        fleet = self._fleet
        with self._store.transaction():
            locked = self._store.lock_hosts(hosts)
            behind = [h for h, (_, version) in locked.items() if fleet.version_of(h) != version]
            for host, snapshot in self._store.load_host_snapshots(behind, locked).items():
                fleet.reload_host(snapshot, host, now)
            # Those another replica moved on since they were found are its own now.
            self._store.adopt_hosts(
                {h: version for h, (_, version) in locked.items() if orphans.get(h) == version}
            )
        return len(behind)
