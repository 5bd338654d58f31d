"""bench/fleet.py's services mode (issue 24): services over the fleet, the time from a breach
report to the service's state change, and the status page under a fixed request rate.

- `services_config`: N services over the fleet's hosts (`hostNNNNN`), each a block of hosts by
  glob: a third need `any` of them (a pool, every rule), a third at least all but two (a
  cluster, every rule), a third `all` of them (the breach rule only); each also has a label
  component (`svc`, `tier: front`, the hosts the senders label so); every tenth service
  depends on the one before it, and every fiftieth is also made of another service; a quarter
  are public.
- `ServiceBreach`: from a quarter into the measured window, one host of each of K `all`
  services reports the breach rule CRITICAL, the reports spread over 1.3 ticks (so they fall
  at different phases of the tick); the service's own `since` (the tick that saw the outage)
  less the report's send time is the figure, beside `evaluation_interval`.
- `StatusLoad`: a process running a bounded asyncio client that GETs `/status` at a fixed rate
  over kept-alive connections, for a fixed time, and counts statuses and latencies.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing
import queue
import socket
import statistics
import threading
import time
from typing import Any

BREACH_METRIC = "bench_breach_ratio"
# The status-page client: one request's limit, and how long past the run a lane left behind
# may go on before it stops (the requests it did not send are counted as not sent).
REQUEST_TIMEOUT = 10.0
LATE_SECONDS = 2.0
BREACH_RULE_NAME = "bench_breach"


def block_size(agents: int, services: int) -> int:
    """Hosts per service: a multiple of ten (one glob `hostNNNN?` per ten hosts)."""
    return max(10, agents // max(1, services) // 10 * 10)


def host_labels(slot: int, per: int, services: int) -> dict[str, str]:
    """The agent labels of host number `slot` in the services mode."""
    block = slot // per
    if block >= services:
        return {}
    return {"svc": f"s{block:03d}", "tier": "front" if slot % per < 2 else "back"}


def services_config(agents: int, services: int, owner: str) -> dict[str, Any]:
    """The `services:` section for the fleet (see the module's docstring)."""
    per = block_size(agents, services)
    out: dict[str, Any] = {}
    for i in range(services):
        first = i * per
        globs = [f"host{(first + k) // 10:04d}?" for k in range(0, per, 10)]
        kind = i % 3
        components: list[dict[str, Any]]
        if kind == 0:
            components = [{"name": "pool", "hosts": globs, "need": "any"}]
        elif kind == 1:
            components = [{"name": "cluster", "hosts": globs, "need": max(1, per - 2)}]
        else:
            components = [
                {"name": "servers", "hosts": globs, "rules": [BREACH_RULE_NAME], "need": "all"}
            ]
        components.append(
            {
                "name": "front",
                "labels": {"svc": f"s{i:03d}", "tier": "front"},
                "rules": [BREACH_RULE_NAME],
                "need": "any",
            }
        )
        if i % 50 == 49:
            components.append({"service": f"s{i - 2:03d}"})
        service: dict[str, Any] = {
            "owner": owner,
            "title": f"Service {i}",
            "components": components,
            "public": i % 4 == 0,
        }
        if i % 10 == 9:
            service["depends_on"] = [f"s{i - 1:03d}"]
        out[f"s{i:03d}"] = service
    return out


def breach_targets(agents: int, services: int, count: int) -> list[tuple[str, int]]:
    """(service, host slot) for `count` services that need all their hosts (the breach rule)."""
    per = block_size(agents, services)
    kinds = [i for i in range(services) if i % 3 == 2 and (i + 1) * per <= agents]
    step = max(1, len(kinds) // max(1, count))
    return [(f"s{i:03d}", i * per + 3) for i in kinds[::step][:count]]


class ServiceBreach:
    """One host of each target service reports the breach rule CRITICAL; wait for each
    service's outage and take the tick's `since`."""

    def __init__(
        self,
        port: int,
        targets: list[tuple[str, str, str]],
        interval: float,
        tick: float = 5.0,
    ) -> None:
        self.port = port
        self.interval_of_ticks = tick  # the collector's evaluation_interval
        self.targets = targets  # (service, host, token)
        self.interval = interval
        self.figures: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="service-breach", daemon=True)
        self._thread.start()

    def result(self, timeout: float = 60.0) -> dict[str, Any] | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.figures

    def _run(self) -> None:
        from checks.schema import SCHEMA_VERSION, Measurement, Report, encode

        sent: dict[str, float] = {}
        statuses: list[int] = []
        for service, host, token in self.targets:
            now = time.time()
            report = Report(
                schema_version=SCHEMA_VERSION,
                host=host,
                agent_version="bench",
                boot_id=f"breach-{host}",
                seq=1,
                sent_at=now,
                interval_seconds=self.interval,
                measurements=[
                    Measurement(
                        check="bench", name=BREACH_METRIC, value=0.99, unit="ratio", timestamp=now
                    )
                ],
                checks=[],
            )
            status, _ = _request(self.port, "POST", "/api/v1/reports", encode(report), token)
            statuses.append(status)
            sent[service] = now
            # Spread over the tick's phase: each breach waits a different share of a tick.
            time.sleep(self.interval_of_ticks * 1.3 / max(1, len(self.targets)))
        seen: dict[str, float] = {}
        waited: dict[str, float] = {}
        deadline = time.time() + 12 * self.interval_of_ticks  # bounded: a dozen ticks
        while len(seen) < len(sent) and time.time() < deadline:
            for service, at in sent.items():
                if service in seen:
                    continue
                status, body = _request(self.port, "GET", f"/api/v1/services/{service}")
                if status == 200:
                    data = json.loads(body)
                    if data["state"] == "outage" and data["since"] >= at - 1:
                        seen[service] = float(data["since"])
                        waited[service] = time.time()
            time.sleep(0.05)
        delays = [seen[s] - sent[s] for s in seen]
        self.figures = {
            "services": len(sent),
            "report_statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "changed": len(seen),
            # From each breach report's sending to the tick that saw the outage.
            "to_state_change_s": {
                "median": round(statistics.median(delays), 2) if delays else None,
                "max": round(max(delays), 2) if delays else None,
            },
            # As a reader of the API saw it (plus the 50 ms polling).
            "to_api_s_max": round(max(waited[s] - sent[s] for s in waited), 2) if waited else None,
        }


def _request(
    port: int, method: str, path: str, body: bytes | None = None, token: str | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        conn.close()


# -- the status page at a fixed rate --------------------------------------------------------


class StatusLoad:
    """GET /status at `rate` a second over `connections` kept-alive connections for `seconds`,
    from its own process (bounded: at most rate x seconds requests)."""

    def __init__(self, port: int, rate: float, seconds: float, connections: int = 50) -> None:
        context = multiprocessing.get_context("spawn")
        self._out = context.Queue()
        self._process = context.Process(
            target=_status_load_process,
            args=(port, rate, seconds, connections, self._out),
            name="status-load",
        )
        self.seconds = seconds

    def start(self) -> None:
        self._process.start()

    def result(self) -> dict[str, Any] | None:
        try:
            figures: dict[str, Any] = self._out.get(timeout=self.seconds + 60)
        except queue.Empty:  # the process died without figures: say so, stop it
            figures = {"error": "the status-page load process gave no figures"}
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()  # our own process, by its handle
        return figures


def _status_load_process(
    port: int, rate: float, seconds: float, connections: int, out: Any
) -> None:
    out.put(asyncio.run(_status_load(port, rate, seconds, connections)))


async def _status_load(port: int, rate: float, seconds: float, connections: int) -> dict[str, Any]:
    began = time.monotonic()
    until = began + seconds
    latencies: list[float] = []
    behind: list[float] = []  # how late each request went out (the client falling behind)
    statuses: dict[int, int] = {}
    request = _status_request(port)

    async def lane(number: int) -> None:
        every = connections / rate
        due = began + number / rate
        reader = writer = None
        # Bounded in time as well as count: a client left behind stops with the run.
        while due < until and time.monotonic() < until + LATE_SECONDS:
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            start = time.monotonic()
            behind.append(start - due)
            status = 0
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert reader is not None
                writer.write(request)
                status = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT)
            except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError):
                if writer is not None:
                    writer.close()
                reader = writer = None
            latencies.append(time.monotonic() - start)
            statuses[status] = statuses.get(status, 0) + 1
            due += every
        if writer is not None:
            writer.close()

    cpu_began = time.process_time()
    await asyncio.gather(*(lane(n) for n in range(connections)))
    took = time.monotonic() - began
    cpu = time.process_time() - cpu_began
    latencies.sort()
    behind.sort()

    def q(values: list[float], share: float) -> float | None:
        if not values:
            return None
        return round(1000 * values[min(len(values) - 1, int(share * len(values)))], 1)

    return {
        "planned_per_second": rate,
        "planned": int(rate * seconds),
        "requests": len(latencies),
        "per_second": round(len(latencies) / took, 1) if took else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "latency_ms": {"p50": q(latencies, 0.5), "p99": q(latencies, 0.99)},
        "client_behind_ms_p99": q(behind, 0.99),
        "client_cpu_percent": round(100 * cpu / took, 1) if took else None,
    }


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length bodies); return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


