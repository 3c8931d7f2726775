"""A broken rule set never compiles, and the error names the rule, the field and the problem."""

from __future__ import annotations

from typing import Any

import pytest

from services.payout.risk import RiskLimits, RuleSetInvalid, compile_ruleset
from tests.payout.risk.builders import rule

GOOD = rule("v", "velocity", "review", scope="merchant", window_s=60, max_count=5)


def problems_of(source: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(RuleSetInvalid) as caught:
        compile_ruleset(source, version=1, **kwargs)
    assert str(caught.value).startswith("invalid rule set: ")
    return [str(p) for p in caught.value.problems]


def only_problem(rules: list[dict[str, Any]]) -> str:
    found = problems_of({"format": 1, "defaults": rules})
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ({**GOOD, "window_s": 0}, "defaults[0], rule 'v', field 'window_s': Expected `int` >= 1"),
        ({**GOOD, "window_s": "60"}, "field 'window_s': Expected `int`, got `str`"),
        ({**GOOD, "windw_s": 60}, "field 'windw_s': Object contains unknown field `windw_s`"),
        ({k: v for k, v in GOOD.items() if k != "scope"}, "field 'scope': Object missing"),
        ({**GOOD, "scope": "planet"}, "field 'scope': Invalid enum value 'planet'"),
        ({**GOOD, "outcome": "deny"}, "field 'outcome': Invalid enum value 'deny'"),
        ({**GOOD, "type": "vibes"}, "rule 'v', field 'type': 'vibes' is not one of blocklist"),
        ({**GOOD, "max_count": None}, "rule 'v': a velocity rule needs max_count"),
        ({**GOOD, "max_amount_minor": 10}, "field 'currency': required with max_amount_minor"),
        ({**GOOD, "window_s": 8 * 86_400}, "field 'window_s': 691200s is longer than the kept"),
        ({**GOOD, "currency": "eur"}, "field 'currency': Expected `str` matching regex"),
        ({**GOOD, "id": "has space"}, "field 'id': Expected `str` matching regex"),
        (
            rule("a", "amount_anomaly", multiple=1, min_samples=5),
            "rule 'a', field 'multiple': 1 must be greater than 1",
        ),
        (
            rule("a", "amount_anomaly", multiple="lots", min_samples=5),
            "rule 'a', field 'multiple': 'lots' is not a number",
        ),
        (
            rule("a", "amount_anomaly", multiple=3, min_samples=5000),
            "rule 'a', field 'min_samples': 5000 is more than the samples kept",
        ),
        (
            rule("t", "time_window", timezone="Mars/Olympus", start="08:00", end="18:00"),
            "rule 't', field 'timezone': 'Mars/Olympus' is not an IANA time zone",
        ),
        (
            rule("t", "time_window", timezone="UTC", start="8am", end="18:00"),
            "rule 't', field 'start': '8am' is not a time \"HH:MM\"",
        ),
        (
            rule("t", "time_window", timezone="UTC", start=1080, end="19:00"),
            "rule 't', field 'start': write times as quoted \"HH:MM\" strings",
        ),
        (
            rule("t", "time_window", timezone="UTC", start="08:00", end="08:00"),
            "rule 't', field 'end': equals start",
        ),
        (
            rule("b", "blocklist", field="name", values=["  ", "ok"]),
            "rule 'b', field 'values': entry 0 ('  ') is empty once normalised",
        ),
        (
            rule("b", "blocklist", field="iban", values=["x"]),
            "rule 'b', field 'field': Invalid enum value 'iban'",
        ),
        (
            rule("b", "blocklist", field="name", values=[]),
            "rule 'b', field 'values': Expected `array` of length >= 1",
        ),
        (
            rule("n", "new_beneficiary", cooldown_s=3600, min_amount_minor=5),
            "rule 'n', field 'currency': required with min_amount_minor",
        ),
        (
            {**GOOD, "exempt_allowlist": "nope"},
            "defaults, rule 'v', field 'exempt_allowlist': 'nope' is not an enabled allowlist",
        ),
        ("just text", "defaults[0]: a rule must be a mapping"),
    ],
)
def test_an_invalid_rule_is_rejected_with_a_message_naming_the_problem(
    broken: Any, expected: str
) -> None:
    assert expected in only_problem([broken])


