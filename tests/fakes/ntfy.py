"""A stand-in for an ntfy server, speaking its documented publish and poll API, for tests only.

Publishing (https://docs.ntfy.sh/publish/): `POST`/`PUT /<topic>` with the message as the body
and options in headers (`Title`/`X-Title`/`t`, `Priority`/`X-Priority`/`p`, `Tags`/`X-Tags`/`ta`),
or `POST /` with a JSON object (`topic`, `message`, `title`, `priority` 1-5, `tags` list).
Access tokens come as `Authorization: Bearer tk_…`; a wrong one gets 401 with ntfy's error body
(`{"code": 40101, "http": 401, "error": "unauthorized"}`). Each message is answered with its
JSON (`id`, `time`, `expires`, `event: message`, `topic`, `message`, …) and can be read back
as a phone would with `GET /<topic>/json?poll=1` (one JSON object a line).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes import LoopbackServer

_TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")
_PRIORITIES = {"min": 1, "low": 2, "default": 3, "high": 4, "max": 5, "urgent": 5}


class NtfyServer(LoopbackServer):
    vendor = "ntfy"

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token
        self.messages: list[dict[str, Any]] = []
        self.refused = 0
        self._lock = threading.Lock()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._poll(self)

            def do_POST(self) -> None:
                server._publish(self)

            do_PUT = do_POST  # noqa: N815

            def log_message(self, *_: Any) -> None:
                pass

        return Handler

    def _reply(self, http: BaseHTTPRequestHandler, status: int, body: str) -> None:
        data = body.encode()
        http.send_response(status)
        http.send_header("Content-Type", "application/json")
        http.send_header("Content-Length", str(len(data)))
        http.end_headers()
        http.wfile.write(data)

    def _error(self, http: BaseHTTPRequestHandler, status: int, code: int, error: str) -> None:
        with self._lock:
            self.refused += 1
        self._reply(http, status, json.dumps({"code": code, "http": status, "error": error}))

    def _authorized(self, http: BaseHTTPRequestHandler) -> bool:
        return self.token is None or http.headers.get("Authorization") == f"Bearer {self.token}"

    def _publish(self, http: BaseHTTPRequestHandler) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        path = urlsplit(http.path).path
        if not self._authorized(http):
            self._error(http, 401, 40101, "unauthorized")
            return
        if path == "/":
            try:
                body = json.loads(raw)
            except ValueError:
                self._error(http, 400, 40017, "invalid request: request body must be JSON")
                return
            if not isinstance(body, dict) or not isinstance(body.get("topic"), str):
                self._error(http, 400, 40009, "invalid request: topic invalid")
                return
            topic = body["topic"]
            message = str(body.get("message") or "triggered")
            title = str(body.get("title") or "")
            priority = body.get("priority", 3)
            tags = body.get("tags") or []
        else:
            topic = path.strip("/")
            headers = http.headers
            message = raw.decode("utf-8", "replace") or "triggered"
            title = headers.get("X-Title") or headers.get("Title") or headers.get("t") or ""
            word = headers.get("X-Priority") or headers.get("Priority") or headers.get("p") or "3"
            priority = int(word) if word.isdigit() else _PRIORITIES.get(word, 0)
            tag_text = headers.get("X-Tags") or headers.get("Tags") or headers.get("ta") or ""
            tags = [t.strip() for t in tag_text.split(",") if t.strip()]
        if not _TOPIC.match(topic):
            self._error(http, 400, 40009, "invalid request: topic invalid")
            return
        if not isinstance(priority, int) or not 1 <= priority <= 5:
            self._error(http, 400, 40007, "invalid request: priority invalid")
            return
        now = int(time.time())
        event = {
            "id": secrets.token_hex(6),
            "time": now,
            "expires": now + 43200,
            "event": "message",
            "topic": topic,
            "message": message,
        }
        if title:
            event["title"] = title
        if priority != 3:
            event["priority"] = priority
        if tags:
            event["tags"] = tags
        with self._lock:
            self.messages.append(event)
        self._reply(http, 200, json.dumps(event))

    def _poll(self, http: BaseHTTPRequestHandler) -> None:
        url = urlsplit(http.path)
        match = re.match(r"^/([-_A-Za-z0-9]{1,64})/json$", url.path)
        if match is None or dict(parse_qsl(url.query)).get("poll") != "1":
            self._error(http, 404, 40401, "page not found")
            return
        if not self._authorized(http):
            self._error(http, 401, 40101, "unauthorized")
            return
        with self._lock:
            lines = [json.dumps(m) for m in self.messages if m["topic"] == match.group(1)]
        self._reply(http, 200, "".join(line + "\n" for line in lines))


class HookReceiver(LoopbackServer):
    """An HTTP endpoint that records what apprise's json:// and form:// POST to it."""

    vendor = "hook"

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[str, dict[str, str], bytes]] = []  # path, headers, body
        self.fail_next = 0  # answer this many POSTs with 503 first

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status = 200
                if server.fail_next:
                    server.fail_next -= 1
                    status = 503
                else:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    server.received.append((self.path, headers, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        return Handler
