"""What a simulated bank does with one transfer: pure rules, randomness passed in.

``effective`` folds the bank's configuration, the chaos mode and the operator's numeric
overrides into one ``Behaviour``; ``decide`` draws the outcome of a new transfer from it. The
random source is seeded per (seed, bank, reference) by the caller, so with ``BANKSIM_SEED`` set a
given reference always gets the same outcome whatever the arrival order.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from typing import Any

from services.banksim.domain.config import BankConfig
from services.banksim.domain.money import fee_for

MODES = ("normal", "outage", "slow", "flaky", "lost_responses", "maintenance")
BENEFICIARY_ERRORS = frozenset({"invalid_account", "account_closed", "name_mismatch"})
# Refusals the bank does not record: the reference was never accepted, so a later retry of the
# same reference may execute, and an inquiry answers 404 transfer_not_found.
UNRECORDED_REFUSALS = frozenset({"outage", "maintenance", "cutoff_passed", "daily_limit_exceeded"})
_Z99 = 2.3263478740408408  # the standard normal's 99th percentile


@dataclass(frozen=True)
class Behaviour:
    mode: str
    success_rate: float
    refusal_rate: float  # refused before acceptance (503 outage), intermittently
    lost_response_rate: float
    lost_response_mode: str
    lost_response_delay_ms: int
    ambiguous_error_rate: float
    async_rate: float
    async_delay_min_ms: int
    async_delay_max_ms: int
    latency_median_ms: int
    latency_p99_ms: int
    latency_max_ms: int
    # Time a received transfer spends in ``processing`` on top of its latency (a bank that
    # takes a request at once and executes it later); inquiries are not slowed by it.
    processing_delay_ms: int = 0

    def public(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "success_rate": self.success_rate,
            "refusal_rate": self.refusal_rate,
            "lost_response_rate": self.lost_response_rate,
            "lost_response_mode": self.lost_response_mode,
            "lost_response_delay_ms": self.lost_response_delay_ms,
            "ambiguous_error_rate": self.ambiguous_error_rate,
            "async_rate": self.async_rate,
            "async_delay_min_ms": self.async_delay_min_ms,
            "async_delay_max_ms": self.async_delay_max_ms,
            "latency_median_ms": self.latency_median_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "latency_max_ms": self.latency_max_ms,
            "processing_delay_ms": self.processing_delay_ms,
        }


_OVERRIDABLE = frozenset(f.name for f in fields(Behaviour)) - {"mode"}


def effective(bank: BankConfig, mode: str, overrides: dict[str, Any]) -> Behaviour:
    assert mode in MODES, mode
    b = Behaviour(
        mode=mode,
        success_rate=bank.success_rate,
        refusal_rate=0.0,
        lost_response_rate=bank.lost_response_rate,
        lost_response_mode=bank.lost_response_mode,
        lost_response_delay_ms=bank.lost_response_delay_ms,
        ambiguous_error_rate=bank.ambiguous_error_rate,
        async_rate=bank.async_rate,
        async_delay_min_ms=bank.async_delay_min_ms,
        async_delay_max_ms=bank.async_delay_max_ms,
        latency_median_ms=bank.latency_median_ms,
        latency_p99_ms=bank.latency_p99_ms,
        latency_max_ms=bank.latency_max_ms,
    )
    if mode == "slow":
        b = replace(
            b,
            latency_median_ms=max(b.latency_median_ms * 10, 500),
            latency_p99_ms=max(b.latency_p99_ms * 10, 3_000),
            latency_max_ms=max(b.latency_max_ms * 10, 10_000),
        )
    elif mode == "flaky":
        b = replace(
            b,
            refusal_rate=0.3,
            ambiguous_error_rate=max(b.ambiguous_error_rate, 0.1),
            latency_p99_ms=max(b.latency_p99_ms * 3, b.latency_median_ms),
            latency_max_ms=max(b.latency_max_ms * 3, b.latency_p99_ms * 3),
        )
    elif mode == "lost_responses":
        b = replace(b, lost_response_rate=max(b.lost_response_rate, 0.5))
    # Only known numeric fields: a stored override from an older version is ignored.
    known = {k: v for k, v in overrides.items() if v is not None and k in _OVERRIDABLE}
    b = replace(b, **known)
    # Overrides may move one bound past the other; keep the distribution well-formed.
    b = replace(
        b,
        latency_p99_ms=max(b.latency_p99_ms, b.latency_median_ms),
        async_delay_max_ms=max(b.async_delay_max_ms, b.async_delay_min_ms),
    )
    return replace(b, latency_max_ms=max(b.latency_max_ms, b.latency_p99_ms))


def rng_for(seed: int, bank: str, reference: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{bank}:{reference}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True)
class Beneficiary:
    name: str
    account_number: str
    bank_code: str


@dataclass(frozen=True)
class Decision:
    """``status`` is what the bank records (and answers) unless ``recorded`` is False."""

    status: str  # paid | accepted | rejected
    failure_code: str | None
    http_status: int
    recorded: bool
    fee_minor: int
    value_date: date | None
    latency_ms: int
    reply: str  # normal | drop | delay | ambiguous
    ambiguous_status: int  # 500 | 502 | 504 when reply == ambiguous
    complete_after_ms: int | None  # async completion delay
    final_status: str | None  # the outcome an async completion will reach
    final_failure_code: str | None


def in_maintenance(bank: BankConfig, now: datetime) -> bool:
    return any(w.contains(now.time()) for w in bank.maintenance_windows)


def past_cutoff(bank: BankConfig, now: datetime) -> bool:
    return bank.cutoff_minute is not None and now.hour * 60 + now.minute >= bank.cutoff_minute


def value_date_for(bank: BankConfig, now: datetime) -> date:
    """Executed after the cut-off (when the bank takes late payments) → next day's value."""
    today = now.date()
    return today + timedelta(days=1) if past_cutoff(bank, now) else today


