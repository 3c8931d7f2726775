"""Pure rules of the simulated banks: configuration, outcomes, latency, fees, discrepancies."""

from __future__ import annotations

import copy
import random
import statistics
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.banksim.app import load_config
from services.banksim.domain import behaviour as rules
from services.banksim.domain.config import ConfigError, parse_config
from services.banksim.domain.money import fee_for, fmt_amount
from services.banksim.domain.statements import discrepancies
from services.banksim.domain.statements.model import Movement
from services.banksim.settings import DEFAULT_CONFIG

BEN = rules.Beneficiary("Ada Lovelace", "DE89370400440532013000", "COBADEFF")


def minimal_bank(**changes: Any) -> dict[str, Any]:
    bank: dict[str, Any] = {
        "bic": "TESTDEFF",
        "statement_format": "csv",
        "accounts": {"EUR": {"iban": "DE89370400440532013000", "opening_balance_minor": 0}},
        "latency_ms": {"median": 10, "p99": 100},
        "success_rate": 1.0,
        "daily_limit_minor": 10**9,
    }
    bank.update(changes)
    return bank


def test_default_config_has_three_banks_that_differ_with_one_statement_format_each() -> None:
    banks = load_config(DEFAULT_CONFIG)
    assert len(banks) >= 3
    assert {b.statement_format for b in banks.values()} == {"csv", "mt940", "camt053"}
    for attribute in (
        "fee_fixed_minor",
        "latency_p99_ms",
        "success_rate",
        "lost_response_rate",
        "async_rate",
        "daily_limit_minor",
        "cutoff_minute",
        "maintenance_windows",
    ):
        values = [getattr(b, attribute) for b in banks.values()]
        assert len(set(values)) == len(values), f"default banks share {attribute}: {values}"
    mixes = [tuple(sorted(b.failure_mix)) for b in banks.values()]
    assert len(set(mixes)) == len(mixes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"success_rate": 1.5}, "bank b1: success_rate: must be between 0 and 1"),
        ({"statement_format": "pdf"}, "statement_format: must be one of csv, mt940, camt053"),
        ({"latency_ms": {"median": 100, "p99": 10}}, "latency_ms.p99: must be >= median"),
        ({"failure_mix": {"stolen": 1}}, "failure_mix.stolen: unknown code"),
        ({"maintenance_windows": ["25:00-26:00"]}, "maintenance_windows: must be a time HH:MM"),
        ({"cutoff": "7pm"}, "cutoff: must be a time HH:MM"),
        ({"accounts": {"XXX": {"iban": "DE89370400440532013000"}}}, "accounts.XXX: unsupported"),
        ({"accounts": {"EUR": {"iban": "nope"}}}, "accounts.EUR.iban: must look like an IBAN"),
        ({"daily_limit_minor": 0}, "daily_limit_minor: must be between 1"),
        ({"colour": "blue"}, "colour: unknown key"),
        ({"bic": "short"}, "bic: must be a BIC"),
    ],
)
def test_a_bad_bank_configuration_is_refused_naming_the_bank_and_key(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_config({"banks": {"b1": minimal_bank(**change)}})


def test_a_missing_or_unparsable_config_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("banks: [unclosed")
    with pytest.raises(ConfigError, match=f"{broken}: not valid YAML"):
        load_config(broken)
    missing_key = tmp_path / "missing.yaml"
    bank = minimal_bank()
    del bank["success_rate"]
    missing_key.write_text(yaml.safe_dump({"banks": {"b1": bank}}))
    with pytest.raises(ConfigError, match="b1: success_rate: is required"):
        load_config(missing_key)


def test_a_seeded_outcome_depends_only_on_seed_bank_and_reference() -> None:
    bank = parse_config({"banks": {"b1": minimal_bank(success_rate=0.5)}})["b1"]
    b = rules.effective(bank, "normal", {})
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    def outcome(seed: int, ref: str) -> rules.Decision:
        return rules.decide(
            bank, b, amount_minor=100, beneficiary=BEN, now=now, rng=rules.rng_for(seed, "b1", ref)
        )

    assert outcome(7, "att_1") == outcome(7, "att_1")
    statuses = {outcome(7, f"att_{i}").status for i in range(50)}
    assert statuses == {"paid", "rejected"}, "a 50% bank must produce both outcomes"
    differing = sum(outcome(7, f"att_{i}") != outcome(8, f"att_{i}") for i in range(50))
    assert differing > 0


def test_latency_follows_the_configured_median_and_long_tail() -> None:
    bank = parse_config(
        {"banks": {"b1": minimal_bank(latency_ms={"median": 100, "p99": 2000, "max": 60000})}}
    )["b1"]
    b = rules.effective(bank, "normal", {})
    rng = random.Random(1)
    samples = sorted(rules.latency_ms(b, rng) for _ in range(20_000))
    median = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99)]
    assert 90 <= median <= 110
    assert 1600 <= p99 <= 2400
    assert max(samples) > 4 * p99 / 2, "a long tail reaches well past p99"


