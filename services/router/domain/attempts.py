"""Attempts: one try of one payout on one channel, and how a bank's answer moves it.

Never pay twice: an attempt is written as ``sending`` and committed before the bank is called,
so a crash mid-call leaves a row that recovery asks the bank about (by our own reference, the
attempt id) instead of sending again. Only a *definite* non-execution lets the payout move on to
another channel; an unknown outcome stays unknown until the bank tells us.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.router.domain.health import OutcomeClass

FALLBACK_ATTEMPTS_CEILING = 10


class AttemptStatus(StrEnum):
    SENDING = "sending"  # committed before the call; the bank may or may not have it
    SUBMITTED = "submitted"  # the bank accepted it, the result comes later
    UNKNOWN = "unknown"  # we asked and got no usable answer: it MAY have executed
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# Statuses that still block another attempt for the same payout (with SUCCEEDED, which blocks
# forever): the partial unique index in the migration lists exactly these plus succeeded.
UNRESOLVED = frozenset({AttemptStatus.SENDING, AttemptStatus.SUBMITTED, AttemptStatus.UNKNOWN})
FINAL = frozenset({AttemptStatus.SUCCEEDED, AttemptStatus.FAILED})

BENEFICIARY_CODES = frozenset({"invalid_account", "account_closed", "name_mismatch"})


@dataclass(frozen=True, slots=True)
class BankOutcome:
    """A bank's answer in our terms, produced by a connector's transformers."""

    outcome: OutcomeClass
    failure_code: str | None = None
    failure_message: str | None = None
    bank_reference: str | None = None
    fee_minor: int | None = None
    executed_at: datetime | None = None
    not_found: bool = False  # inquiry only: the bank never received this reference


def status_for(outcome: OutcomeClass) -> AttemptStatus:
    if outcome is OutcomeClass.SUCCEEDED:
        return AttemptStatus.SUCCEEDED
    if outcome is OutcomeClass.SUBMITTED:
        return AttemptStatus.SUBMITTED
    if outcome is OutcomeClass.UNKNOWN_OUTCOME:
        return AttemptStatus.UNKNOWN
    return AttemptStatus.FAILED


def after_inquiry(
    current: AttemptStatus, answer: BankOutcome, *, sent_age_s: float, not_found_grace_s: float
) -> BankOutcome | None:
    """The outcome an inquiry answer establishes for an unresolved attempt, or None when it
    leaves the attempt as it is.

    "Not found" only proves non-execution once the original request can no longer be in
    flight (``not_found_grace_s`` after it was sent): a slow request may still land. A bank
    that has received the request answers ``processing`` (unknown: keep asking), not 404.
    """
    assert current in UNRESOLVED, current
    if answer.not_found:
        if sent_age_s < not_found_grace_s:
            return None
        return BankOutcome(
            OutcomeClass.DEFINITE_NON_EXECUTION,
            failure_code="transfer_not_found",
            failure_message="the bank has no transfer with this reference",
        )
    if answer.outcome is OutcomeClass.UNKNOWN_OUTCOME:
        return None
    if answer.outcome is OutcomeClass.SUBMITTED and current is AttemptStatus.SUBMITTED:
        return None
    return answer


def may_transition(current: AttemptStatus, new: AttemptStatus) -> bool:
    if current in FINAL:
        return False  # outcomes never flip; a contradiction is logged and left to recon
    if current is AttemptStatus.SUBMITTED:
        return new in FINAL
    return new is not current or new is AttemptStatus.UNKNOWN


def inquiry_delay_s(inquiries_done: int, *, base_s: float, max_s: float, jitter: float) -> float:
    """Exponential backoff with multiplicative jitter (``jitter`` in 0..1, from the caller's
    random source so tests are deterministic)."""
    assert 0.0 <= jitter <= 1.0
    delay = min(max_s, base_s * (2 ** min(inquiries_done, 30)))
    return delay * (0.5 + jitter / 2)


def wire_status(status: AttemptStatus) -> str:
    """Status as the submission API reports it: an attempt still ``sending`` is unknown to the
    caller (it may have executed)."""
    if status is AttemptStatus.SENDING:
        return "unknown"
    return status.value
