"""The status page served ahead of Litestar (collector/api/status_path.py), over a real uvicorn
server with the C parser as `runwatch collector` runs it: the same bytes and headers as the
route, one render for every visitor in a cache period, 304 to a visitor holding the page, and
anything unusual (a foreign Host, a NUL, another method) answered by Litestar as before."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from litestar.testing import TestClient

from collector.api.application import create_app
from collector.api.ops import accepts_gzip
from collector.app import CollectorService
from collector.server import asgi_app, bind, connections
from tests.helpers import FakeClock
from tests.test_services_status import INTERNAL, degraded_shop


class Served:
    """A service served on a loopback port by uvicorn with httptools, in a thread."""

    def __init__(self, service: CollectorService) -> None:
        self.app = asgi_app(service)
        self.sock = bind("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        protocol = connections.LimitedHttpToolsProtocol.configured(10.0, 10.0, 100)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", http=protocol)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def get(
        self, path: str, method: str = "GET", **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})
            answer = conn.getresponse()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        finally:
            conn.close()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[CollectorService], Served]]:
    started: list[Served] = []

    def start(service: CollectorService) -> Served:
        started.append(Served(service))
        return started[-1]

    yield start
    for served in started:
        served.stop()


def test_the_fast_path_answers_what_the_route_answers(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    serve: Callable[[CollectorService], Served],
) -> None:
    service = degraded_shop(make_service, clock, status_page={"title": "Example & Co status"})
    served = serve(service)
    fast = {path: served.get(path) for path in ("/status", "/status.json", "/status.atom")}
    assert served.app.served == 3
    with TestClient(app=create_app(service)) as client:  # the Litestar route, same cache
        routed = {path: client.get(path, headers={"Accept-Encoding": "identity"}) for path in fast}
    for path, (status, headers, body) in fast.items():
        assert status == 200
        assert body == routed[path].content, path
        for name in (
            "content-type",
            "cache-control",
            "etag",
            "content-security-policy",
            "x-content-type-options",
            "referrer-policy",
            "vary",
        ):
            assert headers[name] == routed[path].headers[name], (path, name)
        assert int(headers["content-length"]) == len(body)
    assert fast["/status"][1]["cache-control"] == "public, max-age=5"
    assert json.loads(fast["/status.json"][2])["services"][0]["state"] == "degraded"
    for _, _, body in fast.values():
        assert not any(word.encode() in body for word in INTERNAL)


def test_every_visitor_in_a_cache_period_gets_one_render(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    serve: Callable[[CollectorService], Served],
) -> None:
    service = degraded_shop(make_service, clock)
    served = serve(service)
    bodies = {served.get("/status.json")[2] for _ in range(50)}
    assert len(bodies) == 1 and service.status_page.renders == 1
    clock.advance(5)
    service.tick()
    # Stale: the visitor gets the last render while the next one is made off the loop.
    assert served.get("/status.json")[2] == next(iter(bodies))
    deadline = time.monotonic() + 10
    while (fresh := served.get("/status.json")[2]) in bodies and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fresh not in bodies
    assert service.status_page.renders == 2
    assert {served.get("/status.json")[2] for _ in range(20)} == {fresh}
    assert service.status_page.renders == 2


def test_a_visitor_holding_the_page_gets_304(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    serve: Callable[[CollectorService], Served],
) -> None:
    service = degraded_shop(make_service, clock)
    served = serve(service)
    _, headers, body = served.get("/status")
    tag = headers["etag"]
    status, again, empty = served.get("/status", If_None_Match=tag)
    assert (status, empty, again["etag"]) == (304, b"", tag)
    assert again["cache-control"] == "public, max-age=5"
    assert served.get("/status", If_None_Match=f'"other", W/{tag}')[0] == 304
    assert served.get("/status", If_None_Match='"other"')[:3:2] == (200, body)
    with TestClient(app=create_app(service)) as client:  # the route agrees
        assert client.get("/status", headers={"If-None-Match": tag}).status_code == 304
    clock.advance(5)
    service.tick()  # the page changed: once rendered again, the old tag no longer matches
    deadline = time.monotonic() + 10
    while (answer := served.get("/status", If_None_Match=tag))[0] == 304:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    status, fresh, _ = answer
    assert status == 200 and fresh["etag"] != tag


def test_switched_off_is_404_on_the_fast_path_too(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    serve: Callable[[CollectorService], Served],
) -> None:
    served = serve(degraded_shop(make_service, clock, status_page={"enabled": False}))
    for path in ("/status", "/status.json", "/status.atom"):
        status, _, body = served.get(path)
        assert status == 404 and b"switched off" in body


def test_unusual_requests_go_to_litestar(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    serve: Callable[[CollectorService], Served],
) -> None:
    served = serve(degraded_shop(make_service, clock))
    misdirected: Any = served.get("/status", Host="rebound.example.com")
    assert misdirected[0] == 421 and b"allowed_hosts" in misdirected[2]
    assert served.get("/status.json?x=%00")[0] == 400
    assert served.get("/status", method="POST")[0] == 405
    assert served.app.served == 0
    status, headers, body = served.get("/status", method="HEAD")  # uptime checkers
    assert (status, body, headers["cache-control"]) == (200, b"", "public, max-age=5")
    assert int(headers["content-length"]) == len(served.get("/status")[2])


def test_a_browser_gets_the_page_gzipped(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    serve: Callable[[CollectorService], Served],
) -> None:
    service = degraded_shop(make_service, clock)
    served = serve(service)
    _, plain_headers, plain = served.get("/status")
    status, headers, zipped = served.get("/status", Accept_Encoding="gzip, deflate, br, zstd")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(zipped) == plain and len(zipped) < len(plain)
    assert headers["vary"] == plain_headers["vary"] == "Accept-Encoding"
    assert headers["etag"] != plain_headers["etag"]  # another representation
    assert "content-encoding" not in plain_headers
    assert (
        served.get("/status", Accept_Encoding="gzip;q=0, identity")[1].get("content-encoding")
        is None
    )
    # Either tag names this render: the visitor keeps what it has.
    assert (
        served.get("/status", If_None_Match=plain_headers["etag"], Accept_Encoding="gzip")[0] == 304
    )
    assert service.status_page.renders == 1
    with TestClient(app=create_app(service)) as client:  # the route gzips alike
        routed = client.get("/status", headers={"Accept-Encoding": "gzip"})
    assert routed.headers["content-encoding"] == "gzip" and routed.content == plain


@pytest.mark.parametrize(
    ("header", "gzipped"),
    [
        ("gzip", True),
        ("GZIP;q=0.5", True),
        ("br, *", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=junk", False),
        ("identity", False),
        ("", False),
    ],
)
def test_accept_encoding(header: str, gzipped: bool) -> None:
    assert accepts_gzip(header) is gzipped


def test_a_message_posted_is_on_the_page_at_the_next_visit(
    make_service: Callable[..., CollectorService],
    clock: FakeClock,
    serve: Callable[[CollectorService], Served],
) -> None:
    """An operator's message clears the cache: no visitor gets the page without it."""
    service = degraded_shop(make_service, clock)
    served = serve(service)
    assert b"We are on it" not in served.get("/status")[2]
    service.status_messages.post("alice", "We are on it", "web-shop")
    assert b"We are on it" in served.get("/status")[2]
    assert b"We are on it" in served.get("/status.json")[2]
