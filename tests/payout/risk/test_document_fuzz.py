"""Whatever a document holds, validation answers RuleSetInvalid or a RuleSet, nothing else."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.payout.risk import Engine, RuleSetInvalid, compile_ruleset
from services.payout.risk.document import RULE_TYPES
from services.payout.risk.model import SEVERITY
from tests.payout.risk.builders import payout

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = [
    "id",
    "type",
    "outcome",
    "field",
    "values",
    "scope",
    "window_s",
    "max_count",
    "max_amount_minor",
    "currency",
    "multiple",
    "min_samples",
    "min_amount_minor",
    "cooldown_s",
    "timezone",
    "start",
    "end",
    "days",
    "fires_when",
    "exempt_allowlist",
    "enabled",
    "reason_code",
]
plausible = {
    "id": st.sampled_from(["a", "b", "r-1"]),
    "type": st.sampled_from([*RULE_TYPES, "nope"]),
    "outcome": st.sampled_from(["allow", "review", "block", "deny"]),
    "field": st.sampled_from(["account", "bank", "name", "iban"]),
    "values": st.lists(st.text(max_size=6), max_size=3),
    "scope": st.sampled_from(["merchant", "beneficiary", "merchant_beneficiary", "x"]),
    "window_s": st.integers(-5, 10**7),
    "max_count": st.integers(-1, 10),
    "max_amount_minor": st.integers(-1, 10**16),
    "currency": st.sampled_from(["EUR", "eur", "GBP"]),
    "multiple": st.one_of(st.floats(), st.integers(-3, 2000), st.text(max_size=5)),
    "min_samples": st.integers(-1, 5000),
    "cooldown_s": st.integers(-1, 10**9),
    "timezone": st.sampled_from(["UTC", "Europe/Paris", "Nowhere/Land", "", "../etc/passwd"]),
    "start": st.sampled_from(["08:00", "8:00", "24:00", "23:59"]),
    "end": st.sampled_from(["08:00", "18:30", "99:99"]),
    "days": st.lists(st.sampled_from(["mon", "sun", "xyz"]), max_size=3),
    "exempt_allowlist": st.sampled_from(["a", "b", "zz"]),
}


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=9, unique=True))
    out: dict[str, Any] = {}
    for key in keys:
        if key in plausible and draw(st.booleans()):
            out[key] = draw(plausible[key])
        else:
            out[key] = draw(json_values)
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    defaults=st.lists(rules(), max_size=4),
    merchant_rules=st.lists(rules(), max_size=2),
    disable=st.lists(st.sampled_from(["a", "b", "q"]), max_size=2),
)
def test_any_document_either_compiles_or_is_rejected_with_named_problems(
    defaults: list[dict[str, Any]], merchant_rules: list[dict[str, Any]], disable: list[str]
) -> None:
    doc = {
        "format": 1,
        "defaults": defaults,
        "merchants": {"mer_1": {"rules": merchant_rules, "disable": disable}},
    }
    try:
        rs = compile_ruleset(doc, version=1)
    except RuleSetInvalid as exc:
        event("rejected")
        assert exc.problems and all(p.message for p in exc.problems)
    else:
        event(f"compiled with {rs.rule_count} rules")
        # a compiled set round-trips: its canonical document compiles to the same digest
        assert compile_ruleset(rs.document, version=2).digest == rs.digest


outcome = st.sampled_from(["allow", "review", "block"])
currency = st.none() | st.sampled_from(["EUR", "GBP"])
valid_rule = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["blocklist", "allowlist"]),
            "outcome": outcome,
            "field": st.sampled_from(["account", "bank", "name"]),
            "values": st.lists(
                st.text(alphabet="abcXYZ019 éÁ-", min_size=1, max_size=8).filter(
                    lambda v: v.strip(" -")
                ),
                min_size=1,
                max_size=4,
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("velocity"),
            "outcome": outcome,
            "scope": st.sampled_from(["merchant", "beneficiary", "merchant_beneficiary"]),
            "window_s": st.integers(1, 86_400),
            "max_count": st.integers(0, 5),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("amount_anomaly"),
            "outcome": outcome,
            "multiple": st.sampled_from([1.5, 2, "2.25", 10]),
            "min_samples": st.integers(1, 5),
            "currency": currency,
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("new_beneficiary"),
            "outcome": outcome,
            "cooldown_s": st.integers(1, 10**6),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("time_window"),
            "outcome": outcome,
            "timezone": st.sampled_from(["UTC", "Asia/Tokyo", "America/Sao_Paulo"]),
            "start": st.sampled_from(["00:00", "08:30", "22:00"]),
            "end": st.sampled_from(["06:00", "18:00", "23:59"]),
            "fires_when": st.sampled_from(["inside", "outside"]),
        }
    ),
)


@settings(max_examples=100, deadline=None)
@given(rules_=st.lists(valid_rule, min_size=1, max_size=8), n=st.integers(0, 5))
def test_any_valid_rule_list_compiles_and_judges_by_the_most_severe_rule(
    rules_: list[dict[str, Any]], n: int
) -> None:
    doc = {"format": 1, "defaults": [{"id": f"r{i}", **r} for i, r in enumerate(rules_)]}
    rs = compile_ruleset(doc, version=1)
    assert rs.rule_count == len(rules_)
    engine = Engine(rs)
    engine.warm(payout(i, seconds=i, amount=1_000 * (i + 1)) for i in range(n))
    decision = engine.evaluate(payout(99, seconds=n, amount=50_000))
    assert SEVERITY[decision.outcome] == max(
        (SEVERITY[f.outcome] for f in decision.fired), default=0
    )
    assert {f.rule_id for f in decision.fired} <= {f"r{i}" for i in range(len(rules_))}
