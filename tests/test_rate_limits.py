"""Rate limits per token: a flood gets 429 with Retry-After, a normal agent and its replay don't,
and the agent keeps a throttled report in its spool and comes back when it was told to."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from agent.shipper import ReportSender, ReportShipper, RetryLater, SendResult, retry_after
from agent.spool import Spool
from checks.schema import encode
from collector.api.application import create_app
from collector.api.limits import FailureThrottle, RequestLimits, Throttled, TokenBucketLimiter
from collector.app import CollectorService
from collector.auth import add_token, read_tokens, set_user
from collector.config import collector_config_from_dict
from tests.apifuzz import serve_in_thread
from tests.helpers import FS_RULE, FakeClock, Reporter


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock(0.0)
    limiter = TokenBucketLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("web01") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("web01") == pytest.approx(0.5), "empty: one token in 1/rate s"
    assert limiter.acquire("db01") == 0.0, "each key has its own bucket"
    clock.advance(0.5)
    assert limiter.acquire("web01") == 0.0
    clock.advance(100)
    assert [limiter.acquire("web01") for _ in range(4)][-1] > 0, "refills only up to the burst"


def test_rate_zero_switches_the_limit_off() -> None:
    limiter = TokenBucketLimiter(rate=0.0, burst=1, clock=FakeClock(0.0))
    assert all(limiter.acquire("web01") == 0.0 for _ in range(1000))


def test_defaults_never_throttle_an_agent_or_a_days_replay() -> None:
    """An agent every 60 s for a week is never throttled; a day's spool (1,440 reports) sent at
    the agent's replay rate (20/s) is throttled only past the burst, and then by seconds."""
    clock = FakeClock(0.0)
    limits = collector_config_from_dict({}).limits
    limiter = TokenBucketLimiter(
        limits.agent_requests_per_second, limits.agent_burst_requests, clock
    )
    for _ in range(7 * 24 * 60):
        assert limiter.acquire("web01") == 0.0
        clock.advance(60)
    sent, waited, began = 0, 0.0, clock.now
    while sent < 1440:
        wait = limiter.acquire("web01")
        if wait:
            clock.advance(wait)
            waited += wait
            continue
        sent += 1
        clock.advance(1 / 20)
    assert waited < 1440 / limits.agent_requests_per_second, "the burst took part of it at once"
    assert clock.now - began < 10 * 60, "a day's backlog replays within ten minutes"


@pytest.fixture
def api(
    make_service: Callable[..., CollectorService],
) -> Iterator[tuple[TestClient[Any], CollectorService, str, str]]:
    service = make_service(
        [{**FS_RULE, "for": "0s"}],
        limits={
            "agent_requests_per_second": 0.001,
            "agent_burst_requests": 3,
            "operator_requests_per_second": 0.001,
            "operator_burst_requests": 2,
        },
    )
    token = add_token(service.config.tokens_file, "web01")
    operator = add_token(service.config.operator_tokens_file, "admin-anna")
    with TestClient(create_app(service)) as client:
        yield client, service, token, operator


def throttled(service: CollectorService, role: str) -> float:
    value = service.registry.get_sample_value("runwatch_requests_throttled_total", {"role": role})
    return value or 0.0


def test_agent_over_its_limit_gets_429_and_the_report_changes_nothing(
    api: Any, clock: FakeClock
) -> None:
    client, service, token, _ = api
    web = Reporter("web01", clock)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for _ in range(3):
        assert (
            client.post(
                "/api/v1/reports",
                content=encode(web.report({"fs_used_ratio": 0.5})),
                headers=headers,
            ).status_code
            == 202
        )
    response = client.post(
        "/api/v1/reports", content=encode(web.report({"fs_used_ratio": 0.99})), headers=headers
    )
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"] == "throttled"
    assert "rate limit" in response.json()["message"]
    assert token not in response.text
    assert service.fleet.hosts["web01"].record.last_seq == 3, "the throttled report is not stored"
    assert not service.calls("open", None)
    assert throttled(service, "agent") == 1
    # Another host has its own bucket.
    db_token = add_token(service.config.tokens_file, "db01")
    service.tokens._checked_at = float("-inf")  # skip the 1 s re-read throttle
    response = client.post(
        "/api/v1/reports",
        content=encode(Reporter("db01", clock).report({"x": 1})),
        headers={"Authorization": f"Bearer {db_token}"},
    )
    assert response.status_code == 202