def test_every_problem_of_a_document_is_reported_at_once() -> None:
    found = problems_of(
        {
            "format": 1,
            "defaults": [GOOD, {**GOOD}, {**GOOD, "id": "w", "window_s": -1}],
            "merchants": {"mer_1": {"disable": ["ghost"], "rules": [{**GOOD, "outcome": "x"}]}},
        }
    )
    assert any("defaults[1], rule 'v', field 'id': duplicate rule id" in p for p in found)
    assert any("defaults[2], rule 'w', field 'window_s'" in p for p in found)
    assert any("merchants.mer_1, rule 'ghost', field 'disable': names no rule" in p for p in found)
    assert any("merchants.mer_1.rules[0], rule 'v', field 'outcome'" in p for p in found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("format: 1\ndefaults: [\n", "document: not valid YAML"),
        ("", "document: must be a mapping, got empty"),
        ("- 1\n- 2\n", "document: must be a mapping, got list"),
        ("defaults: []\n", "document, field 'format': Object missing required field `format`"),
        ("format: 2\n", "document, field 'format': Invalid enum value 2"),
        ("format: 1\nrules: []\n", "document, field 'rules': Object contains unknown field"),
        ("format: 1\nmerchants: {'bad id': {}}\n", "document, field 'merchants'"),
        ("!!python/object/apply:os.system ['true']\n", "document: not valid YAML"),
    ],
)
def test_a_broken_document_is_rejected_with_a_message_naming_the_problem(
    source: str, expected: str
) -> None:
    found = problems_of(source)
    assert any(expected in p for p in found), found


def test_json_documents_are_parsed_with_msgspec_and_checked_the_same_way() -> None:
    assert "document: not valid JSON" in problems_of('{"format": 1,', fmt="json")[0]
    ok = compile_ruleset('{"format": 1, "defaults": []}', version=3, fmt="json")
    assert ok.version == 3 and ok.rule_count == 0


def test_an_oversized_document_is_refused_before_parsing() -> None:
    limits = RiskLimits(document_bytes_max=64)
    assert "bytes is over 64" in problems_of("format: 1\n" + "#" * 100, limits=limits)[0]


def test_too_many_rules_are_refused() -> None:
    limits = RiskLimits(rules_max=2)
    rules = [{**GOOD, "id": f"r{i}"} for i in range(3)]
    found = problems_of({"format": 1, "defaults": rules}, limits=limits)
    assert found == ["document: 3 rules over 2"]


def test_a_merchant_disabling_the_allowlist_another_default_rule_needs_is_refused() -> None:
    allow = rule("vip", "allowlist", "allow", field="account", values=["FR1"])
    capped = {**GOOD, "exempt_allowlist": "vip"}
    found = problems_of(
        {"format": 1, "defaults": [allow, capped], "merchants": {"mer_1": {"disable": ["vip"]}}}
    )
    assert found == [
        "merchants.mer_1, rule 'v', field 'exempt_allowlist': 'vip' is not an enabled allowlist "
        "rule that applies here"
    ]


def test_equal_documents_compile_to_the_same_digest_whatever_their_spelling() -> None:
    yaml_text = (
        "format: 1\ndefaults:\n  - {id: v, type: velocity, outcome: review, "
        "scope: merchant, window_s: 60, max_count: 5}\n"
    )
    json_text = (
        '{"defaults": [{"max_count": 5, "window_s": 60, "scope": "merchant", "type": "velocity",'
        ' "outcome": "review", "id": "v"}], "format": 1}'
    )
    a = compile_ruleset(yaml_text, version=1)
    b = compile_ruleset(json_text, version=2, fmt="json")
    assert a.digest == b.digest
    assert a.document["defaults"][0]["window_s"] == 60


def test_yaml_aliases_are_refused_so_a_small_file_cannot_expand_into_billions_of_nodes() -> None:
    laughs = "format: 1\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
    )
    found = problems_of(laughs)
    assert len(found) == 1 and "aliases (*name) are not allowed in rule sets" in found[0]
