"""Bank simulator answers → our outcome model. Pure functions, one per kind of answer.

Anything we cannot read with certainty maps to ``unknown_outcome`` (hyperswitch's rule: an
unknown provider status is pending, never a failure), because a wrong "failed" pays twice.

``status: processing`` (the bank received the transfer and has not finished it) is
``unknown_outcome`` too, from a transfer answer, a repeat or an inquiry: keep inquiring with
backoff, never fall back. The simulator records a transfer at receipt, so an inquiry's
``404 transfer_not_found`` means the bank never received the reference (or refused it before
acceptance); the router still treats it as non-execution only after the not-found grace
(>= the bank timeout, checked at start-up), which covers a request still on its way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.router.domain.attempts import BENEFICIARY_CODES, BankOutcome
from services.router.domain.health import OutcomeClass

# A refusal the simulator gives before it accepts the transfer: nothing executed.
DEFINITE_CODES = frozenset(
    {
        "rejected",
        "insufficient_liquidity",
        "maintenance",
        "outage",
        "daily_limit_exceeded",
        "cutoff_passed",
        "currency_not_supported",
        "bank_not_found",
        "bank_key_invalid",
    }
)


def _executed_at(raw: Any) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def _fee(raw: Any) -> int | None:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0 else None


def from_transfer_body(body: Any, *, reference: str) -> BankOutcome:
    """A ``TransferResult`` body (transfer answer, inquiry answer or callback)."""
    if not isinstance(body, dict) or body.get("reference") != reference:
        return BankOutcome(
            OutcomeClass.UNKNOWN_OUTCOME,
            failure_code="unreadable_reply",
            failure_message="the reply is not a transfer result for our reference",
        )
    status = body.get("status")
    common: dict[str, Any] = {
        "bank_reference": body.get("bank_reference")
        if isinstance(body.get("bank_reference"), str)
        else None,
        "fee_minor": _fee(body.get("fee_minor")),
        "executed_at": _executed_at(body.get("executed_at")),
    }
    if status == "paid":
        return BankOutcome(OutcomeClass.SUCCEEDED, **common)
    if status == "accepted":
        return BankOutcome(OutcomeClass.SUBMITTED, **common)
    if status == "processing":
        return BankOutcome(
            OutcomeClass.UNKNOWN_OUTCOME,
            failure_code="bank_processing",
            failure_message="the bank received the transfer and is still processing it",
            bank_reference=common["bank_reference"],
        )
    if status == "rejected":
        code = body.get("failure_code")
        code = code if isinstance(code, str) and code else "rejected"
        klass = (
            OutcomeClass.BENEFICIARY_ERROR
            if code in BENEFICIARY_CODES
            else OutcomeClass.DEFINITE_NON_EXECUTION
        )
        return BankOutcome(
            klass,
            failure_code=code,
            failure_message=f"bank refused the transfer: {code}",
            **common,
        )
    return BankOutcome(
        OutcomeClass.UNKNOWN_OUTCOME,
        failure_code="unknown_bank_status",
        failure_message=f"bank answered status {status!r}",
    )


def from_transfer_response(status: int, body: Any, *, reference: str) -> BankOutcome:
    """The answer to ``POST /banks/{bank}/transfers``."""
    if status in (200, 422, 503) and isinstance(body, dict) and "status" in body:
        outcome = from_transfer_body(body, reference=reference)
        if status == 503 and outcome.outcome is not OutcomeClass.DEFINITE_NON_EXECUTION:
            # A 503 that does not say "refused" is ambiguous.
            return BankOutcome(OutcomeClass.UNKNOWN_OUTCOME, failure_code="http_503")
        return outcome
    code = body.get("code") if isinstance(body, dict) else None
    if 400 <= status < 500 and status != 409 and isinstance(code, str):
        # Refused at the door (validation, auth, unknown bank or currency): nothing executed.
        return BankOutcome(
            OutcomeClass.DEFINITE_NON_EXECUTION,
            failure_code=code if code in DEFINITE_CODES else f"http_{status}",
            failure_message=f"bank refused the request: {code}",
        )
    # 409 (reference reused), any 5xx, anything unreadable: the transfer MAY exist.
    return BankOutcome(
        OutcomeClass.UNKNOWN_OUTCOME,
        failure_code=code if isinstance(code, str) else f"http_{status}",
        failure_message=f"ambiguous answer (HTTP {status})",
    )


def from_inquiry_response(status: int, body: Any, *, reference: str) -> BankOutcome:
    """The answer to ``GET /banks/{bank}/transfers/{reference}``."""
    if status == 200:
        return from_transfer_body(body, reference=reference)
    code = body.get("code") if isinstance(body, dict) else None
    if status == 404 and code == "transfer_not_found":
        return BankOutcome(OutcomeClass.UNKNOWN_OUTCOME, not_found=True)
    return BankOutcome(
        OutcomeClass.UNKNOWN_OUTCOME,
        failure_code=code if isinstance(code, str) else f"http_{status}",
        failure_message=f"inquiry failed (HTTP {status})",
    )