def test_chaos_modes_and_overrides_fold_into_the_behaviour() -> None:
    bank = parse_config({"banks": {"b1": minimal_bank()}})["b1"]
    assert rules.effective(bank, "slow", {}).latency_median_ms >= 10 * bank.latency_median_ms
    assert rules.effective(bank, "lost_responses", {}).lost_response_rate == 0.5
    assert rules.effective(bank, "flaky", {}).refusal_rate > 0
    custom = rules.effective(bank, "lost_responses", {"lost_response_rate": 1.0})
    assert custom.lost_response_rate == 1.0
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    for mode, code in (("outage", "outage"), ("maintenance", "maintenance")):
        decision = rules.decide(
            bank,
            rules.effective(bank, mode, {}),
            amount_minor=1,
            beneficiary=BEN,
            now=now,
            rng=random.Random(1),
        )
        assert (decision.failure_code, decision.http_status, decision.recorded) == (
            code,
            503,
            False,
        )


def test_windows_cutoff_and_value_dates_follow_the_clock() -> None:
    bank = parse_config(
        {
            "banks": {
                "b1": minimal_bank(
                    maintenance_windows=["23:50-00:10"], cutoff="18:00", after_cutoff="next_day"
                ),
                "b2": minimal_bank(cutoff="18:00", after_cutoff="reject"),
            }
        }
    )
    b1, b2 = bank["b1"], bank["b2"]
    assert b1.maintenance_windows[0].contains(time(0, 5))
    assert b1.maintenance_windows[0].contains(time(23, 55))
    assert not b1.maintenance_windows[0].contains(time(0, 10))
    late = datetime(2026, 1, 5, 19, 0, tzinfo=UTC)
    assert rules.value_date_for(b1, late) == date(2026, 1, 6)
    assert rules.value_date_for(b1, late.replace(hour=9)) == date(2026, 1, 5)
    decision = rules.decide(
        b2,
        rules.effective(b2, "normal", {}),
        amount_minor=1,
        beneficiary=BEN,
        now=late,
        rng=random.Random(1),
    )
    assert (decision.failure_code, decision.recorded) == ("cutoff_passed", False)


def test_fees_and_amount_text_are_exact_integers() -> None:
    assert fee_for(10_000, fixed_minor=25, rate_bp=15, max_minor=None) == 40
    assert fee_for(10**9, fixed_minor=0, rate_bp=15, max_minor=500) == 500
    assert fmt_amount(12345, "EUR") == "123.45"
    assert fmt_amount(5, "EUR", decimal_mark=",") == "0,05"
    assert fmt_amount(1234, "JPY", decimal_mark=",") == "1234,"
    assert fmt_amount(1234, "BHD") == "1.234"


def _movements(n: int) -> list[Movement]:
    day = date(2026, 1, 5)
    return [
        Movement(
            kind="payout",
            reference=f"att_{i}",
            bank_reference=f"B{i:015d}",
            amount_minor=1000 + i,
            fee_minor=10,
            booking_date=day,
            value_date=day,
            counterparty="Ada",
        )
        for i in range(n)
    ]


def test_each_file_discrepancy_changes_exactly_what_its_answer_says() -> None:
    original = _movements(6)
    kinds = ["drop_line", "amount_changed", "duplicate_line", "value_date_next_day", "unknown_line"]
    injected = discrepancies.apply(
        copy.deepcopy(original),
        [discrepancies.Injection(k) for k in kinds],
        random.Random(3),
        date(2026, 1, 5),
    )
    answers = {a["kind"]: a for a in injected.answers}
    refs = [m.reference for m in injected.movements]
    assert answers["drop_line"]["reference"] not in refs
    assert refs.count(answers["duplicate_line"]["reference"]) == 2
    changed = next(
        m for m in injected.movements if m.reference == answers["amount_changed"]["reference"]
    )
    assert changed.amount_minor == answers["amount_changed"]["amount_minor"]
    assert changed.amount_minor != answers["amount_changed"]["original_amount_minor"]
    moved = next(
        m for m in injected.movements if m.reference == answers["value_date_next_day"]["reference"]
    )
    assert moved.value_date == date(2026, 1, 6)
    assert answers["unknown_line"]["reference"] in refs
    touched = [answers[k]["reference"] for k in kinds if k != "unknown_line"]
    assert len(set(touched)) == len(touched), "each discrepancy acts on its own line"
    assert len(injected.movements) == 6 - 1 + 1 + 1
    assert injected.closing_delta_minor == 0


def test_a_discrepancy_without_a_line_to_act_on_is_refused() -> None:
    with pytest.raises(discrepancies.DiscrepancyError, match="no payout line"):
        discrepancies.apply(
            [], [discrepancies.Injection("drop_line")], random.Random(1), date.today()
        )
    with pytest.raises(discrepancies.DiscrepancyError, match="att_zz"):
        discrepancies.apply(
            _movements(2),
            [discrepancies.Injection("amount_changed", reference="att_zz")],
            random.Random(1),
            date.today(),
        )
