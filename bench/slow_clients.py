"""Per-request cost of the slow-client deadlines: uvicorn's H11Protocol against LimitedH11Protocol.

    python bench/slow_clients.py [--requests 3000] [--rounds 5]

One kept-alive client sends small GETs to a trivial ASGI app on loopback, alternately served by
each protocol; prints the median time per request of each.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from collector.api.connections import LimitedH11Protocol
from collector.server import bind


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


def microseconds_per_request(protocol: type[H11Protocol], requests: int) -> float:
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, http=protocol, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    client = http.client.HTTPConnection("127.0.0.1", sock.getsockname()[1])
    for _ in range(200):  # warm up
        client.request("GET", "/")
        client.getresponse().read()
    started = time.perf_counter()
    for _ in range(requests):
        client.request("GET", "/")
        client.getresponse().read()
    elapsed = time.perf_counter() - started
    client.close()
    server.should_exit = True
    thread.join(5)
    return elapsed / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"H11Protocol": [], "LimitedH11Protocol": []}
    for _ in range(args.rounds):
        times["H11Protocol"].append(microseconds_per_request(H11Protocol, args.requests))
        times["LimitedH11Protocol"].append(
            microseconds_per_request(LimitedH11Protocol, args.requests)
        )
    for name, values in times.items():
        print(
            f"{name:20} median {statistics.median(values):6.1f} µs/request "
            f"(rounds: {', '.join(f'{v:.0f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
