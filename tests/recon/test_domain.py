"""Pure rules: channel config, file-level checks, sequence gaps, the alert catalogue."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from services.recon.domain import checks
from services.recon.domain.lines import Balance
from services.recon.domain.rules import ChannelRules, RulesError, load_rules
from services.recon.domain.taxonomy import ALERTS, BREAK_SEVERITY, BreakCode, Severity
from tests.recon.daygen import generate, rules_for


def test_channels_file_rules_override_defaults_per_channel_and_version_changes_with_them() -> None:
    book = load_rules(
        {
            "defaults": {"window_days": 3},
            "channels": {"bank_x": {"window_days": 1, "currencies": ["EUR"], "cutoff": "07:30"}},
        }
    )
    x, other = book.for_channel("bank_x"), book.for_channel("bank_y")
    assert (x.window_days, x.currencies, x.cutoff) == (1, ("EUR",), "07:30")
    assert other.window_days == 3 and other.channel == "bank_y"
    assert x.version() != replace(x, window_days=2).version()
    assert x.cutoff_at(date(2026, 11, 20)) == datetime(2026, 11, 21, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"channels": {"b": {"window_days": -1}}}, "window_days"),
        ({"channels": {"b": {"passes": ["our_reference", "guess"]}}}, "passes"),
        ({"channels": {"b": {"cutoff": "25:00"}}}, "cutoff"),
        ({"channels": {"b": {"speed": 1}}}, "unknown key"),
        ({"channels": {"Bad Name": {}}}, "channel name"),
        ({"channels": {"b": {"amount_basis": "both"}}}, "amount_basis"),
        ({"other": {}}, "top-level"),
    ],
)
def test_invalid_channels_file_is_refused_naming_the_key(document: dict, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        load_rules(document)


def test_a_balanced_generated_statement_passes_every_file_check() -> None:
    day = generate({"match": 5, "returned": 2, "missing_in_ledger": 1})
    assert checks.check_statements(day.statements, rules_for(day.channel)) is None
    assert checks.business_date(day.statements) == day.business_date


def test_unbalanced_mixed_currency_foreign_currency_and_bad_control_totals_are_caught() -> None:
    day = generate({"match": 3})
    rules = rules_for(day.channel)
    st = day.statements[0]
    assert st.closing is not None

    unbalanced = replace(st, closing=Balance(st.closing.amount_minor + 1, "EUR", st.closing.date))
    failure = checks.check_statements([unbalanced], rules)
    assert failure is not None and failure.code == "statement_unbalanced"

    mixed = replace(st, lines=[replace(st.lines[0], currency="USD"), *st.lines[1:]])
    failure = checks.check_statements([mixed], rules)
    assert failure is not None and failure.code == "currency_mixed"
    assert failure.line_number == st.lines[0].line_number

    usd_only = replace(rules, currencies=("USD",))
    failure = checks.check_statements([st], usd_only)
    assert failure is not None and failure.code == "currency_unexpected"

    failure = checks.check_statements([replace(st, control_count=len(st.lines) + 1)], rules)
    assert failure is not None and failure.code == "control_count_mismatch"
    total = sum(line.amount_minor for line in st.lines)
    assert checks.check_statements([replace(st, control_total_minor=total)], rules) is None
    failure = checks.check_statements([replace(st, control_total_minor=total - 1)], rules)
    assert failure is not None and failure.code == "control_total_mismatch"

    failure = checks.check_statements([replace(st, channel="elsewhere")], rules)
    assert failure is not None and failure.code == "channel_mismatch"
    assert checks.check_statements([], rules) is not None


def test_fees_count_in_the_balance_only_when_the_channel_books_them_there() -> None:
    day = generate({"match": 3})
    rules = rules_for(day.channel)
    assert checks.check_statements(day.statements, rules) is None
    failure = checks.check_statements(day.statements, replace(rules, fees_in_balance=False))
    assert failure is not None and failure.code == "statement_unbalanced"


def test_sequence_gap_is_reported_only_when_numbers_are_skipped() -> None:
    assert checks.sequence_gap(None, 5) is None
    assert checks.sequence_gap(4, 5) is None
    assert checks.sequence_gap(4, 4) is None
    assert checks.sequence_gap(4, 7) == (5, 7)


def test_every_break_code_has_an_alert_with_a_severity_and_status_mismatch_is_critical() -> None:
    assert set(BREAK_SEVERITY) == {code.value for code in BreakCode}
    assert BREAK_SEVERITY["status_mismatch"] is Severity.CRITICAL
    for code in ("statement_missing", "sequence_gap", "file_quarantined", "records_unavailable"):
        assert code in ALERTS
    assert all(spec.message for spec in ALERTS.values())


def test_default_rules_run_every_pass_in_the_documented_order() -> None:
    assert ChannelRules(channel="x").passes == (
        "our_reference",
        "bank_reference",
        "amount_date",
        "one_to_many",
        "fee_adjusted",
    )
