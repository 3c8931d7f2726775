"""Dry runs use the live evaluation path: what they predict is what the engine then does."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.payout.risk import (
    Decision,
    Engine,
    HistoricalPayout,
    PayoutFacts,
    RuleSet,
    dry_run,
)
from tests.payout.risk.builders import payout, rule, ruleset

CURRENT = [
    rule("burst", "velocity", "review", scope="merchant", window_s=60, max_count=4),
    rule("bad", "blocklist", "block", field="account", values=["FR00BAD"]),
]
CANDIDATE = [
    rule("burst", "velocity", "block", scope="merchant", window_s=60, max_count=3),
    rule(
        "pair",
        "velocity",
        "review",
        scope="merchant_beneficiary",
        window_s=300,
        currency="EUR",
        max_amount_minor=40_000,
    ),
    rule("odd", "amount_anomaly", "review", multiple=3, min_samples=5),
    rule(
        "fresh",
        "new_beneficiary",
        "review",
        cooldown_s=120,
        min_amount_minor=30_000,
        currency="EUR",
    ),
    rule("bad", "blocklist", "block", field="account", values=["FR00BAD"]),
    rule(
        "night",
        "time_window",
        "review",
        timezone="Europe/Paris",
        start="11:30",
        end="11:45",
        fires_when="inside",
    ),
]


def traffic(n: int, seed: int) -> list[PayoutFacts]:
    rng = random.Random(seed)
    t = 0.0
    out = []
    for i in range(n):
        t += rng.choice([0.2, 1, 3, 10, 40])
        out.append(
            payout(
                i,
                seconds=t,
                merchant=rng.choice(["mer_a", "mer_b"]),
                amount=rng.choice([1_000, 5_000, 20_000, 90_000]),
                account=rng.choice(["FR01", "FR02", "FR03", "FR00BAD", f"FR9{i}"]),
            )
        )
    return out


def live(rs: RuleSet, stream: list[PayoutFacts]) -> list[HistoricalPayout]:
    """What production does: evaluate, then record the payout unless it was blocked."""
    engine = Engine(rs)
    history = []
    for facts in stream:
        decision = engine.evaluate(facts)
        if decision.outcome != "block":
            engine.record(facts)
        history.append(
            HistoricalPayout(
                facts=facts,
                recorded_outcome=decision.outcome,
                recorded_version=decision.ruleset_version,
            )
        )
    return history


def replay_live(rs: RuleSet, history: list[HistoricalPayout]) -> list[Decision]:
    """The live engine running ``rs`` against the same traffic and the same acceptances."""
    engine = Engine(rs)
    decisions = []
    for past in history:
        decisions.append(engine.evaluate(past.facts))
        if past.was_accepted:
            engine.record(past.facts)
    return decisions


def test_dry_run_of_the_live_rule_set_changes_nothing() -> None:
    current = ruleset(*CURRENT, version=1)
    history = live(current, traffic(400, seed=1))
    assert {h.recorded_outcome for h in history} == {"allow", "review", "block"}
    report = dry_run(current, history)
    assert report.evaluated == 400 and report.changed == 0 and report.changes == []


def test_dry_run_of_a_candidate_equals_what_live_evaluation_then_does() -> None:
    history = live(ruleset(*CURRENT, version=1), traffic(400, seed=2))
    candidate = ruleset(*CANDIDATE, version=2)
    predicted: list[Decision] = []
    report = dry_run(candidate, history, decisions=predicted)
    assert predicted == replay_live(candidate, history)
    assert report.changed == sum(
        1 for p, h in zip(predicted, history, strict=True) if p.outcome != h.recorded_outcome
    )
    assert report.changed > 0
    assert sum(report.transitions.values()) == 400
    for rule_id in ("burst", "pair", "odd", "fresh", "bad", "night"):
        assert report.fired_by_rule[rule_id] > 0, rule_id
    first = report.changes[0]
    assert first.recorded_version == 1 and first.candidate.ruleset_version == 2


def test_dry_run_report_keeps_a_bounded_list_of_changes() -> None:
    history = live(ruleset(version=1), traffic(200, seed=3))
    report = dry_run(
        ruleset(rule("all", "new_beneficiary", "review", cooldown_s=10**6), version=2),
        history,
        changes_max=5,
    )
    assert report.changed > 5 and len(report.changes) == 5 and report.changes_truncated
    as_dict: dict[str, Any] = report.as_dict()
    assert as_dict["changed"] == report.changed and len(as_dict["changes"]) == 5


def test_dry_run_refuses_history_that_goes_back_in_time() -> None:
    history = [HistoricalPayout(facts=payout(0, seconds=10)), HistoricalPayout(facts=payout(1))]
    with pytest.raises(ValueError, match="po_1 goes back in time"):
        dry_run(ruleset(version=1), history)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 120))
def test_dry_run_and_live_evaluation_agree_on_any_traffic(seed: int, n: int) -> None:
    history = live(ruleset(*CURRENT, version=1), traffic(n, seed))
    candidate = ruleset(*CANDIDATE, version=2)
    predicted: list[Decision] = []
    dry_run(candidate, history, decisions=predicted)
    assert predicted == replay_live(candidate, history)
