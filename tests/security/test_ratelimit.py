"""The token bucket on a fake clock: burst, refill, the wait it reports, and bounded memory."""

from __future__ import annotations

import pytest

from services.kit.ratelimit import TokenBucketLimiter


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_a_full_bucket_serves_the_burst_then_reports_the_wait_for_one_token() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate_per_s=10, burst=5, clock=clock)
    assert [limiter.take("k") for _ in range(5)] == [0.0] * 5
    assert limiter.take("k") == pytest.approx(0.1)
    clock.now_s += 0.1
    assert limiter.take("k") == 0.0
    assert limiter.take("k") > 0


def test_refill_never_exceeds_the_burst_and_keys_are_independent() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate_per_s=1, burst=3, clock=clock)
    for _ in range(3):
        assert limiter.take("a") == 0.0
    clock.now_s += 3600
    assert [limiter.take("a") for _ in range(4)][-1] > 0  # 3 tokens back, not 3600
    assert limiter.take("b") == 0.0


def test_the_number_of_buckets_is_bounded_and_a_forgotten_key_comes_back_full() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate_per_s=1, burst=2, keys_max=3, clock=clock)
    for key in ("a", "b", "c", "d"):
        limiter.take(key)
    assert len(limiter) == 3
    assert limiter.take("a") == 0.0 and limiter.take("a") == 0.0
