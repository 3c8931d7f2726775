"""Alerts raised by risk decisions: a listed beneficiary blocked, a burst of reviews.

Shaped like the alert catalogue entries of reconciliation (code, severity, message) so the
payout service publishes them the same way; codes are stable.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from services.payout.risk.counters import Series, epoch_ms
from services.payout.risk.model import Decision, PayoutFacts

LISTED_BENEFICIARY_BLOCKED: Final = "risk_listed_beneficiary_blocked"
REVIEW_BURST: Final = "risk_review_burst"


@dataclass(frozen=True, slots=True)
class RiskAlert:
    code: str
    severity: str  # critical | high | medium | low, as in the recon catalogue
    message: str
    merchant_id: str
    payout_id: str
    ruleset_version: int
    rule_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReviewBurstPolicy:
    """``min_reviews`` decisions of ``review`` for one merchant within ``window_s`` is a burst;
    one alert per merchant per window."""

    window_s: int = 300
    min_reviews: int = 20
    merchants_max: int = 100_000

    def __post_init__(self) -> None:
        assert self.window_s >= 1 and self.min_reviews >= 1 and self.merchants_max >= 1


class AlertDetector:
    """Not thread-safe by itself: the Engine calls it under its lock."""

    def __init__(self, policy: ReviewBurstPolicy) -> None:
        self.policy = policy
        self._window_ms = policy.window_s * 1000
        # merchant → (reviews by millisecond bucket, time of the last burst alert)
        self._reviews: OrderedDict[str, tuple[Series, list[int]]] = OrderedDict()

    def observe(self, facts: PayoutFacts, decision: Decision) -> list[RiskAlert]:
        alerts: list[RiskAlert] = []
        if decision.outcome == "block":
            listed = tuple(
                f.rule_id
                for f in decision.fired
                if f.rule_type == "blocklist" and f.outcome == "block"
            )
            if listed:
                alerts.append(
                    RiskAlert(
                        code=LISTED_BENEFICIARY_BLOCKED,
                        severity="high",
                        message=f"payout {facts.payout_id} of {facts.merchant_id} blocked: "
                        f"beneficiary on blocklist {', '.join(listed)}",
                        merchant_id=facts.merchant_id,
                        payout_id=facts.payout_id,
                        ruleset_version=decision.ruleset_version,
                        rule_ids=listed,
                    )
                )
        elif decision.outcome == "review":
            burst = self._review(facts, decision)
            if burst is not None:
                alerts.append(burst)
        return alerts

    def _review(self, facts: PayoutFacts, decision: Decision) -> RiskAlert | None:
        at_ms = epoch_ms(facts.created_at)
        entry = self._reviews.get(facts.merchant_id)
        if entry is None:
            while len(self._reviews) >= self.policy.merchants_max:
                self._reviews.popitem(last=False)
            entry = self._reviews[facts.merchant_id] = (Series(), [-(2**62)])
        else:
            self._reviews.move_to_end(facts.merchant_id)
        series, last_alert = entry
        oldest = at_ms - self._window_ms + 1
        series.add(at_ms, 1, oldest, 1_000_000)
        count, _ = series.since(oldest)
        if count < self.policy.min_reviews or at_ms - last_alert[0] < self._window_ms:
            return None
        last_alert[0] = at_ms
        return RiskAlert(
            code=REVIEW_BURST,
            severity="medium",
            message=f"{count} payouts of {facts.merchant_id} sent to review in the last "
            f"{self.policy.window_s}s",
            merchant_id=facts.merchant_id,
            payout_id=facts.payout_id,
            ruleset_version=decision.ruleset_version,
            rule_ids=tuple(f.rule_id for f in decision.fired),
        )
