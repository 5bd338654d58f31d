"""Collector replicas sharing one PostgreSQL: no duplicate calls, no lost state, no lost delivery.

In-process first (two services on one schema, an injected clock), then real collector processes:
concurrent breaches of one host through both, and a replica killed while it holds outbox leases.
"""

from __future__ import annotations

import gc
import http.server
import json
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.schema import encode
from collector.app import CollectorService
from collector.auth import add_token
from tests.helpers import FS_RULE, RUNWATCH, FakeClock, Reporter, collector_config
from tests.procs import Processes, get_json, post_report, wait_for

PG = {"backend": "postgresql"}


@pytest.fixture
def replicas(
    tmp_path: Path, clock: FakeClock, pg_dsn: str
) -> Iterator[Callable[..., CollectorService]]:
    services: list[CollectorService] = []

    def make(rules: list[dict[str, Any]] | None = None) -> CollectorService:
        config = collector_config(
            tmp_path / f"replica{len(services)}", rules, store={**PG, "dsn": pg_dsn}
        )
        services.append(CollectorService(config, clock=clock))
        return services[-1]

    yield make
    for service in services:
        service.close()


def open_calls(service: CollectorService) -> list[Any]:
    return service.calls("open", None)


def test_each_replica_takes_up_where_the_other_left_a_host(
    replicas: Callable[..., CollectorService], clock: FakeClock
) -> None:
    a, b = replicas(), replicas()
    web = Reporter("web01", clock)
    a.ingest("web01", web.report({"fs_used_ratio": 0.97}))  # pending: `for` is 5m
    clock.advance(360)
    b.ingest("web01", web.report({"fs_used_ratio": 0.97}))
    (call,) = open_calls(b)  # b knew the problem began at a, 6 minutes ago
    assert call.first_seen == clock() - 360
    clock.advance(60)
    a.ingest("web01", web.report({"fs_used_ratio": 0.50}))  # a knows b opened the call
    assert open_calls(a) == []
    assert a.store.get_call(call.id).status == "resolved"  # type: ignore[union-attr]
    clock.advance(60)
    a.ingest("web01", web.report({"fs_used_ratio": 0.97}))
    clock.advance(360)
    b.ingest("web01", web.report({"fs_used_ratio": 0.98}))
    (again,) = open_calls(a)
    assert again.id == call.id and again.reopened == 1, "reopened, not a second call"


def test_one_replica_evaluates_time_and_the_other_follows(
    replicas: Callable[..., CollectorService], clock: FakeClock
) -> None:
    a, b = replicas(), replicas()
    web = Reporter("web01", clock)
    b.ingest("web01", web.report({"fs_used_ratio": 0.50}))
    a.tick()  # a takes the lead for time-based evaluation
    b.tick()
    assert a.store.try_lead("evaluation")
    assert not b.store.try_lead("evaluation"), "one leader"
    clock.advance(3600)  # silent for an hour
    b.tick()
    assert open_calls(b) == [], "the follower opens nothing itself"
    a.tick()
    (stale,) = open_calls(a)
    assert stale.rule == "host_stale"
    b.ingest("web01", web.report({"fs_used_ratio": 0.50}))  # back, through the follower
    assert open_calls(a) == []
    b.tick()
    assert [h["state"] for h in b.hosts()] == ["OK"]
    a.tick()
    assert open_calls(a) == [], "the leader saw the host come back"


def test_a_follower_keeps_its_garbage_collections_short_too(
    replicas: Callable[..., CollectorService], clock: FakeClock
) -> None:
    a, b = replicas(), replicas()
    a.tick()  # a leads
    b.ingest("web01", Reporter("web01", clock).report({"fs_used_ratio": 0.50}))
    gc.unfreeze()
    b.tick()
    # What it holds is moved out of the collector's sight, as on the leader: full
    # collections over a large view stalled a follower for 200-400 ms.
    assert gc.get_freeze_count() > 0


def test_a_replica_that_closes_hands_the_lead_on(
    replicas: Callable[..., CollectorService], clock: FakeClock
) -> None:
    a, b = replicas(), replicas()
    assert a.store.try_lead("evaluation")
    assert not b.store.try_lead("evaluation")
    a.close()
    # The server lets go when a's backend has ended, a moment after the connection closed.
    wait_for("b to lead", lambda: b.store.try_lead("evaluation"), timeout=10)


