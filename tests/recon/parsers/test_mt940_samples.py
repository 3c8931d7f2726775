"""Every real MT940 sample: the whole statements parse, the broken or fragmentary ones are
rejected with the line that shows it. Expected values were read off the files by hand."""

from __future__ import annotations

from datetime import date

import pytest

from services.recon.domain.lines import Direction, Statement, StatementFormatError
from services.recon.parsers import mt940
from tests.recon.parsers.samples import sample, samples

# sample → (statements, lines)
PARSES: dict[str, tuple[int, int]] = {
    "mt940/ASNB/mt940.txt": (31, 8),
    "mt940/ASNB/mt940_with_spaces_for_entry_date.txt": (31, 8),
    "mt940/betterplace/sepa_mt9401.sta": (26, 97),
    "mt940/betterplace/sepa_snippet.sta": (2, 11),
    "mt940/betterplace/with_binary_character.sta": (2, 4),
    "mt940/citi/mt940.txt": (1, 3),  # plus two zero-amount information lines
    "mt940/cmxl/mt940.sta": (3, 16),
    "mt940/jejik/abnamro.sta": (2, 10),
    "mt940/jejik/generic.sta": (2, 2),
    "mt940/jejik/ing.sta": (1, 7),
    "mt940/jejik/knab.sta": (2, 3),
    "mt940/jejik/postfinance.sta": (2, 4),
    "mt940/jejik/rabobank-iban.sta": (2, 4),
    "mt940/jejik/rabobank.sta": (4, 5),
    "mt940/jejik/sns.sta": (2, 2),
    "mt940/jejik/triodos.sta": (1, 2),
    "mt940/mBank/mt940.sta": (1, 3),
    "mt940/mBank/with_newline_in_tnr.sta": (1, 2),
    "mt940/sberbank/171011_01234945.sta": (1, 3),
    "mt940/self-provided/details_60-63.sta": (1, 1),
    "mt940/self-provided/february_30.sta": (1, 1),
    "mt940/self-provided/long_statement_number.sta": (1, 0),
    "mt940/self-provided/malformed_details.sta": (1, 1),
    "mt940/self-provided/overly_long_details.sta": (1, 1),
    "mt940/self-provided/raiffeisen-cmi.sta": (1, 7),
    "mt940/self-provided/raphaelm.sta": (3, 9),
    "mt940/self-provided/transaction_details_wrapped.sta": (1, 1),
    "mt940/self-provided/whitespace.sta": (1, 1),
    "mt940/self-provided/wrapped_timestamp.sta": (1, 1),
}

# sample → (line named by the error, words in the reason). Deliberately broken upstream, or a
# field-level fragment (no :20:/:25:, no balances) that cannot be a statement on its own.
REJECTED: dict[str, tuple[int, str]] = {
    "mt940/betterplace/sepa_snippet_broken.sta": (6, ":25: out of order after :61:"),
    "mt940/self-provided/invalid_statement.sta": (1, "no :20:"),
    "mt940/self-provided/multiline.sta": (38, ":61: outside a statement"),
    "mt940/self-provided/gv_codes.sta": (7, "no :62F:/:62M: closing balance"),
    "mt940/self-provided/account_identification.sta": (1, "no currency"),
    "mt940/betterplace/empty_line.sta": (2, "no :25: account"),
    "mt940/cmxl/reference.sta": (1, "no :25: account"),
    "mt940/betterplace/amount_formats.sta": (1, ":60F: outside a statement"),
    "mt940/betterplace/currency_in_25.sta": (1, ":25: outside a statement"),
    "mt940/betterplace/empty_86.sta": (1, ":86: outside a statement"),
    "mt940/betterplace/empty_entry_date.sta": (1, ":61: outside a statement"),
    "mt940/betterplace/missing_crlf_at_end.sta": (1, ":62F: outside a statement"),
    "mt940/cmxl/account_balance_credit.sta": (1, ":60F: outside a statement"),
    "mt940/cmxl/account_balance_debit.sta": (1, ":60F: outside a statement"),
    "mt940/cmxl/account_identification_iban.sta": (1, ":25: outside a statement"),
    "mt940/cmxl/account_identification_legacy.sta": (1, ":25: outside a statement"),
    "mt940/cmxl/available_balance.sta": (1, ":64: outside a statement"),
    "mt940/cmxl/closing_balance.sta": (1, ":62F: outside a statement"),
    "mt940/cmxl/statement_details.sta": (1, ":61: outside a statement"),
    "mt940/cmxl/statement_line.sta": (1, ":61: outside a statement"),
    "mt940/cmxl/statement_number.sta": (1, ":28C: outside a statement"),
    "mt940/self-provided/empty_non_swift.sta": (1, ":NS: outside a statement"),
    "mt940/self-provided/sparkassen.sta": (1, ":61: outside a statement"),
}


def _parse(name: str) -> list[Statement]:
    return mt940.parse(sample(name), channel="bank_x")


def test_every_mt940_sample_is_classified_as_parsing_or_rejected() -> None:
    assert set(samples("mt940")) == set(PARSES) | set(REJECTED)
    assert not set(PARSES) & set(REJECTED)


