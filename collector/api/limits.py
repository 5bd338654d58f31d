"""Limits on what clients may make the collector do: a token bucket for each agent host and each
operator, failed authentications per client address, sign-ins per user name, and a cap on the
password checks (PBKDF2) that run at once."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter

from collector.config import LimitsConfig

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# Buckets idle this long are full again; dropping them keeps memory bounded by the active keys.
_IDLE_BUCKETS_SWEEP = 10_000
# Longer sign-in names are cut to this for their bucket (real names are host-name sized).
_NAME_KEY_CHARS = 128
# Why authentication is refused for a while: the Throttled role and what the client is told.
_REFUSALS = {
    "address": ("address", "too many failed authentications from this address"),
    "user": ("signin", "too many sign-in attempts for this name"),
}


class TokenBucketLimiter:
    """Allow `rate` requests a second per key on average, and bursts of up to `burst`.

    A rate of 0 switches the limit off. Keys are who the token belongs to (a host, an operator),
    never the token itself, so no secret is kept in memory longer than the request.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of when)

    def acquire(self, key: str) -> float:
        """Take one request from `key`'s bucket: 0.0 if allowed, else seconds until it would be."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > _IDLE_BUCKETS_SWEEP:
                self._sweep(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def available_in(self, key: str) -> float:
        """Seconds until `key`'s bucket holds a whole request again; 0.0 if it does now."""
        if self.rate <= 0:
            return 0.0
        return max(0.0, 1.0 - self._tokens(key, self._clock())) / self.rate

    def forget(self, key: str) -> None:
        """Fill `key`'s bucket again."""
        self._buckets.pop(key, None)

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate)

    def _sweep(self, now: float) -> None:
        refill = self.burst / self.rate
        self._buckets = {
            key: value for key, value in self._buckets.items() if now - value[1] < refill
        }


@functools.lru_cache(maxsize=4096)
def address_key(address: str) -> str:
    """The key a client address is throttled under: the address, or for IPv6 its /64 (what one
    client usually holds, so it cannot step round the limit by changing its address)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP address (a Unix socket, a test client): as it is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return address


def peer_address(scope: Mapping[str, Any]) -> str:
    """The direct peer's address from an ASGI scope ("" when unknown). No X-Forwarded-For:
    anyone can send that header."""
    client = scope.get("client")
    return str(client[0]) if client else ""


class FailureThrottle:
    """Refuse a client address for a while after too many failed authentications.

    Each address has a bucket of `burst` failures, refilled at `rate` a second; each failure
    takes one. An address that has emptied its bucket is refused, whatever it sends, until one
    failure's worth has refilled: like fail2ban, but never for good. A rate of 0 switches it off.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._failures = TokenBucketLimiter(rate, burst, clock)
        self._clock = clock
        self._closed: dict[str, float] = {}  # address key -> refused until (clock time)

    def refused_for(self, address: str) -> float:
        """Seconds `address` is still refused for; 0.0 if it is not. While no address is
        refused, as is usual, this costs one test of an empty dict."""
        if not self._closed:
            return 0.0
        key = address_key(address)
        until = self._closed.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left > 0:
            return left
        del self._closed[key]
        return 0.0

    def failed(self, address: str) -> float:
        """Count a failed authentication from `address`; return how long it is now refused
        for (0.0: not refused)."""
        key = address_key(address)
        self._failures.acquire(key)
        wait = self._failures.available_in(key)
        if wait > 0:
            now = self._clock()
            self._closed[key] = now + wait
            if len(self._closed) > _IDLE_BUCKETS_SWEEP:
                self._closed = {k: until for k, until in self._closed.items() if until > now}
        return wait


