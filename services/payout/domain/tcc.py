"""Global transaction rules for the TCC coordinator: states, retry and inquiry schedules.

States (docs/STATE_MACHINES.md): trying → tried → submitting → awaiting → (decision) →
confirming → confirmed, or → cancelling → cancelled; awaiting → parked (manual review) when
the resolution window ends. Once ``submitting`` is written the bank may execute the payout, so
from there on only a known bank outcome (or an operator) may decide to cancel.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

TRYING = "trying"
TRIED = "tried"
SUBMITTING = "submitting"
AWAITING = "awaiting"
PARKED = "parked"
CONFIRMING = "confirming"
CANCELLING = "cancelling"
CONFIRMED = "confirmed"
CANCELLED = "cancelled"

FINAL = frozenset({CONFIRMED, CANCELLED})
UNDECIDED = frozenset({TRYING, TRIED, SUBMITTING, AWAITING, PARKED})
# Before SUBMITTING nothing can have reached a bank: cancelling is always safe.
BEFORE_BANK = frozenset({TRYING, TRIED})

CONFIRM = "confirm"
CANCEL = "cancel"

BRANCH_FUNDS = "funds"  # ledger: amount → settlement, fee → fee revenue, as pending transfers
BRANCH_QUOTA = "quota"  # router: the chosen channel's daily quota


def retry_delay_s(attempts: int, base_ms: int, max_ms: int, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [half, full] of min(base·2^n, max)."""
    ceiling_ms = min(base_ms * (2 ** min(attempts, 30)), max_ms)
    return rng.uniform(ceiling_ms / 2, ceiling_ms) / 1000


def next_inquiry_at(
    inquiries_done: int, schedule_s: tuple[int, ...], now: datetime, resolve_by: datetime
) -> datetime:
    """30 s, 2 min, 10 min, 1 h, then the last step repeated — never past the window's end."""
    assert schedule_s
    step = schedule_s[min(inquiries_done, len(schedule_s) - 1)]
    return min(now + timedelta(seconds=step), resolve_by)
