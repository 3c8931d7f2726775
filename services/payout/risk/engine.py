"""The live engine: the current rule set behind one reference, plus the counters.

A swap is one reference assignment; ``evaluate`` reads the reference once, so a payout is
judged by exactly one version (the one recorded in its Decision), whatever is published
meanwhile. Made for one asyncio event loop (all methods are synchronous and short); a lock
still serialises counter access so worker threads may call it too.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime

from services.payout.risk.alerts import AlertDetector, ReviewBurstPolicy, RiskAlert
from services.payout.risk.counters import Counters, Subject, beneficiary_key, epoch_ms
from services.payout.risk.evaluate import evaluate_subject
from services.payout.risk.limits import RiskLimits
from services.payout.risk.model import Decision, PayoutFacts
from services.payout.risk.ruleset import RuleSet


class StaleRuleSet(ValueError):
    code = "risk_ruleset_stale"


class Engine:
    def __init__(
        self,
        ruleset: RuleSet,
        *,
        limits: RiskLimits | None = None,
        review_burst: ReviewBurstPolicy | None = None,
    ) -> None:
        self.limits = limits or ruleset.limits
        self._check_limits(ruleset)
        self._current = ruleset
        self._counters = Counters(self.limits)
        self._alerts = AlertDetector(review_burst or ReviewBurstPolicy())
        # Ids recorded lately: the same payout may arrive twice (recorded locally after its
        # commit, then again from the broker's payout.created stream, or redelivered).
        self._recorded_ids: OrderedDict[str, None] = OrderedDict()
        self._counters_lock = threading.Lock()
        self._install_lock = threading.Lock()

    @property
    def ruleset(self) -> RuleSet:
        return self._current

    @property
    def version(self) -> int:
        return self._current.version

    def install(self, ruleset: RuleSet) -> bool:
        """Make ``ruleset`` current if it is newer; True when it was swapped in.

        Publication events may arrive twice or out of order; an older or equal version is
        ignored, so every instance converges on the highest published version.
        """
        self._check_limits(ruleset)
        with self._install_lock:
            current = self._current
            if ruleset.version < current.version:
                return False
            if ruleset.version == current.version:
                if ruleset.digest != current.digest:
                    raise StaleRuleSet(
                        f"version {ruleset.version} already installed with another digest"
                    )
                return False
            self._current = ruleset  # the atomic swap
            return True

    def evaluate(self, facts: PayoutFacts) -> Decision:
        ruleset = self._current  # read once: this evaluation sees one version only
        subject = Subject.of(facts)
        with self._counters_lock:
            return evaluate_subject(ruleset, self._counters, facts, subject)

    def record(self, facts: PayoutFacts) -> bool:
        """Count an accepted payout (allowed or sent to review; never a blocked one).

        Idempotent by payout id over the last ``limits.recorded_ids_max`` payouts; returns
        False for a repeat."""
        subject = Subject.of(facts)
        with self._counters_lock:
            return self._record(facts.payout_id, subject)

    def _record(self, payout_id: str, subject: Subject) -> bool:
        ids = self._recorded_ids
        if payout_id in ids:
            return False
        ids[payout_id] = None
        if len(ids) > self.limits.recorded_ids_max:
            ids.popitem(last=False)
        self._counters.record(subject)
        return True

    def observe(self, facts: PayoutFacts, decision: Decision) -> list[RiskAlert]:
        """Alerts due for a decision once it is committed (a listed beneficiary blocked, a burst
        of reviews for one merchant). Call once per judged payout, blocked ones included."""
        with self._counters_lock:
            return self._alerts.observe(facts, decision)

    def warm(self, payouts: Iterable[PayoutFacts]) -> int:
        """Record recent accepted payouts, oldest first (e.g. streamed at start-up); returns how
        many were new."""
        n = 0
        last_ms = None
        for facts in payouts:
            subject = Subject.of(facts)
            if last_ms is not None and subject.at_ms < last_ms:
                raise ValueError(
                    f"warm-up payouts must be in created_at order; {facts.payout_id} goes back"
                )
            last_ms = subject.at_ms
            with self._counters_lock:
                n += self._record(facts.payout_id, subject)
        return n

    def remember_beneficiary(
        self,
        merchant_id: str,
        beneficiary_bank: str,
        beneficiary_account: str,
        first_paid_at: datetime,
        last_paid_at: datetime,
    ) -> None:
        """Seed when a merchant first and last paid a beneficiary, for history older than the
        warm-up (the cool-down rules then know old beneficiaries after a restart)."""
        key = beneficiary_key(beneficiary_bank, beneficiary_account)
        with self._counters_lock:
            self._counters.remember_beneficiary(
                merchant_id, key, epoch_ms(first_paid_at), epoch_ms(last_paid_at)
            )

    def stats(self) -> dict[str, int]:
        with self._counters_lock:
            stats = self._counters.stats()
        stats["ruleset_version"] = self._current.version
        return stats

    def _check_limits(self, ruleset: RuleSet) -> None:
        if ruleset.limits != self.limits:
            raise ValueError("rule set was validated against other limits than this engine's")
