#!/usr/bin/env python3
"""Chaos run: a simulated fleet reports to a real collector (SQLite) that opens calls in a help
desk, while faults are injected in turn:

1. `kill -9` of the collector every 20 s, restarted at once;
2. the help desk going down, then coming back;
3. the store's disk filling up: a small tmpfs mount when this machine allows it (as root),
   else SQLite's page limit (store.max_bytes) at the file's size;
4. an agent's clock jumping two hours ahead, then back;
5. slow-loris clients holding connections open with half-sent requests.

The agents are the real shipper and spool (agent/shipper.py, agent/spool.py), one thread each;
every report carries a marker series with its own seq, so the store shows which reports it
holds. The help desk is a stand-in for Zammad (tests/fakes/zammad.py) that counts tickets.
After each fault the run waits for recovery (every spool empty, the outbox delivered) and, at
the end, prints per fault: the time to recover, and for the whole run the reports acknowledged
but lost (goal 0), duplicate tickets (goal 0) and calls left open after recovery (goal 0).

    python bench/chaos.py --short          # about two minutes; .ci/run runs it as a test
    python bench/chaos.py                  # the long run whose figures go in the note

Everything runs on loopback and stops by itself; the collector is stopped by its PID, and the
tmpfs, if one was mounted, is unmounted by its path.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(BENCH_DIR.parent) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR.parent))  # tests/fakes, bench.common
from bench.common import load_ingest_module  # noqa: E402

MARKER = "chaos_report_seq"  # one series per report: labels {seq: N}
BREACH = "chaos_breach_ratio"
# The name of the variable that passes the desk token to the collector, not a secret.
DESK_TOKEN_ENV = "RUNWATCH_CHAOS_DESK_TOKEN"  # nosec B105


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the simulated agents -----------------------------------------------------------------------


@dataclass
class SimAgent:
    """One host: a real spool and shipper, and a thread that spools a report every interval."""

    host: str
    token: str
    spool_dir: Path
    url: str
    interval: float
    clock_offset: float = 0.0  # seconds added to this agent's clock (the clock jump)
    breach: bool = False  # report the breach metric above critical
    acked: set[int] = field(default_factory=set)
    statuses: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, stop: threading.Event) -> None:
        from agent.shipper import ReportSender, ReportShipper
        from agent.spool import Spool

        self.spool = Spool(self.spool_dir, max_bytes=64 << 20, max_reports=100_000)
        token_file = self.spool_dir.parent / f"{self.host}.token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        sender = ReportSender(self.url, token_file, timeout=10)

        def send(body: bytes) -> Any:
            result = sender.send(body)
            key = str(result.status or "no answer")
            with self.lock:
                self.statuses[key] = self.statuses.get(key, 0) + 1
                if result.delivered:
                    self.acked.add(int(json.loads(body)["seq"]))
            return result

        self.shipper = ReportShipper(
            self.spool,
            send,
            min_backoff=0.2,
            max_backoff=2.0,
            replay_gap_seconds=0.02,
            replay_jitter_seconds=0.5,
        )
        self.shipper.start()
        self._thread = threading.Thread(
            target=self._produce, args=(stop,), daemon=True, name=f"agent-{self.host}"
        )
        self._thread.start()

    def _produce(self, stop: threading.Event) -> None:
        from checks.schema import SCHEMA_VERSION, CheckRun, Measurement, Report, encode

        while not stop.is_set():
            now = time.time() + self.clock_offset
            seq = self.spool.next_seq()
            value = 0.97 if self.breach else 0.1
            report = Report(
                schema_version=SCHEMA_VERSION,
                host=self.host,
                agent_version="chaos",
                boot_id=self.spool.boot_id,
                seq=seq,
                sent_at=now,
                interval_seconds=self.interval,
                measurements=[
                    Measurement(
                        check="chaos", name=BREACH, value=value, unit="ratio", timestamp=now
                    ),
                    Measurement(
                        check="chaos",
                        name=MARKER,
                        value=float(seq),
                        labels={"seq": str(seq)},
                        timestamp=now,
                    ),
                ],
                checks=[
                    CheckRun(
                        check="chaos",
                        type="chaos",
                        interval_seconds=self.interval,
                        started_at=now,
                        duration_seconds=0.001,
                    )
                ],
            )
            self.spool.put(seq, encode(report))
            self.shipper.notify()
            stop.wait(self.interval)

    def pending(self) -> int:
        return self.spool.stats().reports

    def finish(self) -> None:
        self.shipper.stop(timeout=5)


# -- faults -------------------------------------------------------------------------------------


class SlowLoris:
    """Connections that send a request line and then one header byte now and then."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for _ in range(self.count):
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                sock.sendall(b"POST /api/v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                self._socks.append(sock)
            except OSError:
                break
        self._thread = threading.Thread(target=self._drip, daemon=True, name="slow-loris")
        self._thread.start()

    def _drip(self) -> None:
        while not self._stop.wait(1.0):
            for sock in list(self._socks):
                try:
                    sock.sendall(b"X")
                except OSError:
                    self._socks.remove(sock)

    @property
    def held(self) -> int:
        return len(self._socks)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for sock in self._socks:
            sock.close()


@contextlib.contextmanager
def small_disk(path: Path, size_mb: int, wanted: bool) -> Any:
    """A tmpfs of `size_mb` at `path` when wanted and mount works here (root); else None."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = False
    if wanted and os.geteuid() == 0 and shutil.which("mount"):
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        mounted = result.returncode == 0
        if not mounted:
            log(f"no tmpfs ({result.stderr.strip()}); the disk fills by SQLite's page limit")
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=False)


def fill(path: Path) -> Path:
    """Fill the filesystem holding `path` up to the last byte; return the filler file."""
    filler = path / "filler"
    chunk = b"\0" * (1 << 20)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, chunk[:size]) == size:
                    pass
    finally:
        os.close(fd)
    return filler


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Figures:
    recover_seconds: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class ChaosRun:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.ingest = load_ingest_module()
        self.stop = threading.Event()
        self.figures = Figures()
        self.kills = 0
        self.restarts = 0

    # -- collector and desk ------------------------------------------------------------------

    def setup(self, data_dir: Path) -> None:
        import yaml

        from collector.auth import TOKEN_PREFIX, hash_token
        from tests.fakes.zammad import FakeZammad

        self.desk = FakeZammad().start()
        self.desk_port = int(self.desk.url.rsplit(":", 1)[1])
        os.environ[DESK_TOKEN_ENV] = self.desk.token
        port = self.ingest.free_port()
        tokens_path = self.workdir / "agents.tokens"
        import secrets

        self.tokens = {
            f"chaos{i:03d}": TOKEN_PREFIX + secrets.token_urlsafe(32)
            for i in range(self.args.agents)
        }
        tokens_path.write_text(
            "".join(f"{host} {hash_token(token)} 0\n" for host, token in self.tokens.items())
        )
        tokens_path.chmod(0o600)  # the collector warns about a tokens file others can read
        config = {
            "listen": f"127.0.0.1:{port}",
            "data_dir": str(data_dir),
            "agents": {"tokens_file": str(tokens_path)},
            "sinks": {
                "desk": {
                    "type": "zammad",
                    "url": self.desk.url,
                    "timeout": "3s",
                    "token": {"env": DESK_TOKEN_ENV},
                    "group": "Users",
                    "customer": "monitoring@example.com",
                }
            },
            "groups": {
                "systems-administration": {"sink": "desk", "assign": "Users", "reopen_within": "1h"}
            },
            "rules": [
                {
                    "name": "chaos_breach",
                    "metric": BREACH,
                    "warning": 0.5,
                    "critical": 0.9,
                    "clear": 0.4,
                    "for": "0s",
                    "owner": "systems-administration",
                }
            ],
            # The agents report every couple of seconds, so a restart is many intervals long;
            # staleness is not what this run is about.
            "staleness": {"after_intervals": 1000, "owner": "systems-administration"},
            # Time runs ~60x faster than in a fleet reporting every minute: a flapping rule
            # (the faults make breaches come and go quickly) settles within 20 s, not 30 min.
            "flapping": {"changes": 5, "window": "20s"},
            "evaluation_interval": "1s",
            "sync_interval": "5s",
            "outbox": {"first_retry": "1s", "max_retry": "3s"},
            "storm": {"max_calls": 10000, "window": "5m"},
            "metrics": {"measurements": False},
        }
        config_path = self.workdir / "collector.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.collector = self.ingest.CollectorProcess(
            self.workdir, port, config_path, tokens_path, self.workdir / "collector.log"
        )
        self.collector.start()
        self.url = self.collector.url
        self.db = data_dir / "runwatch.db"

    def restart_collector(self, signum: int = signal.SIGKILL) -> None:
        os.kill(self.collector.pid, signum)
        self.collector.process.wait(30)
        self.restarts += 1
        with contextlib.suppress(OSError):
            self.collector.log_path.rename(self.workdir / f"collector.{self.restarts}.log")
        self.kills += signum == signal.SIGKILL
        self.collector.start()

    def get(self, path: str) -> Any:
        status, body = self.ingest.http_get(self.collector.port, path, timeout=10)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}")
        return json.loads(body)

    # -- recovery ----------------------------------------------------------------------------

    def settled(self, calls_closed: bool = False) -> bool:
        """Every spool empty, nothing left to deliver to the desk (and no call open)."""
        if any(agent.pending() for agent in self.agents):
            return False
        try:
            if calls_closed and self.get("/api/v1/calls?status=open&limit=1"):
                return False
            return not self.get("/api/v1/outbox?status=pending&limit=1")
        except (OSError, RuntimeError, ValueError):
            return False

    def recover(self, fault: str, since: float, calls_closed: bool = False) -> None:
        deadline = time.monotonic() + self.args.recover_timeout
        while time.monotonic() < deadline:
            if self.settled(calls_closed):
                took = round(time.monotonic() - since, 2)
                self.figures.recover_seconds[fault] = took
                log(f"{fault}: recovered in {took}s")
                return
            time.sleep(0.2)
        self.figures.recover_seconds[fault] = None
        log(f"{fault}: NOT recovered within {self.args.recover_timeout}s")

    def breach(self, hosts: int, on: bool) -> None:
        for agent in self.agents[:hosts]:
            agent.breach = on

    # -- the faults --------------------------------------------------------------------------

    def fault_kill(self) -> None:
        kills = self.args.kills
        log(f"fault: kill -9 of the collector every {self.args.kill_every}s, {kills} times")
        killed_at = time.monotonic()
        for number in range(kills):
            # Calls open and clear while the collector dies and comes back.
            self.breach(self.args.breaching, number % 2 == 0)
            time.sleep(self.args.kill_every)
            if number == kills - 1:
                self.breach(self.args.breaching, False)
            killed_at = time.monotonic()
            self.restart_collector()
        # From the last kill: the restart, the backlog, and the calls resolved.
        self.recover(f"kill -9 every {self.args.kill_every:g}s", killed_at, calls_closed=True)

    def fault_desk(self) -> None:
        log(f"fault: help desk down for {self.args.desk_down}s")
        self.desk.stop()
        self.breach(self.args.breaching, True)
        time.sleep(self.args.desk_down / 2)
        self.breach(self.args.breaching, False)
        time.sleep(self.args.desk_down / 2)
        self.breach(self.args.breaching, True)
        self.desk.start(self.desk_port)
        self.recover("help desk down and back", time.monotonic())
        self.breach(self.args.breaching, False)
        self.recover("help desk: calls resolved after", time.monotonic(), calls_closed=True)

    def cap_store(self, max_bytes: int | None) -> None:
        """Restart the collector (SIGTERM) with its SQLite file capped at `max_bytes`."""
        import yaml

        config = yaml.safe_load(self.collector.config_path.read_text())
        config["store"] = {"backend": "sqlite"}
        if max_bytes is not None:
            config["store"]["max_bytes"] = max_bytes
        self.collector.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.restart_collector(signal.SIGTERM)

    def fault_disk(self, data_dir: Path, mounted: bool) -> None:
        if mounted:
            log(f"fault: the store's disk full for {self.args.disk_full}s (a full tmpfs)")
            filler = fill(data_dir)
            self.breach(self.args.breaching, True)
            time.sleep(self.args.disk_full)
            filler.unlink()
        else:
            # No tmpfs here: SQLite's page limit (store.max_bytes) at the file's size now.
            log(f"fault: the store full for {self.args.disk_full}s (SQLite page limit)")
            self.figures.notes.append("disk full: by SQLite's page limit (no tmpfs mount)")
            self.cap_store(max(65536, self.db.stat().st_size))
            self.breach(self.args.breaching, True)
            time.sleep(self.args.disk_full)
            self.cap_store(None)
        self.recover("disk full", time.monotonic())
        self.breach(self.args.breaching, False)
        self.recover("disk full: calls resolved after", time.monotonic(), calls_closed=True)

    def fault_clock(self) -> None:
        agent = self.agents[-1]
        log(f"fault: {agent.host}'s clock jumps 2h ahead, then back")
        agent.breach = True
        agent.clock_offset = 7200.0
        time.sleep(self.args.clock_jump)
        agent.clock_offset = 0.0
        agent.breach = False
        self.recover("clock jump", time.monotonic(), calls_closed=True)

    def fault_loris(self) -> None:
        loris = SlowLoris(self.collector.port, self.args.loris)
        loris.start()
        log(f"fault: {loris.held} slow-loris connections for {self.args.loris_seconds}s")
        self.breach(self.args.breaching, True)
        time.sleep(self.args.loris_seconds)
        # While they are held: do the agents still get through?
        stuck = sum(agent.pending() > 3 for agent in self.agents)
        self.figures.notes.append(
            f"slow loris: {loris.held} connections held; {stuck} agents "
            "more than 3 reports behind while they were"
        )
        loris.stop()
        self.breach(self.args.breaching, False)
        self.recover("slow loris", time.monotonic(), calls_closed=True)

    # -- counting ----------------------------------------------------------------------------

    def count(self) -> dict[str, Any]:
        import sqlite3

        calls = self.get("/api/v1/calls?status=all&limit=5000")
        open_calls = [c for c in calls if c["status"] == "open"]
        for call in open_calls[:3]:
            detail = self.get(f"/api/v1/calls/{call['id']}")
            host = self.get(f"/api/v1/hosts?host={call['host']}")
            log(
                f"open after recovery: {json.dumps(detail)[:1500]}\n  host: "
                f"{json.dumps(host)[:1500]}"
            )
        self.collector.stop()  # a clean stop, so the store is read as it was left
        stored: dict[str, set[int]] = {}
        with contextlib.closing(sqlite3.connect(self.db)) as db:
            for host, value in db.execute(
                "SELECT host, value FROM series WHERE name = ?", (MARKER,)
            ):
                stored.setdefault(host, set()).add(int(value))
        lost = {
            agent.host: sorted(agent.acked - stored.get(agent.host, set())) for agent in self.agents
        }
        lost = {host: seqs for host, seqs in lost.items() if seqs}
        by_fingerprint: dict[str, int] = {}
        for call in calls:
            by_fingerprint[call["fingerprint"]] = by_fingerprint.get(call["fingerprint"], 0) + 1
        tickets: dict[str, int] = {}
        open_tickets = 0
        for ticket in self.desk.tickets.values():
            for tag in ticket.tags:
                if tag.startswith("rw-"):
                    tickets[tag[3:]] = tickets.get(tag[3:], 0) + 1
            open_tickets += ticket.state not in ("closed", "merged", "removed")
        duplicates = sum(max(0, count - by_fingerprint.get(fp, 0)) for fp, count in tickets.items())
        statuses: dict[str, int] = {}
        for agent in self.agents:
            for key, value in agent.statuses.items():
                statuses[key] = statuses.get(key, 0) + value
        return {
            "reports_acknowledged": sum(len(a.acked) for a in self.agents),
            "acknowledged_but_lost": sum(len(s) for s in lost.values()),
            "lost_examples": dict(list(lost.items())[:3]),
            "calls": len(calls),
            "tickets": len(self.desk.tickets),
            "duplicate_tickets": duplicates,
            "calls_open_after_recovery": len(open_calls),
            "tickets_open_after_recovery": open_tickets,
            "collector_kills": self.kills,
            "answers": dict(sorted(statuses.items())),
        }

    def run(self) -> dict[str, Any]:
        began = time.monotonic()
        data_dir = self.workdir / "data"
        with small_disk(data_dir, self.args.disk_mb, self.args.disk == "tmpfs") as disk:
            self.setup(data_dir)
            try:
                self.agents = [
                    SimAgent(
                        host, token, self.workdir / "spools" / host, self.url, self.args.interval
                    )
                    for host, token in self.tokens.items()
                ]
                for agent in self.agents:
                    agent.start(self.stop)
                time.sleep(self.args.interval * 2)
                self.recover("start", began)
                faults = {
                    "kill": self.fault_kill,
                    "desk": self.fault_desk,
                    "disk": lambda: self.fault_disk(data_dir, disk is not None),
                    "clock": self.fault_clock,
                    "loris": self.fault_loris,
                }
                for name in self.args.faults.split(","):
                    faults[name]()
                self.breach(len(self.agents), False)
                time.sleep(self.args.interval * 2)
                self.recover("final", time.monotonic())
                # Calls resolve on the next evaluation; their closes reach the desk after.
                deadline = time.monotonic() + self.args.recover_timeout
                while time.monotonic() < deadline:
                    opened = self.get("/api/v1/calls?status=open&limit=5000")
                    if not opened and self.settled():
                        break
                    time.sleep(0.5)
                self.stop.set()
                for agent in self.agents:
                    agent.finish()
                counts = self.count()
            finally:
                self.stop.set()
                self.collector.stop()
                self.desk.stop()
        return {
            "mode": "short" if self.args.short else "long",
            "agents": self.args.agents,
            "interval_seconds": self.args.interval,
            **counts,
            "recover_seconds": self.figures.recover_seconds,
            "notes": self.figures.notes,
            "seconds": round(time.monotonic() - began, 1),
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the CI form: about two minutes")
    parser.add_argument("--agents", type=int, help="simulated agents (default 10; 40 long)")
    parser.add_argument("--interval", type=float, default=1.0, help="report interval, seconds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--faults",
        default="kill,desk,disk,clock,loris",
        help="which faults, in this order (default: %(default)s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--disk",
        choices=["tmpfs", "pages"],
        default="tmpfs",
        help="fill the store's disk: a small tmpfs, where mount works, else "
        "SQLite's page limit (store.max_bytes); or the page limit only",
    )
    args = parser.parse_args(argv)
    long_run = not args.short
    args.agents = args.agents or (40 if long_run else 10)
    args.breaching = max(1, args.agents // 4)
    args.kill_every = 20.0 if long_run else 10.0
    args.kills = 6 if long_run else 2
    args.desk_down = 30.0 if long_run else 10.0
    args.disk_full = 20.0 if long_run else 8.0
    args.disk_mb = 64
    args.clock_jump = 15.0 if long_run else 6.0
    args.loris = 500 if long_run else 100
    args.loris_seconds = 20.0 if long_run else 8.0
    args.recover_timeout = 90.0 if long_run else 45.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import logging

    # The shipper's "will retry" lines are the faults working; the figures say the rest.
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="runwatch-chaos-"))
    try:
        figures = ChaosRun(args, workdir).run()
    finally:
        # Unmounted already; only our own temp dir, by its checked path.
        if args.keep:
            log(f"kept {workdir}")
        elif workdir.name.startswith("runwatch-chaos-") and workdir.parent == Path(
            tempfile.gettempdir()
        ):
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    goals = (
        figures["acknowledged_but_lost"] == 0
        and figures["duplicate_tickets"] == 0
        and figures["calls_open_after_recovery"] == 0
        and figures["tickets_open_after_recovery"] == 0
        and all(v is not None for v in figures["recover_seconds"].values())
    )
    return 0 if goals else 1


if __name__ == "__main__":
    sys.exit(main())
