"""What the engine judges and what it answers: plain immutable values, no I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

import msgspec

Outcome = Literal["allow", "review", "block"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("allow", "review", "block")
SEVERITY: Final[dict[str, int]] = {"allow": 0, "review": 1, "block": 2}

# The one code a merchant sees on a payout refused by risk controls (stable, documented).
FAILURE_CODE_BLOCKED: Final = "risk_blocked"


class PayoutFacts(msgspec.Struct, frozen=True, kw_only=True):
    """The facts of one payout the rules look at.

    ``created_at`` is the payout's acceptance time (timezone-aware); it is the ``now`` of the
    evaluation and the time the payout is counted at when recorded.
    """

    payout_id: str
    merchant_id: str
    amount_minor: int
    currency: str
    beneficiary_account: str
    beneficiary_bank: str
    beneficiary_name: str
    created_at: datetime

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        if self.amount_minor < 1:
            raise ValueError("amount_minor must be a positive integer of minor units")


class HistoricalPayout(msgspec.Struct, frozen=True, kw_only=True):
    """A past payout with the decision recorded on it, for dry runs.

    ``recorded_outcome`` is ``None`` for payouts judged before risk controls existed; they
    count as allowed.
    """

    facts: PayoutFacts
    recorded_outcome: Outcome | None = None
    recorded_version: int | None = None

    @property
    def was_accepted(self) -> bool:
        return self.recorded_outcome != "block"


class FiredRule(msgspec.Struct, frozen=True, kw_only=True):
    rule_id: str
    rule_type: str
    outcome: Outcome
    reason_code: str
    detail: str


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The verdict on one payout, by exactly one rule-set version.

    ``outcome`` is the most severe outcome of the rules that fired (``allow`` when none did);
    ``failure_code`` is ``risk_blocked`` exactly when the outcome is ``block``.
    """

    outcome: Outcome
    ruleset_version: int
    fired: tuple[FiredRule, ...]
    failure_code: str | None = None

    @property
    def reason_codes(self) -> tuple[str, ...]:
        return tuple(f.reason_code for f in self.fired)
