#!/usr/bin/env python3
"""Benchmark an agent's report latency while wrong console sign-ins pour in.

Starts the real collector (`runwatch collector --config F`) on loopback with one agent token
and one console user, then sends an agent's reports one after another and measures their
latency: first alone, then while `--attackers` threads send wrong passwords as fast as they
are answered. Each wrong password costs the collector a PBKDF2 run; the figures show whether
those runs take the CPU from the reports. Run from the repo root:

    python bench/signin.py [--attackers 8] [--seconds 10] [--cap-only] [--json]

`--cap-only` switches the address and name limits off, so every attempt reaches the cap on
password checks at once (limits.password_checks_*), which is then all that stands between
the attackers and the CPU.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from checks.schema import SCHEMA_VERSION, CheckRun, Measurement, Report, encode
from collector.auth import add_token, set_user

# bench/ off sys.path (bench/agent.py would hide the agent package), the repository on it.
BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(BENCH_DIR.parent) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR.parent))
from bench.common import load_ingest_module  # noqa: E402

runwatch_command = load_ingest_module().runwatch_command

STARTUP_TIMEOUT_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 30.0
REPORT_GAP_SECONDS = 0.05  # between an agent's reports: a steady trickle, not a flood
# The agent and the attackers come from addresses of their own (all of 127/8 is loopback), so
# that the limits per address refuse the attackers and not the agent.
AGENT_ADDRESS = "127.0.0.2"
ATTACKER_ADDRESS = "127.0.0.1"
# And the collector one more, so no client connection can ever be made to itself.
COLLECTOR_ADDRESS = "127.0.0.3"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((COLLECTOR_ADDRESS, 0))
        return int(sock.getsockname()[1])


def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    source: str = ATTACKER_ADDRESS,
) -> tuple[int, float]:
    """One request on a fresh connection from `source`: (status, seconds)."""
    began = time.perf_counter()
    connection = http.client.HTTPConnection(
        COLLECTOR_ADDRESS, port, timeout=REQUEST_TIMEOUT_SECONDS, source_address=(source, 0)
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - began
    finally:
        connection.close()


def report(seq: int) -> bytes:
    now = time.time()
    return encode(
        Report(
            schema_version=SCHEMA_VERSION,
            host="web01",
            agent_version="bench",
            boot_id="bench",
            seq=seq,
            interval_seconds=60.0,
            sent_at=now,
            measurements=[
                Measurement(
                    check="filesystem",
                    name="fs_used_ratio",
                    value=0.5,
                    unit="ratio",
                    labels={"mountpoint": "/"},
                    timestamp=now,
                )
            ],
            checks=[
                CheckRun(
                    check="filesystem",
                    type="filesystem",
                    interval_seconds=60.0,
                    started_at=now,
                    duration_seconds=0.01,
                )
            ],
        )
    )


def latencies(port: int, token: str, seconds: float, first_seq: int) -> list[float]:
    """Send reports one after another for `seconds`; their latencies in seconds."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    taken: list[float] = []
    seq = first_seq
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, elapsed = request(
            port, "POST", "/api/v1/reports", report(seq), headers, source=AGENT_ADDRESS
        )
        if status not in (200, 202):
            raise SystemExit(f"bench: a report got HTTP {status}")
        taken.append(elapsed)
        seq += 1
        time.sleep(REPORT_GAP_SECONDS)
    return taken


def figures(taken: list[float]) -> dict[str, float]:
    ordered = sorted(taken)
    return {
        "reports": len(ordered),
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def start_collector(tmp: Path, cap_only: bool) -> tuple[subprocess.Popen[bytes], int, str]:
    """A real collector on a free loopback port, with an agent token and a console user."""
    data = tmp / "data"
    port = free_port()
    limits: dict[str, Any] = {"agent_requests_per_second": 0}
    if cap_only:
        limits.update(address_failures_per_second=0, signin_attempts_per_second=0)
    config = tmp / "collector.yaml"
    config.write_text(
        json.dumps(
            {"listen": f"{COLLECTOR_ADDRESS}:{port}", "data_dir": str(data), "limits": limits}
        )
    )
    token = add_token(data / "agents.tokens", "web01")
    set_user(data / "users", "carol", "carol-secret-1")
    with (tmp / "collector.log").open("wb") as log:
        process = subprocess.Popen(
            [runwatch_command(), "collector", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                return process, port, token
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            stop_collector(process)
            raise SystemExit("bench: the collector did not start")
        time.sleep(0.1)


def stop_collector(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def under_attack(
    port: int, token: str, attackers: int, seconds: float, first_seq: int
) -> tuple[list[float], Counter[int]]:
    """Report latencies while `attackers` threads send wrong passwords; and their answers."""
    stop = threading.Event()
    answers: Counter[int] = Counter()
    lock = threading.Lock()

    def attack(number: int) -> None:
        # A wrong password on purpose: the attack this bench measures.
        wrong = "wrong-guess"  # nosec B105
        form = urlencode({"user": f"carol{number % 2 or ''}", "password": wrong})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        while not stop.is_set():
            status, _ = request(port, "POST", "/login", form.encode(), headers)
            with lock:
                answers[status] += 1

    threads = [threading.Thread(target=attack, args=(n,), daemon=True) for n in range(attackers)]
    for thread in threads:
        thread.start()
    try:
        return latencies(port, token, seconds, first_seq), answers
    finally:
        stop.set()
        for thread in threads:
            thread.join(REQUEST_TIMEOUT_SECONDS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attackers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--cap-only", action="store_true", help="switch the address and name limits off"
    )
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="runwatch-bench-signin-") as tmp:
        process, port, token = start_collector(Path(tmp), options.cap_only)
        try:
            print("measuring reports alone", file=sys.stderr)
            alone = latencies(port, token, options.seconds, 1)
            print(
                f"measuring reports under {options.attackers} parallel wrong sign-ins",
                file=sys.stderr,
            )
            attacked, answers = under_attack(
                port, token, options.attackers, options.seconds, len(alone) + 1
            )
        finally:
            stop_collector(process)

    result = {
        "alone": figures(alone),
        "attacked": figures(attacked),
        "sign_in_answers": {str(k): v for k, v in sorted(answers.items())},
        "attackers": options.attackers,
        "cap_only": options.cap_only,
    }
    if options.json:
        print(json.dumps(result))
        return 0
    print(
        f"runwatch sign-in storm: {options.attackers} attackers, {options.seconds:g} s each "
        f"phase{' (cap only)' if options.cap_only else ''}"
    )
    for phase in ("alone", "attacked"):
        f = result[phase]
        print(
            f"  reports {phase:>8}: {f['reports']:4.0f} sent, median {f['median_ms']:6.1f} ms, "
            f"p95 {f['p95_ms']:6.1f} ms, max {f['max_ms']:6.1f} ms"
        )
    print(
        "  sign-in answers: " + ", ".join(f"{k}: {v}" for k, v in result["sign_in_answers"].items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