# -- the control: the same load on a process of its own ----------------------------------


class StaticPage:
    """A process answering every GET with one fixed response (the status page's bytes as the
    collector gave them), on its own port: `--status-control` points the status-page load
    here instead, so that what the load costs the machine (the client's CPU, the kernel's)
    shows apart from what serving it costs the collector."""

    def __init__(self, head: bytes, body: bytes) -> None:
        context = multiprocessing.get_context("spawn")
        self._ready = context.Queue()
        self._process = context.Process(
            target=_static_page_process, args=(head, body, self._ready), name="static-page"
        )

    def start(self, timeout: float = 30) -> int:
        """Start it; its port."""
        self._process.start()
        port: int = self._ready.get(timeout=timeout)
        return port

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()  # our own process, by its handle
        self._process.join(10)


def _static_page_process(head: bytes, body: bytes, ready: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - the collector's own loop is the fair match
        pass
    answer = head + body

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ready.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def fetch_status_page(port: int) -> tuple[bytes, bytes]:
    """One GET of /status as the load sends it: (the response head, its body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(_status_request(port))
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        while len(body) < length:
            body += sock.recv(65536)
    return head + b"\r\n\r\n", body


def _status_request(port: int) -> bytes:
    # As a browser asks: gzip accepted (the page's 90 days of bars compress some 80 to 1).
    return (
        f"GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/html\r\nAccept-Encoding: gzip, deflate, br\r\n\r\n"
    ).encode()
