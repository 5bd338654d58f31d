"""Slow and surplus clients: closed at the header and body deadlines, refused past the cap.

A real collector (`runwatch collector`) on loopback, with short deadlines so the test is quick,
served with each HTTP parser and event loop it may run on (server: {http, loop}).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FS_RULE, GROUPS, write_collector_yaml
from tests.procs import Processes, read_url

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
MARGIN = 2.0  # a loaded 2-core machine: timers fire late, and we poll once a 0.1 s
LORIS = 200
SLOW_BODIES = 20

SERVERS = [
    pytest.param({"http": "h11", "loop": "asyncio"}, id="h11 on asyncio"),
    pytest.param({"http": "httptools", "loop": "uvloop"}, id="httptools on uvloop"),
]


def start_collector(
    tmp_path: Path, processes: Processes, server: dict[str, Any], **limits: object
) -> tuple[str, int]:
    config = write_collector_yaml(
        tmp_path / "collector.yaml",
        tmp_path / "data",
        GROUPS,
        rules=[FS_RULE],
        limits=limits,
        server=server,
    )
    process = processes.runwatch(
        "collector",
        config,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = read_url(process)
    return url, int(url.rsplit(":", 1)[1])


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed it; what it said before (a refusal of the body) is dropped."""
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return False
    except OSError:
        pass
    return True


def served(url: str) -> int:
    with urllib.request.urlopen(f"{url}/api/v1/hosts", timeout=5) as response:
        return int(response.status)


@pytest.mark.parametrize("server", SERVERS)
def test_slow_loris_and_slow_bodies_are_closed_while_agents_are_served(
    tmp_path: Path, processes: Processes, server: dict[str, Any]
) -> None:
    url, port = start_collector(
        tmp_path,
        processes,
        server,
        header_timeout=f"{HEADER_TIMEOUT:g}s",
        body_timeout=f"{BODY_TIMEOUT:g}s",
        max_connections=1000,
    )
    request = b"GET /api/v1/hosts HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: loris\r\n\r\n"
    body_head = (
        b"POST /api/v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    started = time.monotonic()
    loris = [connect(port) for _ in range(LORIS)]
    bodies = [connect(port) for _ in range(SLOW_BODIES)]
    for sock in bodies:
        sock.sendall(body_head)
    closed_at: dict[socket.socket, float] = {}
    sent = 0
    deadline = started + BODY_TIMEOUT + 3 * MARGIN
    normal: list[int] = []
    try:
        while len(closed_at) < LORIS + SLOW_BODIES and time.monotonic() < deadline:
            # One more header byte on every loris and one more body byte on every slow body,
            # once a second: each connection is busy, never idle.
            if time.monotonic() - started >= sent:
                for sock in [*loris, *bodies]:
                    if sock in closed_at:
                        continue
                    try:
                        sock.send(request[sent : sent + 1] if sock in loris else b" ")
                    except OSError:
                        closed_at[sock] = time.monotonic() - started
                sent += 1
                normal.append(served(url))  # an agent is served meanwhile
            for sock in [*loris, *bodies]:
                if sock not in closed_at and closed_by_server(sock):
                    closed_at[sock] = time.monotonic() - started
            time.sleep(0.1)
    finally:
        for sock in [*loris, *bodies]:
            sock.close()
    held = [s for s in [*loris, *bodies] if s not in closed_at]
    assert not held, f"{len(held)} slow connections still open after {deadline - started:.0f}s"
    assert max(closed_at[s] for s in loris) <= HEADER_TIMEOUT + MARGIN
    assert max(closed_at[s] for s in bodies) <= BODY_TIMEOUT + MARGIN
    assert sent > 1, "the loris got to send several bytes before the deadline"
    assert normal and set(normal) == {200}


@pytest.mark.parametrize("server", SERVERS)
def test_a_connection_past_the_cap_gets_a_503_at_once(
    tmp_path: Path, processes: Processes, server: dict[str, Any]
) -> None:
    url, port = start_collector(tmp_path, processes, server, max_connections=5, header_timeout="3s")
    held = [connect(port) for _ in range(5)]
    try:
        time.sleep(0.3)  # the server has accepted them
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        extra.sendall(b"GET /api/v1/hosts HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while chunk := extra.recv(4096):  # the server closes after the answer: no reset
            answer += chunk
        extra.close()
        head = answer.split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 503"), answer
        assert b"retry-after: 5" in head and b"connection: close" in head
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)  # their connection_lost has run
    assert served(url) == 200, "below the cap again: served"