def test_operator_over_its_limit_gets_429(api: Any) -> None:
    client, service, _, operator = api
    headers = {"Authorization": f"Bearer {operator}"}
    assert [client.get("/api/v1/tokens", headers=headers).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    response = client.post("/api/v1/tokens", json={"host": "new01"}, headers=headers)
    assert response.status_code == 429
    assert "Retry-After" in response.headers
    assert "new01" not in {e.host for e in read_tokens(service.config.tokens_file)}
    assert throttled(service, "operator") == 2


def test_unknown_tokens_are_not_counted_against_a_real_one(api: Any, clock: FakeClock) -> None:
    client, _, token, _ = api
    for _ in range(10):
        assert (
            client.post(
                "/api/v1/reports", content=b"{}", headers={"Authorization": "Bearer rwt_wrong"}
            ).status_code
            == 401
        )
    response = client.post(
        "/api/v1/reports",
        content=encode(Reporter("web01", clock).report({"x": 1})),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param("7", 7.0, id="delay"),
        pytest.param(" 2 ", 2.0, id="spaces"),
        pytest.param("99999", 3600.0, id="capped at an hour"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", None, id="date form: ignored"),
        pytest.param("-1", None, id="negative: ignored"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert retry_after(header) == seconds


class _ThrottlingCollector(http.server.BaseHTTPRequestHandler):
    """Answers like the collector: 429 with Retry-After while the bucket is empty, else 202."""

    limiter: TokenBucketLimiter
    received: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        wait = self.limiter.acquire("web01")
        if wait:
            payload = b'{"error": "throttled", "message": "rate limit"}'
            self.send_response(429)
            self.send_header("Retry-After", str(max(0, int(wait))))
        else:
            self.received.append(body)
            payload = b'{"status": "accepted"}'
            self.send_response(202)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_shipper_keeps_throttled_reports_and_delivers_them_in_order(tmp_path: Path) -> None:
    received: list[bytes] = []
    handler = type(
        "Handler",
        (_ThrottlingCollector,),
        {"limiter": TokenBucketLimiter(rate=10.0, burst=2), "received": received},
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        sender = ReportSender(url, None, timeout=5)
        spool = Spool(tmp_path, max_bytes=1 << 20, max_reports=100)
        for _ in range(8):
            seq = spool.next_seq()
            spool.put(seq, str(seq).encode())
        # One drain: the burst goes, then a 429 keeps the rest in the spool.
        shipper = ReportShipper(spool, sender.send, min_backoff=30, max_backoff=60)
        with pytest.raises(RetryLater) as later:
            shipper.drain_once()
        assert later.value.after_seconds == 0.0, "Retry-After came through to the shipper"
        assert received == [b"1", b"2"]
        assert spool.stats().reports == 6
        # The loop waits as told (not the 30 s backoff) and delivers everything in order.
        shipper.start()
        deadline = time.monotonic() + 20
        while len(received) < 8 and time.monotonic() < deadline:
            shipper.notify()
            time.sleep(0.05)
        shipper.stop()
        assert received == [str(n).encode() for n in range(1, 9)]
        assert spool.stats().reports == 0
    finally:
        server.shutdown()
        server.server_close()


def test_429_is_not_a_permanent_refusal() -> None:
    assert not SendResult(429, "throttled", 5.0).permanent
    assert not SendResult(429, "throttled", 5.0).delivered


# -- failed authentication per client address, sign-in by name, and the password-check cap ---


class PeerSwitch:
    """An ASGI wrapper that makes requests come from `address` (the test client has one)."""

    def __init__(self, app: Any, address: str = "192.0.2.10") -> None:
        self.app = app
        self.address = address

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "client": (self.address, 50000)}
        await self.app(scope, receive, send)


def refused(service: CollectorService, reason: str) -> float:
    value = service.registry.get_sample_value("runwatch_auth_refused_total", {"reason": reason})
    return value or 0.0


def failures(service: CollectorService, via: str) -> float:
    value = service.registry.get_sample_value("runwatch_auth_failures_total", {"via": via})
    return value or 0.0


def test_failures_close_an_address_for_a_while_and_it_comes_back() -> None:
    clock = FakeClock(0.0)
    throttle = FailureThrottle(rate=0.1, burst=3, clock=clock)
    assert throttle.refused_for("192.0.2.1") == 0.0
    assert [throttle.failed("192.0.2.1") for _ in range(2)] == [0.0, 0.0]
    assert throttle.refused_for("192.0.2.1") == 0.0, "two failures of three: still open"
    assert throttle.failed("192.0.2.1") == pytest.approx(10.0), "the third empties the bucket"
    assert throttle.refused_for("192.0.2.1") == pytest.approx(10.0)
    assert throttle.refused_for("192.0.2.2") == 0.0, "each address has its own bucket"
    clock.advance(10)
    assert throttle.refused_for("192.0.2.1") == 0.0, "refilled: never a permanent ban"
    assert throttle.failed("192.0.2.1") == pytest.approx(10.0), "one more failure closes it again"
    # One IPv6 client usually holds a whole /64: it is one key, not 2**64 of them.
    for host in range(3):
        throttle.failed(f"2001:db8:1:2::{host + 1}")
    assert throttle.refused_for("2001:db8:1:2:ffff::9") > 0
    assert throttle.refused_for("2001:db8:1:3::1") == 0.0


def test_rate_zero_switches_the_address_throttle_off() -> None:
    throttle = FailureThrottle(rate=0.0, burst=1, clock=FakeClock(0.0))
    assert all(throttle.failed("192.0.2.1") == 0.0 for _ in range(100))
    assert throttle.refused_for("192.0.2.1") == 0.0


@pytest.fixture
def guarded(
    make_service: Callable[..., CollectorService],
) -> Iterator[tuple[TestClient[Any], PeerSwitch, CollectorService, str, str]]:
    service = make_service(
        [{**FS_RULE, "for": "0s"}],
        limits={"address_failures_per_second": 0.001, "address_burst_failures": 3},
    )
    token = add_token(service.config.tokens_file, "web01")
    operator = add_token(service.config.operator_tokens_file, "admin-anna")
    switch = PeerSwitch(create_app(service))
    with TestClient(switch) as client:
        yield client, switch, service, token, operator


def test_unknown_tokens_from_an_address_close_it_and_others_go_on(
    guarded: Any, clock: FakeClock
) -> None:
    client, switch, service, token, operator = guarded
    web = Reporter("web01", clock)
    wrong = {"Authorization": "Bearer rwt_wrong"}
    switch.address = "192.0.2.66"
    assert [
        client.post("/api/v1/reports", content=b"{}", headers=wrong).status_code for _ in range(3)
    ] == [401, 401, 401]
    closed = client.post("/api/v1/reports", content=b"{}", headers=wrong)
    assert closed.status_code == 429
    assert int(closed.headers["retry-after"]) >= 100, "refills at 0.001 a second"
    assert "failed authentications from this address" in closed.json()["message"]
    # Like fail2ban: while the address is closed, even a valid token from it is refused.
    valid = client.post(
        "/api/v1/reports",
        content=encode(web.report({"fs_used_ratio": 0.5})),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert valid.status_code == 429
    assert (
        client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {operator}"}).status_code
        == 429
    )
    assert "web01" not in service.fleet.hosts
    assert failures(service, "agent") == 3
    assert refused(service, "address") == 3
    # Another address is not affected.
    switch.address = "192.0.2.7"
    assert (
        client.post(
            "/api/v1/reports",
            content=encode(web.report({"fs_used_ratio": 0.5})),
            headers={"Authorization": f"Bearer {token}"},
        ).status_code
        == 202
    )
    # Unknown operator tokens count too, and a missing token is no guess: it is not counted.
    for _ in range(5):
        assert client.get("/api/v1/audit").status_code == 401
    assert [client.get("/api/v1/audit", headers=wrong).status_code for _ in range(4)] == [
        401,
        401,
        401,
        429,
    ]
    assert failures(service, "operator") == 3
    # Prometheus sees the counts: they are on /metrics, not only in the service's registry.
    metrics = client.get("/metrics").text
    assert 'runwatch_auth_failures_total{via="agent"} 3.0' in metrics
    assert 'runwatch_auth_refused_total{reason="address"}' in metrics


def test_sign_in_failures_and_bad_tokens_share_one_count_per_address(guarded: Any) -> None:
    client, switch, service, token, _ = guarded
    switch.address = "2001:db8:5::1"
    assert client.post("/login", data={"token": "rwt_wrong"}).status_code == 401
    assert (
        client.post("/login", data={"user": "nobody", "password": "wrong-wrong"}).status_code == 401
    )
    switch.address = "2001:db8:5::2"  # the same /64
    assert (
        client.post(
            "/api/v1/reports", content=b"{}", headers={"Authorization": "Bearer rwt_wrong"}
        ).status_code
        == 401
    )
    page = client.post("/login", data={"token": token})
    assert page.status_code == 429 and int(page.headers["retry-after"]) >= 1
    assert "Too many failed sign-ins" in page.text and 'id="login-error"' in page.text
    assert failures(service, "console") == 2 and failures(service, "agent") == 1


def test_sign_in_by_name_is_rate_limited_and_a_typo_or_two_is_fine(
    make_service: Callable[..., CollectorService],
) -> None:
    service = make_service(
        [FS_RULE], limits={"signin_attempts_per_second": 0.001, "signin_burst_attempts": 3}
    )
    set_user(service.config.users_file, "carol", "carol-secret-1")
    with TestClient(create_app(service)) as client:

        def sign_in(password: str, user: str = "carol") -> Any:
            return client.post(
                "/login",
                data={"user": user, "password": password, "next": "/"},
                follow_redirects=False,
            )

        assert [sign_in("typo-1").status_code, sign_in("typo-2").status_code] == [401, 401]
        assert sign_in("carol-secret-1").status_code == 303, "a correct sign-in after typos"
        # A success fills the name's bucket again; three wrong ones empty it.
        assert [sign_in(f"guess-{n}").status_code for n in range(3)] == [401, 401, 401]
        locked = sign_in("carol-secret-1")
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) >= 1
        assert "Too many sign-in attempts for this name" in locked.text
        assert sign_in("x", user="dave").status_code == 401, "other names have their own"
        assert refused(service, "user") == 1


def test_a_locked_name_gets_back_in_once_its_bucket_refills() -> None:
    clock = FakeClock(0.0)
    limits = RequestLimits(collector_config_from_dict({}).limits, CollectorRegistry(), clock)
    for _ in range(collector_config_from_dict({}).limits.signin_burst_attempts):
        limits.check_signin("carol")
    with pytest.raises(Throttled) as caught:
        limits.check_signin("carol")
    clock.advance(caught.value.retry_after)
    limits.check_signin("carol")  # no permanent lockout


def test_parallel_wrong_sign_ins_never_hash_more_than_the_cap_at_once(
    make_service: Callable[..., CollectorService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CPU lever: each wrong password costs a PBKDF2 run; at most the cap run at once,
    and the attempts past what the cap and its short line can take are refused, not queued
    (before they spend any of the name's attempts)."""
    service = make_service(
        [FS_RULE],
        limits={
            "password_checks_at_once": 1,
            "password_checks_waiting": 2,
            "signin_burst_attempts": 3,
        },
    )
    running, most, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def slow_check(password: str, stored: str) -> bool:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(10)  # held until every attempt has been admitted or refused
        with lock:
            running[0] -= 1
        return False

    monkeypatch.setattr("collector.api.console.pages.verify_password", slow_check)

    with serve_in_thread(service) as url, ThreadPoolExecutor(8) as pool:
        attempts = [
            pool.submit(
                httpx.post,
                f"{url}/login",
                timeout=30,
                data={"user": "carol", "password": f"guess-{n}"},
            )
            for n in range(8)
        ]
        deadline = time.monotonic() + 10
        while refused(service, "busy") < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        answers = [attempt.result() for attempt in attempts]
    statuses = sorted(answer.status_code for answer in answers)
    assert most[0] == 1, "never more hashes at once than the cap"
    assert statuses == [401] * 3 + [429] * 5, "the cap and its line of two take three"
    busy = next(answer for answer in answers if answer.status_code == 429)
    assert "busy" in busy.text and int(busy.headers["retry-after"]) >= 1
    assert refused(service, "busy") == 5 and refused(service, "user") == 0
