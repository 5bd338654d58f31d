"""Rate limits per token: a token bucket for each agent host and each operator."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

# Buckets idle this long are full again; dropping them keeps memory bounded by the active keys.
_IDLE_BUCKETS_SWEEP = 10_000


class TokenBucketLimiter:
    """Allow `rate` requests a second per key on average, and bursts of up to `burst`.

    A rate of 0 switches the limit off. Keys are who the token belongs to (a host, an operator),
    never the token itself, so no secret is kept in memory longer than the request.
    """

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of when)

    def acquire(self, key: str) -> float:
        """Take one request from `key`'s bucket: 0.0 if allowed, else seconds until it would be."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > _IDLE_BUCKETS_SWEEP:
                self._sweep(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _sweep(self, now: float) -> None:
        refill = self.burst / self.rate
        self._buckets = {key: value for key, value in self._buckets.items()
                         if now - value[1] < refill}


class Throttled(Exception):
    """A request over its token's rate limit; `retry_after` is in seconds."""

    def __init__(self, role: str, retry_after: float, rate: float, burst: int) -> None:
        super().__init__(f"rate limit of {rate:g} requests/s (bursts of {burst}) for this "
                         f"{role} token exceeded; retry after the Retry-After header's seconds")
        self.role = role
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, at least 1 (RFC 9110 allows no fractions)."""
        return str(max(1, math.ceil(self.retry_after)))


class RequestLimits:
    """The collector's rate limits by role, with a counter of the requests they refused."""

    def __init__(self, agent: TokenBucketLimiter, operator: TokenBucketLimiter,
                 registry: CollectorRegistry) -> None:
        self._limiters = {"agent": agent, "operator": operator}
        self.throttled = Counter("runwatch_requests_throttled",
                                 "Requests refused with 429 by a token's rate limit, by role.",
                                 ["role"], registry=registry)
        for role in self._limiters:
            self.throttled.labels(role)  # present from the start, so rate() works at once

    def check(self, role: str, who: str) -> None:
        """Raise Throttled if `who` (a host or an operator) is over its role's rate limit."""
        limiter = self._limiters[role]
        wait = limiter.acquire(who)
        if wait > 0:
            self.throttled.labels(role).inc()
            raise Throttled(role, wait, limiter.rate, limiter.burst)