# -- real collector processes ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Site:
    """Collector processes sharing one PostgreSQL schema and one agent tokens file."""

    def __init__(
        self,
        tmp_path: Path,
        processes: Processes,
        dsn: str,
        sinks: dict[str, Any] | None = None,
        lease: str = "60s",
    ) -> None:
        self.dir = tmp_path
        self.processes = processes
        self.dsn = dsn
        self.tokens = tmp_path / "agents.tokens"
        self.sinks = sinks or {"helpdesk": {"type": "builtin"}}
        self.lease = lease
        self.urls: list[str] = []

    def start(self, name: str) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        config = self.dir / f"{name}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "listen": f"127.0.0.1:{port}",
                    "data_dir": str(self.dir / name),
                    "store": {"backend": "postgresql", "dsn": self.dsn},
                    "agents": {"tokens_file": str(self.tokens)},
                    "sinks": self.sinks,
                    "groups": {
                        "systems-administration": {
                            "sink": "helpdesk",
                            "assign": "Systems Administration",
                        }
                    },
                    "rules": [{**FS_RULE, "for": "0s"}],
                    "outbox": {"first_retry": "1s", "max_retry": "2s", "lease": self.lease},
                    "evaluation_interval": "1s",
                }
            )
        )
        log = (self.dir / f"{name}.log").open("w")
        process = self.processes.start(
            RUNWATCH, "collector", "--config", str(config), stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return bool(get_json(f"{url}/healthz"))
            except OSError:
                assert process.poll() is None, self.log(name)
                return False

        wait_for(f"{name} to listen", up, timeout=30)
        return process, url

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text()


def post(url: str, token: str, body: bytes) -> int:
    return post_report(url, token, body, timeout=30)


@pytest.mark.slow
def test_two_collectors_given_one_breach_at_once_open_one_call_per_host(
    tmp_path: Path, processes: Processes, pg_dsn: str
) -> None:
    site = Site(tmp_path, processes, pg_dsn)
    hosts = [f"web{i:02d}" for i in range(30)]
    tokens = {host: add_token(site.tokens, host) for host in hosts}
    (_, url_a), (_, url_b) = site.start("a"), site.start("b")
    clock = time.time
    bodies: list[tuple[str, str, bytes]] = []
    for host in hosts:
        reporter = Reporter(host, clock)  # type: ignore[arg-type]
        # Two reports of one breach, one through each replica, at the same moment.
        bodies.append((url_a, host, encode(reporter.report({"fs_used_ratio": 0.97}))))
        bodies.append((url_b, host, encode(reporter.report({"fs_used_ratio": 0.98}))))
    start = threading.Barrier(len(bodies))
    statuses: list[int] = []

    def send(url: str, host: str, body: bytes) -> None:
        start.wait(10)
        statuses.append(post(url, tokens[host], body))

    threads = [threading.Thread(target=send, args=item) for item in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # 200: the later seq got in first, so the earlier one counts as a duplicate (as it should).
    assert set(statuses) <= {200, 202} and 202 in statuses, statuses
    calls = get_json(f"{url_a}/api/v1/calls")
    per_host = Counter(call["host"] for call in calls if call["status"] == "open")
    assert per_host == dict.fromkeys(hosts, 1), "exactly one call per host"
    assert get_json(f"{url_b}/api/v1/calls") == calls, "both replicas read one register"


class HoldingReceiver:
    """A webhook endpoint that holds requests while `holding`, and counts the ones it answers."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()
        self.answered: Counter[tuple[str, str]] = Counter()
        self.held = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.holding.is_set():
                    receiver.held += 1
                    receiver.release.wait(30)  # the client is killed meanwhile
                    self.close_connection = True
                    return  # never answered: not delivered
                receiver.answered[(body["fingerprint"], body["event"])] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_a_killed_replicas_leased_deliveries_go_out_once_from_the_other(
    tmp_path: Path, processes: Processes, pg_dsn: str
) -> None:
    receiver = HoldingReceiver()
    try:
        site = Site(
            tmp_path,
            processes,
            pg_dsn,
            lease="3s",
            sinks={"helpdesk": {"type": "webhook", "url": receiver.url, "timeout": "20s"}},
        )
        hosts = [f"db{i:02d}" for i in range(5)]
        tokens = {host: add_token(site.tokens, host) for host in hosts}
        receiver.holding.set()
        a, url_a = site.start("a")
        for host in hosts:
            body = encode(
                Reporter(host, time.time).report(  # type: ignore[arg-type]
                    {"fs_used_ratio": 0.97}
                )
            )
            assert post(url_a, tokens[host], body) == 202
        wait_for("a to be sending", lambda: receiver.held >= 1, timeout=30)
        processes.stop(a, signal.SIGKILL)  # holding leases, mid-delivery
        receiver.holding.clear()
        _, url_b = site.start("b")
        wait_for(
            "b to deliver every open", lambda: sum(receiver.answered.values()) >= 5, timeout=60
        )
        time.sleep(4)  # past another lease: nothing more may come
        assert set(receiver.answered.values()) == {1}, receiver.answered
        assert len(receiver.answered) == 5
        assert {event for _, event in receiver.answered} == {"open"}
        outbox = get_json(f"{url_b}/api/v1/outbox")
        assert outbox and all(op["status"] == "done" for op in outbox), outbox
    finally:
        receiver.close()


def test_a_call_resolved_by_hand_at_one_replica_is_final_at_the_other(
    replicas: Callable[..., CollectorService], clock: FakeClock
) -> None:
    a, b = replicas([{**FS_RULE, "for": "0s"}]), replicas([{**FS_RULE, "for": "0s"}])
    web = Reporter("web01", clock)
    a.ingest("web01", web.report({"fs_used_ratio": 0.97}))
    (call,) = open_calls(a)
    clock.advance(60)
    b.resolve_call(call.id, "alice")  # b never saw web01 before: it reads a's view first
    clock.advance(60)
    a.ingest("web01", web.report({"fs_used_ratio": 0.98}))  # a learns the call is gone
    (new,) = open_calls(a)
    assert new.id != call.id
    assert a.store.get_call(call.id).status == "resolved"  # type: ignore[union-attr]


def test_rows_rewritten_on_every_report_leave_room_for_updates_in_place(
    replicas: Callable[..., CollectorService],
) -> None:
    service = replicas()
    db = service.store._db  # type: ignore[attr-defined]
    tables = ["series", "check_status", "hosts", "rule_states"]
    options = dict(
        db.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%s) "
            "AND relnamespace = current_schema()::regnamespace",
            (tables,),
        ).fetchall()
    )
    assert options == {table: ["fillfactor=70"] for table in tables}
