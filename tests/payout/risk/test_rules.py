"""Each rule type, firing with each outcome, and staying quiet when its condition is not met."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.payout.risk import FAILURE_CODE_BLOCKED, Engine
from tests.payout.risk.builders import T0, payout, rule, ruleset

OUTCOMES = ["allow", "review", "block"]


def judge(rules: list[dict[str, Any]], history: list[Any], candidate: Any, **doc: Any) -> Any:
    engine = Engine(ruleset(*rules, **doc))
    engine.warm(history)
    return engine.evaluate(candidate)


def assert_fired(decision: Any, rule_id: str, outcome: str, reason: str) -> None:
    assert [f.rule_id for f in decision.fired] == [rule_id]
    assert decision.fired[0].outcome == outcome
    assert decision.fired[0].reason_code == reason
    assert decision.outcome == outcome
    assert decision.failure_code == (FAILURE_CODE_BLOCKED if outcome == "block" else None)


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize(
    ("field", "listed", "typed"),
    [
        ("account", "DE89 3704 0044 0532 0130 00", "de89-3704-0044-0532-0130-00"),
        ("bank", "cobadeffxxx", " COBADEFFXXX "),
        ("name", "José  ÁLVAREZ", "  jose alvarez "),
    ],
)
def test_blocklist_fires_on_a_listed_beneficiary_however_it_is_typed(
    outcome: str, field: str, listed: str, typed: str
) -> None:
    r = rule("listed", "blocklist", outcome, field=field, values=[listed])
    overrides: dict[str, Any] = {field: typed}
    decision = judge([r], [], payout(**overrides))
    assert_fired(decision, "listed", outcome, f"beneficiary_{field}_blocklisted")


def test_blocklist_lets_an_unlisted_beneficiary_through() -> None:
    r = rule("listed", "blocklist", "block", field="name", values=["Mallory"])
    decision = judge([r], [], payout(name="Alice"))
    assert decision.outcome == "allow" and decision.fired == ()


@pytest.mark.parametrize("outcome", ["review", "block"])
def test_allowlist_fires_on_a_beneficiary_missing_from_it(outcome: str) -> None:
    r = rule("known", "allowlist", outcome, field="bank", values=["BNPAFRPP"])
    assert judge([r], [], payout(bank="bnpafrpp")).fired == ()
    decision = judge([r], [], payout(bank="COBADEFF"))
    assert_fired(decision, "known", outcome, "beneficiary_bank_not_allowlisted")


def test_allowlist_with_outcome_allow_only_exempts_listed_beneficiaries_from_other_rules() -> None:
    trusted = rule("trusted", "allowlist", "allow", field="account", values=["FR76 TRUSTED"])
    cap = rule(
        "cap",
        "velocity",
        "block",
        scope="merchant",
        window_s=60,
        max_count=0,
        exempt_allowlist="trusted",
    )
    assert judge([trusted, cap], [], payout(account="FR76TRUSTED")).fired == ()
    assert_fired(
        judge([trusted, cap], [], payout(account="FR76OTHER")),
        "cap",
        "block",
        "velocity_count_exceeded",
    )


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_velocity_count_fires_when_this_payout_goes_over_the_limit(outcome: str) -> None:
    r = rule("burst", "velocity", outcome, scope="merchant", window_s=60, max_count=3)
    two = [payout(i, seconds=i) for i in range(2)]
    assert judge([r], two, payout(9, seconds=10)).fired == ()
    three = [payout(i, seconds=i) for i in range(3)]
    assert_fired(
        judge([r], three, payout(9, seconds=10)), "burst", outcome, "velocity_count_exceeded"
    )


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_velocity_amount_fires_when_this_payout_takes_the_sum_over_the_limit(outcome: str) -> None:
    r = rule(
        "daily",
        "velocity",
        outcome,
        scope="merchant_beneficiary",
        window_s=86_400,
        max_amount_minor=50_000,
        currency="EUR",
    )
    history = [payout(i, seconds=i, amount=20_000) for i in range(2)]
    assert judge([r], history, payout(9, seconds=60, amount=10_000)).fired == ()
    decision = judge([r], history, payout(9, seconds=60, amount=10_001))
    assert_fired(decision, "daily", outcome, "velocity_amount_exceeded")
    other_currency = judge([r], history, payout(9, seconds=60, amount=90_000, currency="GBP"))
    assert other_currency.fired == ()


def test_velocity_scopes_count_what_they_say() -> None:
    per_beneficiary = rule(
        "b", "velocity", "review", scope="beneficiary", window_s=3600, max_count=2
    )
    per_pair = rule(
        "mb", "velocity", "block", scope="merchant_beneficiary", window_s=3600, max_count=2
    )
    history = [payout(0, merchant="mer_a"), payout(1, merchant="mer_b", seconds=1)]
    # Same beneficiary across merchants: the beneficiary scope sees 3, each pair sees 2 at most.
    decision = judge([per_beneficiary, per_pair], history, payout(2, merchant="mer_a", seconds=2))
    assert [f.rule_id for f in decision.fired] == ["b"]
    other = judge(
        [per_beneficiary, per_pair],
        history,
        payout(2, merchant="mer_a", seconds=2, account="FR76 OTHER"),
    )
    assert other.fired == ()


def test_velocity_count_without_currency_counts_every_currency() -> None:
    r = rule("any", "velocity", "review", scope="merchant", window_s=60, max_count=2)
    history = [payout(0, currency="EUR"), payout(1, currency="GBP", seconds=1)]
    assert judge([r], history, payout(2, currency="USD", seconds=2)).outcome == "review"


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_amount_anomaly_fires_above_the_multiple_of_the_recent_median(outcome: str) -> None:
    r = rule("odd", "amount_anomaly", outcome, multiple=2.5, min_samples=4)
    history = [payout(i, seconds=i, amount=a) for i, a in enumerate([900, 1000, 1100, 5000])]
    # median of [900, 1000, 1100, 5000] is 1050; 2.5 x 1050 = 2625
    assert judge([r], history, payout(9, seconds=9, amount=2625)).fired == ()
    decision = judge([r], history, payout(9, seconds=9, amount=2626))
    assert_fired(decision, "odd", outcome, "amount_anomaly")


def test_amount_anomaly_waits_for_the_minimum_sample_size() -> None:
    r = rule("odd", "amount_anomaly", "block", multiple=2, min_samples=4)
    history = [payout(i, seconds=i, amount=1000) for i in range(3)]
    assert judge([r], history, payout(9, seconds=9, amount=1_000_000)).fired == ()
    history.append(payout(3, seconds=3, amount=1000))
    assert judge([r], history, payout(9, seconds=9, amount=1_000_000)).outcome == "block"


def test_amount_anomaly_medians_are_per_merchant_and_currency() -> None:
    r = rule("odd", "amount_anomaly", "review", multiple=3, min_samples=2)
    history = [payout(i, seconds=i, amount=100, currency="GBP") for i in range(3)]
    history += [payout(10 + i, seconds=10 + i, amount=100, merchant="mer_b") for i in range(3)]
    assert judge([r], history, payout(99, seconds=99, amount=10_000)).fired == ()


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_new_beneficiary_fires_during_the_cool_down_only(outcome: str) -> None:
    r = rule("fresh", "new_beneficiary", outcome, cooldown_s=3600)
    assert_fired(judge([r], [], payout(0)), "fresh", outcome, "new_beneficiary_cooldown")
    first = [payout(0)]
    assert judge([r], first, payout(1, seconds=3599.999)).outcome == outcome
    assert judge([r], first, payout(1, seconds=3600)).fired == ()


def test_new_beneficiary_is_per_merchant_and_can_spare_small_amounts() -> None:
    r = rule(
        "fresh", "new_beneficiary", "review", cooldown_s=60, min_amount_minor=50_000, currency="EUR"
    )
    other_merchant_paid_it = [payout(0, merchant="mer_b")]
    assert judge([r], other_merchant_paid_it, payout(1, amount=49_999, seconds=120)).fired == ()
    assert judge([r], other_merchant_paid_it, payout(1, amount=50_000, seconds=120)).fired != ()


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_time_window_fires_outside_business_hours_in_the_merchant_time_zone(outcome: str) -> None:
    r = rule(
        "hours",
        "time_window",
        outcome,
        timezone="Europe/Paris",
        start="08:00",
        end="19:00",
        days=["mon", "tue", "wed", "thu", "fri"],
    )
    # 2026-11-18 is a Wednesday; Paris is UTC+1 in November.
    inside = datetime(2026, 11, 18, 17, 59, tzinfo=UTC)  # 18:59 Paris
    edge = datetime(2026, 11, 18, 18, 0, tzinfo=UTC)  # 19:00 Paris: end is exclusive
    saturday = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert judge([r], [], payout(at=inside)).fired == ()
    assert_fired(judge([r], [], payout(at=edge)), "hours", outcome, "outside_time_window")
    assert judge([r], [], payout(at=saturday)).outcome == outcome


def test_time_window_across_midnight_fires_inside_when_asked() -> None:
    r = rule(
        "night",
        "time_window",
        "review",
        timezone="Asia/Tokyo",
        start="22:00",
        end="06:00",
        fires_when="inside",
    )
    assert judge([r], [], payout(at=datetime(2026, 11, 18, 14, 0, tzinfo=UTC))).outcome == "review"
    assert judge([r], [], payout(at=datetime(2026, 11, 18, 20, 59, tzinfo=UTC))).outcome == "review"
    assert judge([r], [], payout(at=datetime(2026, 11, 18, 21, 0, tzinfo=UTC))).fired == ()
    fired = judge([r], [], payout(at=datetime(2026, 11, 18, 14, 0, tzinfo=UTC))).fired
    assert fired[0].reason_code == "inside_time_window"


def test_decision_is_the_most_severe_outcome_and_lists_every_rule_that_fired() -> None:
    rules = [
        rule("watch", "blocklist", "allow", field="name", values=["Alice Martin"]),
        rule("fresh", "new_beneficiary", "review", cooldown_s=60),
        rule(
            "bank",
            "blocklist",
            "block",
            field="bank",
            values=["BNPAFRPP"],
            reason_code="sanctioned_bank",
        ),
    ]
    decision = judge(rules, [], payout())
    assert decision.outcome == "block"
    assert decision.failure_code == "risk_blocked"
    assert {f.rule_id for f in decision.fired} == {"watch", "fresh", "bank"}
    assert "sanctioned_bank" in decision.reason_codes


def test_merchant_rules_replace_disable_or_drop_the_defaults() -> None:
    defaults = [
        rule("names", "blocklist", "block", field="name", values=["Alice Martin"]),
        rule("fresh", "new_beneficiary", "review", cooldown_s=60),
    ]
    merchants = {
        "mer_soft": {
            "rules": [rule("names", "blocklist", "review", field="name", values=["Alice Martin"])]
        },
        "mer_off": {"disable": ["fresh"]},
        "mer_own": {
            "inherit_defaults": False,
            "rules": [
                rule(
                    "hours",
                    "time_window",
                    "review",
                    timezone="UTC",
                    start="00:00",
                    end="01:00",
                    fires_when="inside",
                )
            ],
        },
    }
    engine = Engine(ruleset(*defaults, merchants=merchants))
    assert engine.evaluate(payout(merchant="mer_x")).outcome == "block"
    soft = engine.evaluate(payout(merchant="mer_soft"))
    assert soft.outcome == "review" and {f.rule_id for f in soft.fired} == {"names", "fresh"}
    assert [f.rule_id for f in engine.evaluate(payout(merchant="mer_off")).fired] == ["names"]
    assert engine.evaluate(payout(merchant="mer_own", at=T0)).fired == ()


def test_a_disabled_rule_never_fires() -> None:
    r = rule("names", "blocklist", "block", field="name", values=["Alice Martin"], enabled=False)
    assert judge([r], [], payout()).fired == ()


def test_a_merchant_blocklist_judges_only_that_merchant() -> None:
    own = rule("own", "blocklist", "block", field="name", values=["Alice Martin"])
    engine = Engine(ruleset(merchants={"mer_strict": {"rules": [own]}}))
    assert engine.evaluate(payout(merchant="mer_strict")).outcome == "block"
    assert engine.evaluate(payout(merchant="mer_other")).fired == ()


def test_many_merchant_sections_share_the_compiled_default_rules() -> None:
    big = rule(
        "big", "blocklist", "block", field="account", values=[f"FR{i}" for i in range(20_000)]
    )
    merchants = {
        f"mer_{i}": {"rules": [rule("fresh", "new_beneficiary", "review", cooldown_s=60 + i)]}
        for i in range(1_000)
    }
    rs = ruleset(big, merchants=merchants)
    assert rs.rule_count == 1 + 1_000
    assert all(p.rules[0] is rs.default_plan.rules[0] for p in rs.merchant_plans.values())
    engine = Engine(rs)
    assert engine.evaluate(payout(merchant="mer_7", account="FR19999")).outcome == "block"
    assert engine.evaluate(payout(merchant="mer_7", account="FR20000")).outcome == "review"


def test_a_beneficiary_remembered_from_old_history_is_not_new_after_a_restart() -> None:
    engine = Engine(ruleset(rule("fresh", "new_beneficiary", "review", cooldown_s=86_400)))
    assert engine.evaluate(payout(1)).outcome == "review"
    engine.remember_beneficiary(
        "mer_a",
        " bnpafrpp",
        "FR76 3000 6000 0112 3456 7890 189",
        first_paid_at=T0 - timedelta(days=90),
        last_paid_at=T0 - timedelta(days=30),
    )
    assert engine.evaluate(payout(1)).fired == ()
    assert engine.evaluate(payout(1, merchant="mer_b")).outcome == "review"
