"""The fixed break taxonomy and the alert catalogue (docs/RECONCILIATION.md).

Codes are stable: finance tooling, dashboards and the payout service key on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class BreakCode(StrEnum):
    MISSING_AT_BANK = "missing_at_bank"  # we recorded it; the bank did not, after the window
    MISSING_IN_LEDGER = "missing_in_ledger"  # the bank booked it; we have no record
    AMOUNT_MISMATCH = "amount_mismatch"
    FEE_MISMATCH = "fee_mismatch"
    DUPLICATE_AT_BANK = "duplicate_at_bank"  # a second line for a payout already matched
    TIMING = "timing"  # not on the statement yet, still inside T+N: carried to the next run
    RETURNED = "returned"  # the bank returned a payout (credit referencing our attempt)
    STATUS_MISMATCH = "status_mismatch"  # we recorded failed, the bank executed it
    AMBIGUOUS_MATCH = "ambiguous_match"  # several candidates: never auto-matched


@dataclass(frozen=True)
class AlertSpec:
    code: str
    severity: Severity
    message: str  # a str.format template; fields come from the alert's context


ALERTS: dict[str, AlertSpec] = {
    spec.code: spec
    for spec in (
        # File intake
        AlertSpec(
            "file_quarantined",
            Severity.HIGH,
            "Statement file {filename} on {channel} quarantined: {reason}",
        ),
        AlertSpec(
            "file_duplicate",
            Severity.LOW,
            "Statement file {filename} on {channel} was already received; not processed again",
        ),
        AlertSpec(
            "sequence_gap",
            Severity.HIGH,
            "Statement sequence gap on {channel}: expected {expected}, received {received}",
        ),
        AlertSpec(
            "statement_missing",
            Severity.HIGH,
            "No statement from {channel} for {business_date} by the {cutoff} UTC cut-off",
        ),
        AlertSpec(
            "records_unavailable",
            Severity.HIGH,
            "Reconciliation of {channel} for {business_date} could not fetch our records: {reason}",
        ),
        # Breaks (one alert per code, channel and business date; repeats counted)
        AlertSpec(
            "status_mismatch",
            Severity.CRITICAL,
            "{count} payout(s) on {channel} for {business_date} recorded failed but executed",
        ),
        AlertSpec(
            "missing_in_ledger",
            Severity.CRITICAL,
            "{count} bank line(s) on {channel} for {business_date} have no record of ours",
        ),
        AlertSpec(
            "missing_at_bank",
            Severity.HIGH,
            "{count} payout(s) on {channel} for {business_date} absent from the bank after T+N",
        ),
        AlertSpec(
            "amount_mismatch",
            Severity.HIGH,
            "{count} amount mismatch(es) on {channel} for {business_date}",
        ),
        AlertSpec(
            "duplicate_at_bank",
            Severity.HIGH,
            "{count} duplicate bank line(s) on {channel} for {business_date}",
        ),
        AlertSpec(
            "fee_mismatch",
            Severity.MEDIUM,
            "{count} fee mismatch(es) on {channel} for {business_date}",
        ),
        AlertSpec(
            "returned",
            Severity.MEDIUM,
            "{count} payout(s) returned by the bank on {channel} for {business_date}",
        ),
        AlertSpec(
            "ambiguous_match",
            Severity.MEDIUM,
            "{count} bank line(s) on {channel} for {business_date} need a person: ambiguous",
        ),
        AlertSpec(
            "timing",
            Severity.LOW,
            "{count} payout(s) on {channel} for {business_date} not yet on the statement (T+N)",
        ),
    )
}

BREAK_SEVERITY: dict[str, Severity] = {
    code.value: ALERTS[code.value].severity for code in BreakCode
}


def alert_message(code: str, context: dict[str, object]) -> str:
    spec = ALERTS[code]
    return spec.message.format_map(_Missing(context))


class _Missing(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "?"