def latency_ms(b: Behaviour, rng: random.Random) -> int:
    """Log-normal with the configured median and p99, capped: a realistic long tail."""
    if b.latency_median_ms <= 0:
        return 0
    sigma = math.log(max(b.latency_p99_ms, b.latency_median_ms) / b.latency_median_ms) / _Z99
    sample = b.latency_median_ms * math.exp(sigma * rng.gauss(0.0, 1.0))
    return min(int(sample), b.latency_max_ms)


def beneficiary_error(beneficiary: Beneficiary) -> str | None:
    """Deterministic beneficiary errors, so every response class can be produced on demand."""
    account = beneficiary.account_number.upper()
    if account.startswith("INVALID"):
        return "invalid_account"
    if account.startswith("CLOSED"):
        return "account_closed"
    if beneficiary.name.strip().upper() == "NAME MISMATCH":
        return "name_mismatch"
    return None


def _refusal(code: str, http_status: int, latency: int) -> Decision:
    return Decision(
        status="rejected",
        failure_code=code,
        http_status=http_status,
        recorded=code not in UNRECORDED_REFUSALS,
        fee_minor=0,
        value_date=None,
        latency_ms=latency,
        reply="normal",
        ambiguous_status=0,
        complete_after_ms=None,
        final_status=None,
        final_failure_code=None,
    )


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    total = sum(weights.values())
    point = rng.random() * total
    for code, weight in weights.items():
        point -= weight
        if point < 0:
            return code
    return next(reversed(weights))


def decide(
    bank: BankConfig,
    b: Behaviour,
    *,
    amount_minor: int,
    beneficiary: Beneficiary,
    now: datetime,
    rng: random.Random,
) -> Decision:
    # Every draw happens in a fixed order so a seeded rng gives a reproducible outcome.
    latency = latency_ms(b, rng)
    draw_refusal = rng.random()
    draw_success = rng.random()
    draw_async = rng.random()
    draw_async_success = rng.random()
    draw_reply = rng.random()
    draw_reply_kind = rng.random()
    async_delay = rng.randint(b.async_delay_min_ms, b.async_delay_max_ms)
    ambiguous_status = rng.choice((500, 502, 504))

    if b.mode == "outage":
        return _refusal("outage", 503, min(latency, 50))
    if b.mode == "maintenance" or in_maintenance(bank, now):
        return _refusal("maintenance", 503, min(latency, 50))
    if bank.after_cutoff == "reject" and past_cutoff(bank, now):
        return _refusal("cutoff_passed", 200, latency)
    if draw_refusal < b.refusal_rate:
        return _refusal("outage", 503, latency)

    code = beneficiary_error(beneficiary)
    if code is None and draw_success >= b.success_rate:
        code = _weighted(rng, bank.failure_mix)
    if code is not None:
        decision = _refusal(code, 422 if code in BENEFICIARY_ERRORS else 200, latency)
    else:
        fee = fee_for(
            amount_minor,
            fixed_minor=bank.fee_fixed_minor,
            rate_bp=bank.fee_rate_bp,
            max_minor=bank.fee_max_minor,
        )
        if draw_async < b.async_rate:
            final_ok = draw_async_success < bank.async_success_rate
            decision = Decision(
                status="accepted",
                failure_code=None,
                http_status=200,
                recorded=True,
                fee_minor=fee,
                value_date=None,
                latency_ms=latency,
                reply="normal",
                ambiguous_status=0,
                complete_after_ms=async_delay,
                final_status="paid" if final_ok else "rejected",
                final_failure_code=None if final_ok else rng.choice(bank.async_failure_codes),
            )
        else:
            decision = Decision(
                status="paid",
                failure_code=None,
                http_status=200,
                recorded=True,
                fee_minor=fee,
                value_date=value_date_for(bank, now),
                latency_ms=latency,
                reply="normal",
                ambiguous_status=0,
                complete_after_ms=None,
                final_status=None,
                final_failure_code=None,
            )
    # What happens to the reply of a recorded outcome: lost, ambiguous 5xx, or delivered.
    if draw_reply < b.lost_response_rate:
        kind = b.lost_response_mode
        if kind == "mixed":
            kind = "drop" if draw_reply_kind < 0.5 else "delay"
        return replace(decision, reply=kind)
    if draw_reply < b.lost_response_rate + b.ambiguous_error_rate:
        return replace(decision, reply="ambiguous", ambiguous_status=ambiguous_status)
    return decision


def async_outcome_value_date(bank: BankConfig, completed_at: datetime) -> date:
    return value_date_for(bank, completed_at)
