"""Per-key token buckets and the aiohttp middleware that answers 429 with ``Retry-After``.

Each key (a merchant, an operator key) owns a bucket of ``burst`` tokens refilled at
``rate_per_s``; a request takes one token or is refused with the time until one is back.
Buckets live in this process: with N instances behind a balancer a key gets at most N times
the limit, which bounds abuse without a shared store on the hot path. The number of buckets is
bounded too (least recently used ones are forgotten; a forgotten bucket comes back full, which
is what an idle key would have anyway).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import Counter

from services.kit.errors import ProblemError

RATE_LIMITED_TOTAL = Counter(
    "http_rate_limited_total", "Requests refused with 429 by the per-key rate limiter.", ["scope"]
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Bucket:
    tokens: float
    updated_s: float


class TokenBucketLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        keys_max: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert rate_per_s > 0 and burst >= 1 and keys_max >= 1
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.keys_max = keys_max
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 when allowed, else the seconds to wait."""
        assert 0 < cost <= self.burst
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.keys_max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(now - bucket.updated_s, 0.0)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
            bucket.updated_s = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate_per_s

    def __len__(self) -> int:
        return len(self._buckets)


def rate_limit_middleware(
    limiter: TokenBucketLimiter,
    key_of: Callable[[web.Request], str | None],
    *,
    scope: str = "api",
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Refuse a request whose key has no token left. ``key_of`` returns None for requests that
    are not limited (health checks, unauthenticated ones already refused upstream); place this
    middleware after the one that authenticates, so the key is the caller's identity."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = key_of(request)
        if key is not None:
            wait_s = limiter.take(key)
            if wait_s > 0:
                RATE_LIMITED_TOTAL.labels(scope).inc()
                retry_after_s = max(1, math.ceil(wait_s))
                raise ProblemError(
                    429,
                    "rate_limited",
                    "Too many requests",
                    f"rate limit of {limiter.rate_per_s:g}/s (burst {limiter.burst}) exceeded;"
                    f" retry after {retry_after_s} s",
                    headers={"Retry-After": str(retry_after_s)},
                )
        return await handler(request)

    return middleware