@pytest.mark.parametrize("name", sorted(PARSES))
def test_a_real_mt940_sample_parses_into_its_statements_and_lines(name: str) -> None:
    statements = _parse(name)
    assert (len(statements), sum(len(s.lines) for s in statements)) == PARSES[name]
    for st in statements:
        assert st.format == "mt940" and st.channel == "bank_x" and st.account
        assert st.opening is not None and st.closing is not None
        for line in st.lines:
            assert line.amount_minor > 0
            assert line.currency == st.currency
            assert line.statement_id == st.statement_id
            assert line.raw.startswith(":61:")


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_a_broken_or_fragmentary_mt940_sample_is_rejected_naming_the_line(name: str) -> None:
    line_number, words = REJECTED[name]
    with pytest.raises(StatementFormatError) as e:
        _parse(name)
    assert e.value.line_number == line_number
    assert words in e.value.reason


def test_the_line_number_of_a_statement_line_is_the_physical_line_of_its_61() -> None:
    statements = _parse("mt940/jejik/generic.sta")
    raw = sample("mt940/jejik/generic.sta").decode().split("\n")
    for st in statements:
        for line in st.lines:
            assert raw[line.line_number - 1].startswith(":61:")


def test_generic_statements_carry_balances_sequence_and_one_debit_each() -> None:
    first, second = _parse("mt940/jejik/generic.sta")
    assert first.statement_id == "GENERIC" and first.account == "11111111"
    assert (first.sequence_number, second.sequence_number) == (1, 2)
    assert first.opening is not None and first.opening.amount_minor == 10000
    assert first.closing is not None and first.closing.amount_minor == 9000
    assert first.closing.date == date(2011, 2, 1)
    (line,) = first.lines
    assert (line.direction, line.amount_minor, line.currency) == (Direction.DEBIT, 1000, "EUR")
    assert line.value_date == date(2011, 1, 1)


def test_february_30_is_read_as_the_last_day_of_february() -> None:
    (st,) = _parse("mt940/self-provided/february_30.sta")
    (line,) = st.lines
    assert line.value_date == date(2016, 2, 29)
    assert line.booking_date == date(2016, 3, 1)
    assert (line.direction, line.amount_minor) == (Direction.DEBIT, 600)


def test_a_blank_entry_date_falls_back_to_the_value_date() -> None:
    statements = _parse("mt940/ASNB/mt940_with_spaces_for_entry_date.txt")
    line = statements[0].lines[0]
    assert line.booking_date == line.value_date == date(2020, 1, 1)
    assert (line.direction, line.amount_minor, line.our_reference) == (
        Direction.DEBIT,
        6500,
        "NL47INGB9999999999",
    )


def test_citi_zero_amount_information_lines_are_left_out_and_the_rest_balances() -> None:
    (st,) = _parse("mt940/citi/mt940.txt")
    assert [ln.amount_minor for ln in st.lines] == [21239, 36928, 56108]
    assert st.opening is not None and st.closing is not None
    assert st.opening.amount_minor - sum(ln.amount_minor for ln in st.lines) == (
        st.closing.amount_minor
    )


def test_references_amount_without_comma_and_timestamp_reference_from_knab() -> None:
    first, second = _parse("mt940/jejik/knab.sta")
    assert first.lines[0].bank_reference == "B4E07XM00J000023"
    assert first.lines[0].amount_minor == 50000
    credit = second.lines[1]
    assert credit.amount_minor == 50000  # "C500NTRF": no decimal comma at all
    assert credit.our_reference == "29-07-2014 10:05"
    assert credit.bank_reference == "B4G29PGDCK1QFV3E"


def test_a_balance_without_currency_takes_the_statements_currency() -> None:
    statements = _parse("mt940/self-provided/raphaelm.sta")
    assert statements[0].closing is not None
    assert statements[0].closing.amount_minor == 10500000
    assert statements[0].closing.currency == "DEM"


def test_non_utf8_and_binary_characters_do_not_stop_the_file() -> None:
    statements = _parse("mt940/betterplace/with_binary_character.sta")
    assert statements[0].statement_id == "STAR1\u00dcT\u00dfUMS"
    assert statements[0].lines[0].counterparty == "PAYPAL"


def test_a_wrapped_timestamp_that_looks_like_a_tag_stays_in_the_details() -> None:
    (st,) = _parse("mt940/self-provided/wrapped_timestamp.sta")
    (line,) = st.lines
    assert ":26:37 Fo" in line.raw
    assert line.end_to_end_id == "VZ0000000000000000"


def test_german_structured_details_give_the_counterparty_name() -> None:
    (st,) = _parse("mt940/self-provided/whitespace.sta")
    assert st.lines[0].counterparty == "DEUTSCHE KREDITBANK AG"


def test_sberbank_crlf_and_non_swift_fields_parse_in_huf() -> None:
    (st,) = _parse("mt940/sberbank/171011_01234945.sta")
    assert st.currency == "HUF"
    assert [ln.amount_minor for ln in st.lines] == [240200, 346000, 357500]


def test_statements_that_reuse_one_reference_get_distinct_ids() -> None:
    statements = _parse("mt940/ASNB/mt940.txt")
    ids = [st.statement_id for st in statements]
    assert ids[0] == "0000000000" and ids[1] == "0000000000#2"
    assert len(set(ids)) == len(ids) == 31
    assert all(ln.statement_id == st.statement_id for st in statements for ln in st.lines)
