"""Stand-ins for help desks that cannot run here (Jira Cloud, ServiceNow, Zammad), for tests only.

Each fake is a small threaded HTTP server on 127.0.0.1 that serves only the documented endpoints
the runwatch adapters use. It checks every request against the vendor's documented shape (auth
header, method, path, required fields and their types) and answers with the documented response
shapes and status codes. Where the real service would quietly accept or ignore something (an
unknown field, a query it half understands), the fake refuses it, so that drift in an adapter
fails a test instead of a production ticket.

Shared here: the server (`LoopbackServer`), the request log and the fault knob `fail_next`;
and `JSONHandler`, for a test's own small HTTP server.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: Any  # parsed JSON, or None
    raw: bytes


@dataclass(slots=True)
class Reply:
    status: int
    body: Any = None  # JSON value; None sends no body
    headers: dict[str, str] = field(default_factory=dict)


class Refusal(Exception):
    """Answer with this status and the vendor's error body for `message`."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


class BadRequest(Refusal):
    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(400, message, **details)


Handler = Callable[[RecordedRequest, re.Match[str]], Reply]


class JSONHandler(BaseHTTPRequestHandler):
    """Answers each POST with the JSON `answer` makes of its body, and logs nothing."""

    def answer(self, body: bytes) -> tuple[int, bytes]:
        """The status and JSON body to answer a POST of `body` with."""
        raise NotImplementedError

    def do_POST(self) -> None:
        status, payload = self.answer(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: Any) -> None:
        pass


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 for a fake; subclasses give the handler class."""

    vendor = "fake"

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self, port: int = 0) -> Self:
        """Serve on 127.0.0.1:`port` (0: a free one; the old port again to come back up)."""
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self.handler_class())
        self._server.daemon_threads = True
        # A short poll keeps stop() quick; shutdown() waits for the loop to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name=f"fake-{self.vendor}", daemon=True
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


class FakeHelpDesk(LoopbackServer):
    """A threaded HTTP server with routes, a request log and injectable faults."""

    vendor = "fake"

    def __init__(self) -> None:
        super().__init__()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._lock = threading.Lock()
        self._failures: list[tuple[int, float | None]] = []
        self.requests: list[RecordedRequest] = []
        # Each request with the reply it got, for contract tests.
        self.exchanges: list[tuple[RecordedRequest, Reply]] = []

    # -- for subclasses -----------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def authorized(self, request: RecordedRequest) -> bool:
        return True

    @staticmethod
    def has_basic_auth(request: RecordedRequest, user: str, secret: str) -> bool:
        """Whether the request carries HTTP Basic credentials for `user`:`secret`."""
        pair = base64.b64encode(f"{user}:{secret}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {pair}"

    def error_body(
        self, request: RecordedRequest, status: int, message: str, details: dict[str, Any]
    ) -> Any:
        """The vendor's error body for a refusal."""
        return {"error": message}

    # -- for tests ----------------------------------------------------------------------------

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; Nagle would hold the body ~40 ms.
            disable_nagle_algorithm = True

            def handle_one(self) -> None:
                fake._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean; the request log has everything

        return RequestHandler

    def fail_next(
        self, n: int = 1, status: int = 503, retry_after: float | str | None = None
    ) -> None:
        """Answer the next `n` requests with `status` (and Retry-After, if given)."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * n)  # type: ignore[list-item]

    def requests_to(self, method: str, path_pattern: str) -> list[RecordedRequest]:
        pattern = re.compile(f"^{path_pattern}$")
        return [r for r in self.requests if r.method == method and pattern.match(r.path)]

    # -- the server side ----------------------------------------------------------------------

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        url = urlsplit(http.path)
        headers = {k.lower(): v for k, v in http.headers.items()}
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        request = RecordedRequest(
            http.command, url.path, dict(parse_qsl(url.query)), headers, body, raw
        )
        with self._lock:
            self.requests.append(request)
            failure = self._failures.pop(0) if self._failures else None
        reply = self._answer(request, raw, bad_json, failure)
        with self._lock:
            self.exchanges.append((request, reply))
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        http.send_response(reply.status)
        for name, value in reply.headers.items():
            http.send_header(name, value)
        if payload:
            http.send_header("Content-Type", "application/json;charset=UTF-8")
        http.send_header("Content-Length", str(len(payload)))
        http.end_headers()
        if payload and http.command != "HEAD":
            http.wfile.write(payload)

    def _answer(
        self,
        request: RecordedRequest,
        raw: bytes,
        bad_json: bool,
        failure: tuple[int, float | str | None] | None,
    ) -> Reply:
        try:
            if failure is not None:
                status, retry_after = failure
                headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
                return Reply(
                    status, self.error_body(request, status, "injected failure", {}), headers
                )
            if not self.authorized(request):
                raise Refusal(401, "authentication failed")
            handler, match = self._match(request)
            if raw:
                content_type = request.headers.get("content-type", "")
                if not content_type.startswith("application/json"):
                    raise Refusal(
                        415, f"Content-Type must be application/json, got {content_type or 'none'}"
                    )
                if bad_json:
                    raise BadRequest("the body is not valid JSON")
            elif request.method in ("POST", "PUT", "PATCH"):
                raise BadRequest("a JSON body is required")
            return handler(request, match)
        except Refusal as refusal:
            return Reply(
                refusal.status,
                self.error_body(request, refusal.status, refusal.message, refusal.details),
            )

    def _match(self, request: RecordedRequest) -> tuple[Handler, re.Match[str]]:
        allowed = False
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            if method == request.method:
                return handler, match
            allowed = True
        if allowed:
            raise Refusal(405, f"method {request.method} is not allowed on {request.path}")
        raise Refusal(404, f"no such endpoint: {request.method} {request.path}")


# -- shape checks shared by the fakes ---------------------------------------------------------


def expect_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def expect_keys(
    value: dict[str, Any],
    where: str,
    *,
    allowed: set[str],
    required: frozenset[str] | set[str] = frozenset(),
) -> None:
    if missing := required - set(value):
        raise BadRequest(f"{where}: missing {sorted(missing)}", field=sorted(missing)[0])
    if unknown := set(value) - allowed - required:
        raise BadRequest(f"{where}: unknown {sorted(unknown)}", field=sorted(unknown)[0])


def expect_str(value: Any, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise BadRequest(
            f"{where} must be a{'' if empty else ' non-empty'} string, got {value!r}", field=where
        )
    return value


def expect_query(request: RecordedRequest, *, allowed: set[str]) -> None:
    if unknown := set(request.query) - allowed:
        raise BadRequest(f"unsupported query parameters {sorted(unknown)}")


class WebhookReceiver(FakeHelpDesk):
    """Any endpoint that takes JSON by POST; answers with `answer` (201) and keeps the bodies."""

    vendor = "webhook"

    def __init__(self, path: str = "/hook", answer: Any = None) -> None:
        super().__init__()
        self.answer = answer
        self.route("POST", re.escape(path), self._post)

    def _post(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        return Reply(201 if self.answer is not None else 204, self.answer)

    @property
    def bodies(self) -> list[Any]:
        return [r.body for r in self.requests]
