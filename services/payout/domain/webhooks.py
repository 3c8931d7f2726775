"""Webhook delivery rules: what counts as delivered and when to try again."""

from __future__ import annotations

import random
from datetime import datetime, timedelta


def delivered(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


def next_attempt(
    attempts_done: int,
    now: datetime,
    give_up_at: datetime,
    *,
    base_ms: int,
    max_ms: int,
    rng: random.Random,
) -> datetime | None:
    """Exponential backoff with jitter; ``None`` once the next try would fall past the window
    (the delivery is then dead-lettered)."""
    ceiling_ms = min(base_ms * (2 ** min(attempts_done - 1, 30)), max_ms)
    delay_ms = rng.uniform(ceiling_ms * 0.8, ceiling_ms)
    when = now + timedelta(milliseconds=delay_ms)
    return None if when > give_up_at else when
