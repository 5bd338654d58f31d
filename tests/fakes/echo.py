"""A help desk behind a proxy that echoes the request in its error pages, for tests only.

Proxies, WAFs and some help desks answer an error with the request they got: the request line
(path and query) and every header, credentials included. This fake answers every request that
way, so a test can check that none of it reaches a log line, an error or the outbox.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

TRUNCATE_AT = 300  # where SinkError cuts a quoted error body (collector/sinks/base.py)


class EchoDesk:
    """Answer every request with `status` and a text body echoing its request line and headers.

    `straddle` names a header whose echoed value is placed so that it begins just before the
    point where an error message cuts the body: a redaction done after the cut would leave the
    start of the value behind.
    """

    def __init__(self, status: int = 502, straddle: str | None = None) -> None:
        self.status = status
        self.straddle = straddle
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def body(self, request_line: str, headers: list[tuple[str, str]]) -> str:
        lines = [f"{name}: {value}" for name, value in headers]
        if self.straddle is not None:
            first = [line for line in lines if line.lower().startswith(self.straddle.lower() + ":")]
            lines = first + [line for line in lines if line not in first]
        echo = " | ".join([*lines, request_line])
        pad = 0
        if self.straddle is not None:
            pad = max(0, TRUNCATE_AT - 12 - (len(self.straddle) + 2))
        return f"{'.' * pad}{echo}"

    def start(self) -> Self:
        desk = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                desk.requests += 1
                payload = desk.body(self.requestline, list(self.headers.items())).encode()
                self.send_response(desk.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="fake-echo", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
