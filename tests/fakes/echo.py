"""A help desk behind a proxy that echoes the request in its error pages, for tests only.

Proxies, WAFs and some help desks answer an error with the request they got: the request line
(path and query) and every header, credentials included. This fake answers every request that
way, so a test can check that none of it reaches a log line, an error or the outbox.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes import LoopbackServer

TRUNCATE_AT = 300  # where SinkError cuts a quoted error body (collector/sinks/base.py)


class EchoDesk(LoopbackServer):
    """Answer every request with `status` and a text body echoing its request line and headers.

    `straddle` names a header whose echoed value is placed so that it begins just before the
    point where an error message cuts the body: a redaction done after the cut would leave the
    start of the value behind.
    """

    vendor = "echo"

    def __init__(self, status: int = 502, straddle: str | None = None) -> None:
        super().__init__()
        self.status = status
        self.straddle = straddle
        self.requests = 0

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

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
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

        return Handler
