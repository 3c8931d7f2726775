"""Small builders for risk tests: payouts at chosen instants, rule sets from Python data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.payout.risk import PayoutFacts, RuleSet, compile_ruleset

T0 = datetime(2026, 11, 18, 10, 0, 0, tzinfo=UTC)  # a Wednesday, 11:00 in Paris


def payout(
    n: int = 0,
    *,
    at: datetime | None = None,
    seconds: float = 0,
    merchant: str = "mer_a",
    amount: int = 10_000,
    currency: str = "EUR",
    account: str = "FR7630006000011234567890189",
    bank: str = "BNPAFRPP",
    name: str = "Alice Martin",
) -> PayoutFacts:
    return PayoutFacts(
        payout_id=f"po_{n}",
        merchant_id=merchant,
        amount_minor=amount,
        currency=currency,
        beneficiary_account=account,
        beneficiary_bank=bank,
        beneficiary_name=name,
        created_at=(at or T0) + timedelta(seconds=seconds),
    )


def ruleset(*rules: dict[str, Any], version: int = 1, **doc: Any) -> RuleSet:
    return compile_ruleset({"format": 1, "defaults": list(rules), **doc}, version=version)


def rule(rule_id: str, rule_type: str, outcome: str = "block", **fields: Any) -> dict[str, Any]:
    return {"id": rule_id, "type": rule_type, "outcome": outcome, **fields}
