#!/usr/bin/env python3
"""Measure a breach of thousands of hosts at one moment through storm control (issue 22).

Starts one real collector with storm control on (the shipped defaults unless `--max-calls`,
`--window` or `--update-every` say otherwise), its groups' calls going to a webhook help desk
run by this script (bench/fleet.py's `Desk`, which keeps tickets). Every host first sends one
healthy report, so that it is known; then all of them breach a rule with `for: 0s` at once,
over `--connections` kept-alive connections. The first `max_calls` problems open calls of
their own; the rest are held back on their group's umbrella call, whose member list and
ticket are brought up to date in batches.

Prints: seconds until every report was answered; seconds until the desk holds every ticket
it should (the calls opened before the storm, the umbrella, and the umbrella's count listing
every held-back problem); what the desk received (opens, updates and their bytes); the calls
in the store and the umbrella's description size; the store's growth in bytes, in all and per
held-back host; the collector's CPU seconds and peak RSS over the breach. Then, unless
`--no-recovery`, every host reports healthy again and the time until the umbrella and every
call are resolved at the desk.

Run from the repo root:

    python bench/storm.py --hosts 5000
    python bench/storm.py --hosts 1000 --json
    python bench/storm.py --hosts 5000 --store postgresql --dsn "host=127.0.0.1 dbname=test"

Everything runs on loopback, each wait is bounded by `--timeout`, and the collector is stopped
by its PID at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(BENCH_DIR.parent) not in sys.path:
    sys.path.append(str(BENCH_DIR.parent))  # for bench.common
from bench.common import (  # noqa: E402
    load_ingest_module,
    positive_float,
    positive_int,
    show,
)

# The reports' interval: far longer than a run, so that no host goes STALE during it.
REPORT_INTERVAL = 3600.0
# The umbrella's summary starts with its count (collector/incidents/storm.py, _umbrella_text).
STORM_COUNT = re.compile(r"^\[storm\] (\d+) problem")
STORM_RULE = "call_storm"


def log(message: str) -> None:
    print(f"[storm] {message}", file=sys.stderr, flush=True)


def load_fleet() -> ModuleType:
    """bench/fleet.py (its Desk, start_collectors, write_tokens and store_bytes)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("runwatch_bench_fleet", BENCH_DIR / "fleet.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


fleet = load_fleet()


class StormDesk(fleet.Desk):  # type: ignore[misc,name-defined]
    """bench/fleet.py's webhook desk, which also notes when each event came, for which
    ticket and rule, how large it was, and what count the umbrella's summary gave."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.log: list[tuple[float, str, str, int]] = []  # at, event, ticket id, body bytes
        self.rules: dict[str, str] = {}  # ticket id: rule
        self.listed: list[tuple[float, int]] = []  # the umbrella's counts as they came

    def receive(self, event: dict[str, Any], key: str | None) -> dict[str, Any]:
        answer: dict[str, Any] = super().receive(event, key)
        at = time.time()
        ticket = str(answer["id"])
        with self.lock:
            kind = str(event["event"])
            if kind == "open":
                self.rules[ticket] = str(event.get("rule"))
            self.log.append((at, kind, ticket, len(json.dumps(event))))
            if self.rules.get(ticket) == STORM_RULE and kind in ("open", "update"):
                found = STORM_COUNT.match(str(event.get("summary") or ""))
                if found:
                    self.listed.append((at, int(found.group(1))))
        return answer

    def snapshot(self) -> dict[str, Any]:
        """Calls (other than umbrellas) opened and resolved, umbrellas opened and resolved,
        and the largest count an umbrella listed so far."""
        with self.lock:
            umbrellas = {t for t, rule in self.rules.items() if rule == STORM_RULE}
            calls = set(self.rules) - umbrellas
            return {
                "calls_opened": len(calls),
                "calls_resolved": len(calls & self.resolved),
                "umbrellas_opened": len(umbrellas),
                "umbrellas_resolved": len(umbrellas & self.resolved),
                "listed": max((n for _, n in self.listed), default=0),
            }

    def events_since(self, since: float) -> dict[str, Any]:
        """What came after `since`: events by kind, and the bytes of the umbrellas' updates."""
        with self.lock:
            recent = [entry for entry in self.log if entry[0] >= since]
            rules = dict(self.rules)
        kinds: dict[str, int] = {}
        for _, kind, _, _ in recent:
            kinds[kind] = kinds.get(kind, 0) + 1
        umbrella = [e for e in recent if rules.get(e[2]) == STORM_RULE and e[1] == "update"]
        return {
            "events": len(recent),
            "by_kind": dict(sorted(kinds.items())),
            "bytes": sum(e[3] for e in recent),
            "umbrella_updates": len(umbrella),
            "umbrella_update_bytes": sum(e[3] for e in umbrella),
            "umbrella_update_max_bytes": max((e[3] for e in umbrella), default=0),
        }

    def _times(self, since: float, kind: str, umbrella: bool) -> list[float]:
        """When events of this kind came for umbrellas (or for the other calls)."""
        with self.lock:
            return [
                at
                for at, k, ticket, _ in self.log
                if at >= since and k == kind and (self.rules.get(ticket) == STORM_RULE) == umbrella
            ]

    def first(self, since: float, kind: str, umbrella: bool) -> float | None:
        return min(self._times(since, kind, umbrella), default=None)

    def last(self, since: float, kind: str, umbrella: bool) -> float | None:
        return max(self._times(since, kind, umbrella), default=None)

    def listed_at(self, count: int) -> float | None:
        """When the umbrella first listed `count` problems."""
        with self.lock:
            return min((at for at, n in self.listed if n >= count), default=None)


# -- reports -----------------------------------------------------------------------------------


def report_body(host: str, seq: int, value: float) -> bytes:
    """One report with the breach rule's measurement (bench/fleet.py's BREACH_RULE)."""
    from checks.schema import SCHEMA_VERSION, Measurement, Report, encode

    now = time.time()
    return encode(
        Report(
            schema_version=SCHEMA_VERSION,
            host=host,
            agent_version="bench",
            boot_id="storm-bench",
            seq=seq,
            sent_at=now,
            interval_seconds=REPORT_INTERVAL,
            measurements=[
                Measurement(
                    check="bench",
                    name=fleet.BREACH_RULE["metric"],
                    value=value,
                    unit="ratio",
                    timestamp=now,
                )
            ],
            checks=[],
        )
    )


def post_all(
    port: int, bodies: list[tuple[str, bytes]], connections: int, timeout: float
) -> dict[str, Any]:
    """POST every (token, body) at once over `connections` kept-alive connections, as
    bench/fleet.py's breach() does: all threads wait at a barrier, then send their share.
    Return the statuses, seconds until the last answer, and latencies."""
    statuses: list[int] = []
    latencies: list[tuple[float, float]] = []  # answered at (from the start), latency
    lock = threading.Lock()
    threads_n = max(1, min(connections, len(bodies)))
    barrier = threading.Barrier(threads_n + 1)
    began = [0.0]
    deadline = [0.0]

    def send(part: list[tuple[str, bytes]]) -> None:
        conn: http.client.HTTPConnection | None = None
        barrier.wait(60)
        for token, body in part:
            status, sent = 0, time.monotonic()
            for _ in range(3):  # a kept-alive connection the server has closed: reconnect
                if time.monotonic() > deadline[0]:
                    break
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                try:
                    conn.request(
                        "POST",
                        "/api/v1/reports",
                        body=body,
                        headers={
                            "Content-Type": "application/json",
                            "Authorization": f"Bearer {token}",
                        },
                    )
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = None
            done = time.monotonic()
            with lock:
                statuses.append(status)
                latencies.append((done - began[0], done - sent))
        if conn is not None:
            conn.close()

    threads = [
        threading.Thread(target=send, args=(bodies[n::threads_n],), daemon=True)
        for n in range(threads_n)
    ]
    for thread in threads:
        thread.start()
    began[0] = time.monotonic()
    deadline[0] = began[0] + timeout
    barrier.wait(60)
    for thread in threads:
        thread.join(max(0.1, deadline[0] + 65 - time.monotonic()))
    by_completion = [latency for _, latency in sorted(latencies)]
    took = max((at for at, _ in latencies), default=0.0)
    tenth = max(1, len(by_completion) // 10)
    return {
        "reports": len(bodies),
        "answered": len(statuses),
        "seconds": round(took, 2),
        "reports_per_second": round(len(statuses) / took, 1) if took else None,
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "latency_ms": {
            "p50": ms(percentile(sorted(by_completion), 0.5)),
            "p99": ms(percentile(sorted(by_completion), 0.99)),
            "max": ms(max(by_completion, default=None)),
            # The first and the last tenth to be answered: a hold-back that cost more as the
            # umbrella grew would show as a later tenth slower than the first.
            "first_tenth_p50": ms(percentile(sorted(by_completion[:tenth]), 0.5)),
            "last_tenth_p50": ms(percentile(sorted(by_completion[-tenth:]), 0.5)),
        },
    }


# -- the store ---------------------------------------------------------------------------------


def store_figures(store: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The store's size (files, or PostgreSQL's relation sizes), its rows where storm control
    writes, and the bytes of the texts it keeps."""
    figures: dict[str, Any] = {"bytes": fleet.store_bytes(store, workdir)}
    queries = {
        "calls": "SELECT count(*) FROM calls",
        "umbrellas": "SELECT count(*) FROM calls WHERE rule = ?",
        "call_events": "SELECT count(*) FROM call_events",
        "storm_members": "SELECT count(*) FROM storm_members",
        "outbox": "SELECT count(*) FROM outbox",
        "outbox_pending": "SELECT count(*) FROM outbox WHERE status = 'pending'",
        "call_texts_bytes": "SELECT coalesce(sum(length(summary) + length(description)), 0) "
        "FROM calls",
        "event_texts_bytes": "SELECT coalesce(sum(length(text)), 0) FROM call_events",
        "member_bytes": "SELECT coalesce(sum(length(fingerprint) + length(summary)), 0) "
        "FROM storm_members",
        "outbox_payload_bytes": "SELECT coalesce(sum(length(CAST(payload AS TEXT))), 0) "
        "FROM outbox",
        "umbrella_description_bytes": "SELECT coalesce(max(length(description)), 0) FROM calls "
        "WHERE rule = ?",
    }
    if store["backend"] == "sqlite":
        path = workdir / "collector0" / "data" / "runwatch.db"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            for name, sql in queries.items():
                params = (STORM_RULE,) if "?" in sql else ()
                figures[name] = int(db.execute(sql, params).fetchone()[0])
            # The database as of its last commit, checkpointed or still in the WAL: the
            # store's size whatever the WAL file's own (it does not shrink) says.
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            figures["pages_bytes"] = int(pages) * int(db.execute("PRAGMA page_size").fetchone()[0])
        finally:
            db.close()
        figures["files"] = {
            p.name: p.stat().st_size for p in sorted(path.parent.glob("runwatch.db*"))
        }
    else:
        import psycopg

        with psycopg.connect(store["dsn"], autocommit=True) as conn:
            for name, sql in queries.items():
                params = (STORM_RULE,) if "?" in sql else ()
                row = conn.execute(sql.replace("?", "%s"), params).fetchone()
                figures[name] = int(row[0]) if row else 0
    return figures


def growth(before: dict[str, Any], after: dict[str, Any], held: int) -> dict[str, Any]:
    """What the store gained between two store_figures(), in all and per held-back host."""
    names = ["bytes", "pages_bytes", "call_texts_bytes", "event_texts_bytes", "member_bytes"]
    names += ["outbox_payload_bytes"]
    out: dict[str, Any] = {}
    for name in names:
        if name in after and name in before:
            delta = after[name] - before[name]
            out[name] = delta
            out[f"{name}_per_held_back_host"] = round(delta / held) if held else None
    return out


# -- the run -----------------------------------------------------------------------------------


class Sampler:
    """The collector's RSS every 0.1 s, from /proc/PID/status, until stopped."""

    def __init__(self, ingest: ModuleType, pid: int) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ingest, pid), daemon=True)
        self._thread.start()

    def _run(self, ingest: ModuleType, pid: int) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(OSError, RuntimeError):
                self.samples.append(ingest.rss_bytes(pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return max(self.samples, default=0)


def wait_for(desk: StormDesk, done: Any, timeout: float, what: str) -> bool:
    """Poll the desk until `done(snapshot)` or the timeout; say so every 5 s."""
    deadline = time.monotonic() + timeout
    said = time.monotonic()
    while time.monotonic() < deadline:
        snapshot = desk.snapshot()
        if done(snapshot):
            return True
        if time.monotonic() - said >= 5:
            log(f"waiting for {what}: {snapshot}")
            said = time.monotonic()
        time.sleep(0.05)
    log(f"gave up waiting for {what} after {timeout:g} s: {desk.snapshot()}")
    return False


def wait_outbox(store: dict[str, Any], workdir: Path, timeout: float) -> int:
    """Wait until nothing is pending in the outbox (bounded); return what still is."""
    deadline = time.monotonic() + timeout
    while True:
        pending = int(store_figures(store, workdir)["outbox_pending"])
        if not pending or time.monotonic() > deadline:
            return pending
        time.sleep(0.5)


def run(args: argparse.Namespace) -> dict[str, Any]:
    ingest = load_ingest_module()
    with (
        tempfile.TemporaryDirectory(prefix="runwatch-bench-storm-") as tmp,
        fleet.bench_store(args.store, args.dsn) as store,
    ):
        workdir = Path(tmp)
        hosts = [f"host{i:05d}" for i in range(args.hosts)]
        tokens = fleet.write_tokens(workdir / "agents.tokens", hosts)
        desk = StormDesk(args.desk_delay)
        collectors: list[Any] = []
        try:
            collectors = fleet.start_collectors(
                ingest,
                workdir,
                1,
                store,
                workdir / "agents.tokens",
                desk=desk,
                settings=[
                    f"storm.max_calls={args.max_calls}",
                    f"storm.window={args.window:g}s",
                    f"storm.update_every={args.update_every:g}s",
                    *args.set,
                ],
            )
            collector = collectors[0]
            log(f"collector pid {collector.pid} at {collector.url} on {args.store}")
            figures = drive(ingest, args, collector, hosts, tokens, store, workdir, desk)
            figures["collector_exit"] = collector.stop()
            problems = [line for line in collector.log_problems() if "call storm for" not in line]
            figures["collector_log_problems"] = len(problems)
            figures["collector_log_sample"] = problems[:5]
            return figures
        finally:
            for collector in collectors:
                collector.stop()
            desk.close()


def drive(  # noqa: PLR0917 - the steps of one run, in order
    ingest: ModuleType,
    args: argparse.Namespace,
    collector: Any,
    hosts: list[str],
    tokens: dict[str, str],
    store: dict[str, Any],
    workdir: Path,
    desk: StormDesk,
) -> dict[str, Any]:
    calls_expected = min(len(hosts), args.max_calls)
    held = len(hosts) - calls_expected
    load_before = [round(x, 2) for x in os.getloadavg()]

    log(f"{len(hosts)} hosts report healthy once (so they are known)")
    known = post_all(
        collector.port,
        [(tokens[h], report_body(h, 1, 0.1)) for h in hosts],
        args.connections,
        args.timeout,
    )
    idle_from = ingest.cpu_seconds(collector.pid)
    time.sleep(args.settle)
    # What the collector spends idle (ticks, timers), to set beside its CPU over the breach.
    idle_cpu = (
        (ingest.cpu_seconds(collector.pid) - idle_from) / args.settle if args.settle else None
    )
    before = store_figures(store, workdir)
    rss_before = ingest.rss_bytes(collector.pid)

    log(
        f"breach: {len(hosts)} hosts at once over {args.connections} connections; expecting "
        f"{calls_expected} calls" + (f" and one umbrella listing {held}" if held else "")
    )
    bodies = [(tokens[h], report_body(h, 2, 0.99)) for h in hosts]
    sampler = Sampler(ingest, collector.pid)
    cpu_start = ingest.cpu_seconds(collector.pid)
    t0 = time.time()
    sent = post_all(collector.port, bodies, args.connections, args.timeout)
    cpu_answered = ingest.cpu_seconds(collector.pid)
    log(f"breach answered in {sent['seconds']} s: {sent['statuses']}")
    complete = wait_for(
        desk,
        lambda s: (
            s["calls_opened"] >= calls_expected
            and s["umbrellas_opened"] >= (1 if held else 0)
            and s["listed"] >= held
        ),
        args.timeout,
        "the desk to hold every ticket and the umbrella's full list",
    )
    complete_at = time.time()
    cpu_complete = ingest.cpu_seconds(collector.pid)
    pending = wait_outbox(store, workdir, 30)
    cpu_drained = ingest.cpu_seconds(collector.pid)
    rss_peak = sampler.stop()
    after = store_figures(store, workdir)
    seen = desk.snapshot()
    umbrella_complete = desk.listed_at(held) if held else None
    breach = {
        **sent,
        "complete": complete,
        "desk_complete_s": since(t0, complete_at) if complete else None,
        "calls_at_desk_s": since(t0, desk.last(t0, "open", umbrella=False)),
        "umbrella_opened_s": since(t0, desk.first(t0, "open", umbrella=True)),
        "umbrella_complete_s": since(t0, umbrella_complete),
        "umbrella_complete_after_last_answer_s": (
            round(umbrella_complete - t0 - sent["seconds"], 2) if umbrella_complete else None
        ),
        "desk": {**seen, **desk.events_since(t0)},
        "outbox_pending_after": pending,
        "collector_cpu_s": round(cpu_complete - cpu_start, 2),
        "collector_cpu_s_until_outbox_drained": round(cpu_drained - cpu_start, 2),
        "collector_cpu_ms_per_host": round((cpu_complete - cpu_start) * 1000 / len(hosts), 2),
        # Until the last report was answered: the hold-backs themselves, without the wait
        # for the umbrella's next update (when the collector is mostly idle).
        "collector_cpu_s_until_answered": round(cpu_answered - cpu_start, 2),
        "collector_cpu_ms_per_host_until_answered": round(
            (cpu_answered - cpu_start) * 1000 / len(hosts), 3
        ),
        "collector_idle_cpu_percent": None if idle_cpu is None else round(idle_cpu * 100, 1),
        "collector_rss_mib_before": mib(rss_before),
        "collector_rss_mib_peak": mib(rss_peak),
        "collector_vm_hwm_mib": mib(ingest.peak_rss_bytes(collector.pid)),
    }
    figures: dict[str, Any] = {
        "hosts": len(hosts),
        "store": args.store,
        "storm": {
            "max_calls": args.max_calls,
            "window_s": args.window,
            "update_every_s": args.update_every,
        },
        "desk_delay_s": args.desk_delay,
        "connections": args.connections,
        "calls_expected": calls_expected,
        "held_back_expected": held,
        "known": {k: known[k] for k in ("reports", "seconds", "statuses")},
        "breach": breach,
        "store_before": before,
        "store_after_breach": after,
        "store_growth": growth(before, after, held),
        "load_average_before": load_before,
    }
    log(
        f"desk complete {breach['desk_complete_s']} s after the breach began; store grew "
        f"{figures['store_growth']['bytes']} bytes"
    )
    if not args.no_recovery:
        figures["recovery"] = recover(ingest, args, collector, hosts, tokens, desk, store, workdir)
        figures["store_after_recovery"] = store_figures(store, workdir)
    figures["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return figures


def recover(  # noqa: PLR0917
    ingest: ModuleType,
    args: argparse.Namespace,
    collector: Any,
    hosts: list[str],
    tokens: dict[str, str],
    desk: StormDesk,
    store: dict[str, Any],
    workdir: Path,
) -> dict[str, Any]:
    """Every host healthy again: time until every call and the umbrella are resolved."""
    log(f"recovery: {len(hosts)} hosts healthy again")
    opened = desk.snapshot()
    bodies = [(tokens[h], report_body(h, 3, 0.1)) for h in hosts]
    sampler = Sampler(ingest, collector.pid)
    cpu_start = ingest.cpu_seconds(collector.pid)
    t0 = time.time()
    sent = post_all(collector.port, bodies, args.connections, args.timeout)
    log(f"recovery answered in {sent['seconds']} s: {sent['statuses']}")
    complete = wait_for(
        desk,
        lambda s: (
            s["calls_resolved"] >= opened["calls_opened"]
            and s["umbrellas_resolved"] >= opened["umbrellas_opened"]
        ),
        args.timeout,
        "every call and the umbrella to be resolved at the desk",
    )
    complete_at = time.time()
    cpu_end = ingest.cpu_seconds(collector.pid)
    pending = wait_outbox(store, workdir, 30)
    return {
        **sent,
        "complete": complete,
        "desk_complete_s": since(t0, complete_at) if complete else None,
        "calls_resolved_at_desk_s": since(t0, desk.last(t0, "resolve", umbrella=False)),
        "umbrella_resolved_s": since(t0, desk.last(t0, "resolve", umbrella=True)),
        "desk": {**desk.snapshot(), **desk.events_since(t0)},
        "outbox_pending_after": pending,
        "collector_cpu_s": round(cpu_end - cpu_start, 2),
        "collector_rss_mib_peak": mib(sampler.stop()),
    }


def since(t0: float, at: float | None) -> float | None:
    return None if at is None else round(at - t0, 2)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def mib(size: int) -> float:
    return round(size / 1048576, 1)


def print_figures(f: dict[str, Any]) -> None:
    s, b, g = f["storm"], f["breach"], f["store_growth"]
    print(
        f"runwatch storm benchmark: {f['hosts']} hosts breach at once on {f['store']}; storm "
        f"control max_calls {s['max_calls']} within {s['window_s']:g} s, updates every "
        f"{s['update_every_s']:g} s; desk answers in {f['desk_delay_s']:g} s"
    )
    print(
        f"  known           {f['known']['reports']} healthy reports answered in "
        f"{f['known']['seconds']} s"
    )
    lat = b["latency_ms"]
    print(
        f"  breach          {b['answered']} reports answered in {b['seconds']} s "
        f"({b['reports_per_second']}/s, {b['statuses']}); latency p50 {lat['p50']} ms, p99 "
        f"{lat['p99']} ms, max {lat['max']} ms; first tenth p50 {lat['first_tenth_p50']} ms, "
        f"last tenth p50 {lat['last_tenth_p50']} ms"
    )
    d = b["desk"]
    print(
        f"  desk            complete after {b['desk_complete_s']} s: {d['calls_opened']} calls "
        f"(last open at {b['calls_at_desk_s']} s), {d['umbrellas_opened']} umbrella (opened at "
        f"{b['umbrella_opened_s']} s) listing {d['listed']} of {f['held_back_expected']} "
        f"(all listed at {b['umbrella_complete_s']} s, "
        f"{b['umbrella_complete_after_last_answer_s']} s after the last answer)"
    )
    print(
        f"  desk events     {d['events']} ({d['by_kind']}), {d['bytes']} bytes; the umbrella's "
        f"{d['umbrella_updates']} updates {d['umbrella_update_bytes']} bytes (largest "
        f"{d['umbrella_update_max_bytes']})"
    )
    a = f["store_after_breach"]
    print(
        f"  store           {a['calls']} calls ({a['umbrellas']} umbrella), {a['storm_members']} "
        f"storm members, {a['call_events']} call events, {a['outbox']} outbox entries; the "
        f"umbrella's description {a['umbrella_description_bytes']} bytes"
    )
    pages = (
        f"; database pages +{g['pages_bytes']} ({g['pages_bytes_per_held_back_host']} per "
        "held-back host)"
        if "pages_bytes" in g
        else ""
    )
    print(
        f"  store growth    +{g['bytes']} bytes ({g['bytes_per_held_back_host']} per held-back "
        f"host){pages}; texts: events +{g['event_texts_bytes']}, outbox payloads "
        f"+{g['outbox_payload_bytes']}, members +{g['member_bytes']}, calls "
        f"+{g['call_texts_bytes']}"
    )
    print(
        f"  collector       CPU {b['collector_cpu_s_until_answered']} s until the last answer "
        f"({b['collector_cpu_ms_per_host_until_answered']} ms per host), "
        f"{b['collector_cpu_s']} s until the desk was complete "
        f"({b['collector_cpu_ms_per_host']} ms per host; idle it uses "
        f"{b['collector_idle_cpu_percent']} % of a core; "
        f"{b['collector_cpu_s_until_outbox_drained']} s until the outbox drained); RSS "
        f"{b['collector_rss_mib_before']} MiB before, {b['collector_rss_mib_peak']} MiB at "
        f"most (VmHWM {b['collector_vm_hwm_mib']} MiB)"
    )
    r = f.get("recovery")
    if r:
        print(
            f"  recovery        {r['answered']} healthy reports answered in {r['seconds']} s; "
            f"every call resolved at the desk after {r['calls_resolved_at_desk_s']} s, the "
            f"umbrella after {r['umbrella_resolved_s']} s (complete: {r['complete']}); "
            f"{r['desk']['events']} desk events {r['desk']['by_kind']}; CPU "
            f"{r['collector_cpu_s']} s"
        )
    print(
        f"  load average    {f['load_average_before']} before, {f['load_average_after']} after; "
        f"collector exit {f['collector_exit']}, {f['collector_log_problems']} log lines at "
        "WARNING or above (besides the storm's own)"
    )
    for line in f["collector_log_sample"]:
        print(f"                  {line[:300]}")


def main() -> int:
    from collector.config import StormConfig

    shipped = StormConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=positive_int, default=5000, help="hosts that breach")
    parser.add_argument(
        "--max-calls",
        type=positive_int,
        default=shipped.max_calls,
        help="storm.max_calls (default: the shipped %(default)s)",
    )
    parser.add_argument(
        "--window",
        type=positive_float,
        default=float(shipped.window),
        metavar="S",
        help="storm.window in seconds (default: the shipped %(default)g)",
    )
    parser.add_argument(
        "--update-every",
        type=positive_float,
        default=float(shipped.update_every),
        metavar="S",
        help="storm.update_every in seconds (default: the shipped %(default)g)",
    )
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("RUNWATCH_BENCH_PG_DSN", fleet.DEFAULT_DSN),
        help="PostgreSQL to use with --store postgresql (a fresh schema is made and dropped)",
    )
    parser.add_argument(
        "--connections",
        type=positive_int,
        default=32,
        help="kept-alive connections the reports go over at once",
    )
    parser.add_argument(
        "--desk-delay",
        type=float,
        default=0.05,
        metavar="S",
        help="how long the webhook desk takes to answer each event",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        metavar="S",
        help="pause after the healthy reports, before the store is measured",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=300.0,
        metavar="S",
        help="bound on each step: sending the reports, waiting for the desk",
    )
    parser.add_argument(
        "--no-recovery", action="store_true", help="stop after the breach (no recovery)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="set a collector config key (VALUE as YAML); repeatable",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = run(args)
    show(figures, args.json, print_figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
