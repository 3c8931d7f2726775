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
            "file_intake_failed",
            Severity.HIGH,
            "Statement file {filename} on {channel} quarantined after {attempts} failed intake"
            " attempts: {reason}",
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
        AlertSpec(
            "records_incomplete",
            Severity.CRITICAL,
            "Reconciliation of {channel} for {business_date} refused: our records export is"
            " incomplete ({reason})",
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


# -- Alerts of the payout service -------------------------------------------------------------
#
# Recon is the one alert list operators read: the payout service publishes ``payout.alert``
# and recon stores it in the same table, with the same dedupe, as its own alerts
# (services/recon/entrypoints/consumers.py). The producer writes the message; the catalogue
# gives the code its severity and says what one cause is (the subject whose repeats count).


class AlertSubject(StrEnum):
    PAYOUT = "payout"  # one open alert per payout
    MERCHANT = "merchant"  # one open alert per merchant
    MERCHANT_RULES = "merchant_rules"  # per merchant and the rules that fired
    EVENT = "event"  # every alert is its own cause (nothing to group it by)


@dataclass(frozen=True)
class PayoutAlertSpec:
    code: str
    severity: Severity
    subject: AlertSubject


PAYOUT_ALERTS: dict[str, PayoutAlertSpec] = {
    spec.code: spec
    for spec in (
        # The resolution window ended with no bank outcome: holds stay, an operator decides.
        PayoutAlertSpec("payout_outcome_unresolved", Severity.HIGH, AlertSubject.PAYOUT),
        # A bank outcome contradicts the decision already taken (e.g. paid after cancel).
        PayoutAlertSpec("outcome_conflict", Severity.CRITICAL, AlertSubject.PAYOUT),
        # A statement contradicts the payout; the producer raises it to critical when the
        # payout is already paid or failed.
        PayoutAlertSpec("recon_outcome_conflict", Severity.HIGH, AlertSubject.PAYOUT),
        # A TCC participant refused confirm/cancel: the protocol is broken for this payout.
        PayoutAlertSpec("tcc_phase2_refused", Severity.CRITICAL, AlertSubject.PAYOUT),
        # A merchant webhook undeliverable after every retry.
        PayoutAlertSpec("webhook_dead_lettered", Severity.MEDIUM, AlertSubject.EVENT),
        # Risk controls (docs/RISK.md): a blocklist rule blocked a payout.
        PayoutAlertSpec(
            "risk_listed_beneficiary_blocked", Severity.HIGH, AlertSubject.MERCHANT_RULES
        ),
        # Risk controls: one merchant had a burst of reviews within the policy's window.
        PayoutAlertSpec("risk_review_burst", Severity.MEDIUM, AlertSubject.MERCHANT),
        # The ledger's scheduled tamper check (``ledger.alert``, same shape): a transfer no
        # longer verifies. The ledger names the alert after the broken link (``lga_<seq>``),
        # so every repeat counts on one open alert.
        PayoutAlertSpec("ledger_chain_broken", Severity.CRITICAL, AlertSubject.EVENT),
    )
}

# An unknown code is stored, never dropped: high, so that someone looks and catalogues it.
UNKNOWN_ALERT_SEVERITY = Severity.HIGH
SEVERITY_RANK: dict[Severity, int] = {
    Severity.CRITICAL: 0,
    Severity.HIGH: 1,
    Severity.MEDIUM: 2,
    Severity.LOW: 3,
}
assert not set(PAYOUT_ALERTS) & set(ALERTS), "a code has one meaning in the catalogue"


def payout_alert_severity(code: str, stated: str | None) -> tuple[Severity, bool]:
    """(severity, known code). The catalogue's severity is a floor: a producer may raise it
    for a worse case (``recon_outcome_conflict`` on a settled payout), never lower it."""
    spec = PAYOUT_ALERTS.get(code)
    floor = spec.severity if spec is not None else UNKNOWN_ALERT_SEVERITY
    try:
        claimed = Severity(stated) if stated is not None else floor
    except ValueError:
        claimed = floor
    worst = min(floor, claimed, key=SEVERITY_RANK.__getitem__)
    return worst, spec is not None


def payout_alert_cause(
    code: str,
    *,
    alert_id: str,
    payout_id: str | None = None,
    merchant_id: str | None = None,
    rule_ids: tuple[str, ...] = (),
) -> str:
    """The dedupe key: one open alert per cause, repeats counted. A subject the event does
    not carry falls back to the next finer one (merchant → payout → the alert itself)."""
    spec = PAYOUT_ALERTS.get(code)
    subject = spec.subject if spec is not None else AlertSubject.PAYOUT
    if subject is AlertSubject.MERCHANT_RULES and merchant_id:
        return f"{code}:merchant:{merchant_id}:rules:{','.join(sorted(set(rule_ids)))}"
    if subject in (AlertSubject.MERCHANT, AlertSubject.MERCHANT_RULES) and merchant_id:
        return f"{code}:merchant:{merchant_id}"
    if subject is not AlertSubject.EVENT and payout_id:
        return f"{code}:payout:{payout_id}"
    return f"{code}:alert:{alert_id}"
