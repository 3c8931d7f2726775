"""Alerts: a blocked listed beneficiary, and one alert per burst of reviews per merchant."""

from __future__ import annotations

from services.payout.risk import (
    LISTED_BENEFICIARY_BLOCKED,
    REVIEW_BURST,
    Engine,
    ReviewBurstPolicy,
)
from tests.payout.risk.builders import payout, rule, ruleset


def test_blocking_a_listed_beneficiary_raises_a_high_alert_naming_the_list() -> None:
    engine = Engine(
        ruleset(rule("sanctions", "blocklist", "block", field="name", values=["Alice Martin"]))
    )
    facts = payout(1)
    alerts = engine.observe(facts, engine.evaluate(facts))
    assert [(a.code, a.severity, a.rule_ids) for a in alerts] == [
        (LISTED_BENEFICIARY_BLOCKED, "high", ("sanctions",))
    ]
    assert "po_1" in alerts[0].message and alerts[0].ruleset_version == 1


def test_a_velocity_block_is_not_a_listed_beneficiary_alert() -> None:
    engine = Engine(
        ruleset(rule("cap", "velocity", "block", scope="merchant", window_s=60, max_count=0))
    )
    facts = payout(1)
    decision = engine.evaluate(facts)
    assert decision.outcome == "block" and engine.observe(facts, decision) == []


def test_a_burst_of_reviews_raises_one_alert_per_merchant_per_window() -> None:
    engine = Engine(
        ruleset(rule("fresh", "new_beneficiary", "review", cooldown_s=3600)),
        review_burst=ReviewBurstPolicy(window_s=60, min_reviews=3),
    )
    codes = []
    for i, seconds in enumerate([0, 10, 20, 30, 40, 79, 80, 81, 200]):
        facts = payout(i, seconds=seconds, account=f"FR{i}")
        codes.append([a.code for a in engine.observe(facts, engine.evaluate(facts))])
    # 3rd review within 60 s alerts; silence for 60 s; at 80 s there are 3 in (20, 80] again
    assert codes == [[], [], [REVIEW_BURST], [], [], [], [REVIEW_BURST], [], []]
    other = payout(99, merchant="mer_other", seconds=81, account="FRX")
    assert engine.observe(other, engine.evaluate(other)) == []
