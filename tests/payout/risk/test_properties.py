"""Properties that hold for any input: normalisation, outcome severity, determinism."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from services.payout.risk import Engine
from services.payout.risk.model import SEVERITY
from services.payout.risk.normalise import normalise_account, normalise_name
from tests.payout.risk.builders import payout, rule, ruleset

names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=40)


@given(names)
def test_name_normalisation_is_idempotent_and_has_no_case_accents_or_extra_spaces(
    name: str,
) -> None:
    once = normalise_name(name)
    assert normalise_name(once) == once
    assert once == once.strip() and "  " not in once
    assert not any(unicodedata.combining(ch) for ch in once)


@given(names)
def test_names_differing_only_by_case_accents_and_spacing_normalise_alike(name: str) -> None:
    noisy = "  " + unicodedata.normalize("NFD", name.upper()).replace(" ", " \t ") + " "
    assert normalise_name(noisy) == normalise_name(name.upper())


@given(st.text(alphabet="0123456789ABCDEFabcdef -", max_size=40))
def test_account_normalisation_ignores_grouping_and_case(account: str) -> None:
    assert normalise_account(account) == account.replace(" ", "").replace("-", "").upper()


outcomes = st.sampled_from(["allow", "review", "block"])


@settings(max_examples=60, deadline=None)
@given(
    name_outcome=outcomes,
    velocity_outcome=outcomes,
    cooldown_outcome=outcomes,
    listed=st.booleans(),
    history=st.integers(0, 4),
)
def test_the_decision_is_the_most_severe_fired_outcome_and_is_deterministic(
    name_outcome: str, velocity_outcome: str, cooldown_outcome: str, listed: bool, history: int
) -> None:
    rs = ruleset(
        rule("name", "blocklist", name_outcome, field="name", values=["Alice Martin"]),
        rule("vel", "velocity", velocity_outcome, scope="merchant", window_s=60, max_count=2),
        rule("new", "new_beneficiary", cooldown_outcome, cooldown_s=5),
    )
    engine = Engine(rs)
    engine.warm(payout(i, seconds=i) for i in range(history))
    facts = payout(99, seconds=10, name="Alice Martin" if listed else "Bob")
    decision = engine.evaluate(facts)
    assert decision == engine.evaluate(facts)
    expected = max((SEVERITY[f.outcome] for f in decision.fired), default=0)
    assert SEVERITY[decision.outcome] == expected
    assert (decision.failure_code == "risk_blocked") == (decision.outcome == "block")
    assert ("name" in {f.rule_id for f in decision.fired}) == listed
    assert ("vel" in {f.rule_id for f in decision.fired}) == (history + 1 > 2)
    assert ("new" in {f.rule_id for f in decision.fired}) == (history == 0)
