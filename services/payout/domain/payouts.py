"""The payout state machine, fees and limits (docs/STATE_MACHINES.md)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime

PENDING_REVIEW = "pending_review"
PROCESSING = "processing"
SUBMITTED = "submitted"
PAID = "paid"
FAILED = "failed"
CANCELED = "canceled"
RETURNED = "returned"
MANUAL_REVIEW = "manual_review"

STATUSES = frozenset(
    {PENDING_REVIEW, PROCESSING, SUBMITTED, PAID, FAILED, CANCELED, RETURNED, MANUAL_REVIEW}
)
FINAL = frozenset({FAILED, CANCELED, RETURNED})

TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING_REVIEW: frozenset({PROCESSING, FAILED, CANCELED}),
    PROCESSING: frozenset({SUBMITTED, PAID, FAILED, CANCELED, MANUAL_REVIEW}),
    SUBMITTED: frozenset({PAID, FAILED, MANUAL_REVIEW}),
    MANUAL_REVIEW: frozenset({PAID, FAILED}),
    PAID: frozenset({RETURNED}),
    FAILED: frozenset(),
    CANCELED: frozenset(),
    RETURNED: frozenset(),
}

# The event announced when a payout enters a status (payout.<status>).
EVENT_FOR_STATUS = {
    SUBMITTED: "payout.submitted",
    PAID: "payout.paid",
    FAILED: "payout.failed",
    CANCELED: "payout.canceled",
    RETURNED: "payout.returned",
    MANUAL_REVIEW: "payout.manual_review",
}


class InvalidTransition(Exception):
    def __init__(self, current: str, new: str) -> None:
        super().__init__(f"payout cannot go from {current} to {new}")
        self.current = current
        self.new = new


def can_transition(current: str, new: str) -> bool:
    assert current in STATUSES and new in STATUSES, (current, new)
    return new in TRANSITIONS[current]


def check_transition(current: str, new: str) -> None:
    if not can_transition(current, new):
        raise InvalidTransition(current, new)


def fee_minor(amount_minor: int, fixed_minor: int, bps: int) -> int:
    """Fixed part plus basis points of the amount, rounded down to a whole minor unit."""
    assert amount_minor > 0 and fixed_minor >= 0 and 0 <= bps <= 10_000
    return fixed_minor + (amount_minor * bps) // 10_000


@dataclass(frozen=True)
class Limits:
    per_payout_max_minor: int | None
    daily_max_minor: int | None
    monthly_max_minor: int | None
    review_threshold_minor: int | None


class LimitExceeded(Exception):
    def __init__(self, which: str, limit_minor: int, would_be_minor: int) -> None:
        super().__init__(f"{which} limit of {limit_minor} would be exceeded ({would_be_minor})")
        self.which = which
        self.limit_minor = limit_minor
        self.would_be_minor = would_be_minor


def check_limits(
    limits: Limits, amount_minor: int, used_today_minor: int, used_month_minor: int
) -> None:
    """Raise ``LimitExceeded`` naming the first limit the payout would break."""
    if limits.per_payout_max_minor is not None and amount_minor > limits.per_payout_max_minor:
        raise LimitExceeded("per_payout", limits.per_payout_max_minor, amount_minor)
    if limits.daily_max_minor is not None and used_today_minor + amount_minor > (
        limits.daily_max_minor
    ):
        raise LimitExceeded("daily", limits.daily_max_minor, used_today_minor + amount_minor)
    if limits.monthly_max_minor is not None and used_month_minor + amount_minor > (
        limits.monthly_max_minor
    ):
        raise LimitExceeded("monthly", limits.monthly_max_minor, used_month_minor + amount_minor)


def initial_status(limits: Limits, amount_minor: int) -> str:
    """Above the review threshold a payout waits for an operator before any money moves."""
    if limits.review_threshold_minor is not None and amount_minor > limits.review_threshold_minor:
        return PENDING_REVIEW
    return PROCESSING


def mask_account(account_number: str) -> str:
    return "*" * max(len(account_number) - 4, 0) + account_number[-4:]


def new_id(prefix: str) -> str:
    """``<prefix>_`` + 12 hex digits of milliseconds + 10 random hex: sortable by creation."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(5)}"


def history_entry(status: str, at: datetime, reason: str | None = None) -> dict[str, str | None]:
    return {"status": status, "at": at.isoformat(), "reason": reason}