class ConcurrencyLimiter:
    """Run a function in at most `limit` threads at once, with at most `waiting` calls more in
    line; refuse calls past that (Throttled), rather than queue them without bound."""

    def __init__(self, limit: int, waiting: int, name: str) -> None:
        self.limit = max(1, limit)
        self.waiting = max(0, waiting)
        self._pool = ThreadPoolExecutor(max_workers=self.limit, thread_name_prefix=name)
        self._pending = 0  # running or in line; changed on the event loop only
        self._last_seconds = 0.0  # how long the last call took

    @property
    def full(self) -> bool:
        """Whether a call now would be refused."""
        return self._pending >= self.limit + self.waiting

    def busy(self) -> Throttled:
        """The refusal of a call while full, with when a place should be free."""
        # The calls ahead, `limit` at a time, each as long as the last one took.
        wait = self._pending / self.limit * self._last_seconds
        return Throttled(
            "busy",
            wait,
            "the collector is busy checking passwords; retry after "
            "the Retry-After header's seconds",
        )

    async def run(self, func: Callable[..., _T], *args: Any) -> _T:
        """`func(*args)` in one of the threads, or Throttled("busy") when the line is full."""
        if self.full:
            raise self.busy()
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, functools.partial(self._timed, func, *args)
            )
        finally:
            self._pending -= 1

    def _timed(self, func: Callable[..., _T], *args: Any) -> _T:
        began = time.perf_counter()
        try:
            return func(*args)
        finally:
            self._last_seconds = time.perf_counter() - began

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Throttled(Exception):
    """A request refused with 429; `retry_after` is in seconds. `role` names the limit: a
    token's role (agent, operator), or address, signin or busy."""

    def __init__(self, role: str, retry_after: float, message: str) -> None:
        super().__init__(message)
        self.role = role
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, at least 1 (RFC 9110 allows no fractions)."""
        return str(max(1, math.ceil(self.retry_after)))


class RequestLimits:
    """The collector's limits, with counters of the requests they refused."""

    def __init__(
        self,
        config: LimitsConfig,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limiters = {
            "agent": TokenBucketLimiter(
                config.agent_requests_per_second, config.agent_burst_requests, clock
            ),
            "operator": TokenBucketLimiter(
                config.operator_requests_per_second, config.operator_burst_requests, clock
            ),
        }
        self.failures = FailureThrottle(
            config.address_failures_per_second, config.address_burst_failures, clock
        )
        self.signins = TokenBucketLimiter(
            config.signin_attempts_per_second, config.signin_burst_attempts, clock
        )
        self.password_checks = ConcurrencyLimiter(
            config.password_checks_at_once, config.password_checks_waiting, "runwatch-password"
        )

        def counter(name: str, help_text: str, label: str, values: Iterable[str]) -> Counter:
            """A counter by one label, its children present from the start (rate() works)."""
            made = Counter(name, help_text, [label], registry=registry)
            for value in values:
                made.labels(value)
            return made

        self.throttled = counter(
            "runwatch_requests_throttled",
            "Requests refused with 429 by a token's rate limit, by role.",
            "role",
            self._limiters,
        )
        self.auth_refused = counter(
            "runwatch_auth_refused",
            "Requests refused with 429 to protect authentication, by reason: address (too "
            "many failed authentications from the address), user (a sign-in name tried too "
            "often), busy (password checks at their cap).",
            "reason",
            ("address", "user", "busy"),
        )
        self.auth_failures = counter(
            "runwatch_auth_failures",
            "Failed authentications: unknown or revoked bearer tokens (agent, operator), "
            "failed console sign-ins (console) and acknowledge links that were changed or "
            "signed with another key (link).",
            "via",
            ("agent", "operator", "console", "link"),
        )

    def check(self, role: str, who: str) -> None:
        """Raise Throttled if `who` (a host or an operator) is over its role's rate limit."""
        limiter = self._limiters[role]
        wait = limiter.acquire(who)
        if wait > 0:
            self.throttled.labels(role).inc()
            raise Throttled(
                role,
                wait,
                f"rate limit of {limiter.rate:g} requests/s (bursts of "
                f"{limiter.burst}) for this {role} token exceeded; "
                "retry after the Retry-After header's seconds",
            )

    def check_address(self, address: str) -> None:
        """Raise Throttled while `address` is refused after too many failed authentications."""
        wait = self.failures.refused_for(address)
        if wait > 0:
            raise self._refused("address", wait)

    def failed(self, address: str, via: str) -> None:
        """Count a failed authentication (`via` agent, operator, console or link) from
        `address`."""
        self.auth_failures.labels(via).inc()
        wait = self.failures.failed(address)
        if wait > 0:
            log.warning(
                "too many failed authentications from %s: refusing it for %.0f s",
                address or "an unknown address",
                wait,
            )

    def check_signin(self, name: str) -> None:
        """Refuse a sign-in as `name` before anything is spent on it (Throttled): when the
        password checks are at their cap and line, or the name is over its rate. Else take
        one attempt from the name's bucket."""
        if self.password_checks.full:
            self.auth_refused.labels("busy").inc()
            raise self.password_checks.busy()
        wait = self.signins.acquire(name[:_NAME_KEY_CHARS])
        if wait > 0:
            raise self._refused("user", wait)

    def _refused(self, reason: str, wait: float) -> Throttled:
        """Count an authentication refused for `reason` (address, user), and say why."""
        self.auth_refused.labels(reason).inc()
        role, what = _REFUSALS[reason]
        return Throttled(role, wait, f"{what}; retry after the Retry-After header's seconds")

    def signed_in(self, name: str) -> None:
        """`name` signed in: its earlier typos no longer count."""
        self.signins.forget(name[:_NAME_KEY_CHARS])

    async def check_password(
        self, verify: Callable[[str, str], bool], password: str, stored: str
    ) -> bool:
        """`verify(password, stored)` off the event loop, within the cap on password checks
        at once; Throttled("busy") when the cap and its line are full."""
        try:
            return await self.password_checks.run(verify, password, stored)
        except Throttled:
            self.auth_refused.labels("busy").inc()
            raise

    def close(self) -> None:
        self.password_checks.close()
