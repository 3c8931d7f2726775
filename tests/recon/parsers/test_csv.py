"""CSV statements through per-channel column mappings (a new bank is config, not code)."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.recon.domain.lines import Direction, StatementFormatError
from services.recon.parsers import CsvMapping, csv_format
from services.recon.parsers.amounts import from_minor

DEFAULT = (
    "type,date,value_date,reference,bank_reference,direction,amount,fee,currency,counterparty\n"
    "opening,2026-11-20,2026-11-20,,F1,C,1000.00,0.00,EUR,\n"
    'payout,2026-11-20,2026-11-21,att_1,B1,D,100.00,0.50,EUR,"Doe, Jane"\n'
    "return,2026-11-20,2026-11-20,att_0,B0,C,20.00,0.00,EUR,ACME\n"
    "closing,2026-11-20,2026-11-20,,F1,C,919.50,0.00,EUR,\n"
)

GERMAN = """# Kontoauszug 20.11.2026
# Konto DE89370400440532013000
Buchungstag;Valuta;Betrag;Referenz;Empfänger
20.11.2026;21.11.2026;-1.234,56;att_7;Müller
20.11.2026;20.11.2026;10,00;att_8;Schmidt
"""

GERMAN_MAPPING = CsvMapping(
    delimiter=";",
    date="Buchungstag",
    value_date="Valuta",
    amount="Betrag",
    direction=None,
    currency=None,
    default_currency="EUR",
    reference="Referenz",
    counterparty="Empfänger",
    decimal_separator=",",
    thousands_separator=".",
    date_format="%d.%m.%Y",
)


def test_the_default_mapping_reads_balance_rows_lines_fees_and_quoted_names() -> None:
    (st,) = csv_format.parse(DEFAULT.encode(), channel="alpha")
    assert st.opening is not None and st.closing is not None
    assert (st.opening.amount_minor, st.closing.amount_minor) == (100000, 91950)
    first, second = st.lines
    assert (first.direction, first.amount_minor, first.fee_minor) == (Direction.DEBIT, 10000, 50)
    assert (first.our_reference, first.bank_reference, first.counterparty) == (
        "att_1",
        "B1",
        "Doe, Jane",
    )
    assert (first.booking_date, first.value_date) == (date(2026, 11, 20), date(2026, 11, 21))
    assert (first.line_number, second.line_number) == (3, 4)
    assert first.raw == 'payout,2026-11-20,2026-11-21,att_1,B1,D,100.00,0.50,EUR,"Doe, Jane"'
    assert second.direction is Direction.CREDIT
    assert st.statement_id.startswith("alpha-") and st.format == "csv"


def test_a_bank_with_semicolons_decimal_commas_and_signed_amounts_needs_only_a_mapping() -> None:
    (st,) = csv_format.parse(GERMAN.encode("latin-1"), channel="beta", mapping=GERMAN_MAPPING)
    debit, credit = st.lines
    assert (debit.direction, debit.amount_minor, debit.our_reference) == (
        Direction.DEBIT,
        123456,
        "att_7",
    )
    assert debit.counterparty == "Müller" and debit.value_date == date(2026, 11, 21)
    assert (credit.direction, credit.amount_minor) == (Direction.CREDIT, 1000)
    assert debit.line_number == 4 and st.opening is None


def test_statement_and_account_columns_split_a_file_into_statements() -> None:
    data = (
        "date,amount,currency,account,statement_id,sequence\n"
        "2026-11-20,-1.00,EUR,A1,S1,5\n"
        "2026-11-20,-2.00,USD,A2,S2,9\n"
        "2026-11-20,3.00,EUR,A1,S1,5\n"
    )
    first, second = csv_format.parse(data.encode(), channel="c")
    assert (first.account, first.statement_id, first.sequence_number) == ("A1", "S1", 5)
    assert [ln.amount_minor for ln in first.lines] == [100, 300]
    assert (second.currency, second.sequence_number) == ("USD", 9)


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ("payout,2026-11-20,2026-11-21,att_1,B1,X,100.00,0.50,EUR,", "neither debit nor credit"),
        ("payout,2026-11-20,2026-11-21,att_1,B1,D,100.001,0.50,EUR,", "more decimals"),
        ("payout,2026-11-20,2026-11-21,att_1,B1,D,100.00,0.50,ZZZ,", "unknown currency"),
        ("payout,20.11.2026,2026-11-21,att_1,B1,D,100.00,0.50,EUR,", "does not match"),
        ("payout,2026-11-20,2026-11-21,att_1,B1,D,100.00,0.50,EUR", "fields, the header has"),
        ("payout,2026-11-20,2026-11-21,att_1,B1,D,-100.00,0.50,EUR,", "not an amount"),
    ],
)
def test_a_bad_row_is_rejected_naming_its_line(row: str, words: str) -> None:
    lines = DEFAULT.splitlines()
    lines[2] = row
    with pytest.raises(StatementFormatError) as e:
        csv_format.parse("\n".join(lines).encode(), channel="c")
    assert e.value.line_number == 3 and words in e.value.reason


def test_a_file_without_the_mapped_amount_column_is_rejected_at_its_header() -> None:
    with pytest.raises(StatementFormatError) as e:
        csv_format.parse(b"# preamble\ndate,sum\n2026-11-20,1.00\n", channel="c")
    assert e.value.line_number == 2 and "'amount'" in e.value.reason


def test_an_unterminated_quote_is_rejected() -> None:
    data = DEFAULT.replace('"Doe, Jane"', '"Doe, Jane').encode()
    with pytest.raises(StatementFormatError, match="malformed CSV"):
        csv_format.parse(data, channel="c")


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(min_value=-(10**12), max_value=10**12).filter(bool),
            st.from_regex(r"att_[a-z0-9]{1,16}", fullmatch=True),
            st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=20),
        ),
        min_size=1,
        max_size=30,
    ),
    currency=st.sampled_from(["EUR", "JPY", "BHD"]),
)
def test_rendering_signed_csv_then_parsing_it_gives_back_every_row(
    rows: list[tuple[int, str, str]], currency: str
) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["date", "amount", "currency", "reference", "counterparty"])
    for amount, ref, name in rows:
        writer.writerow(["2026-11-20", from_minor(amount, currency), currency, ref, name])
    mapping = CsvMapping(direction=None)
    statements = csv_format.parse(buffer.getvalue().encode(), channel="c", mapping=mapping)
    lines = [ln for s in statements for ln in s.lines]
    assert [
        (-ln.amount_minor if ln.direction is Direction.DEBIT else ln.amount_minor, ln.our_reference)
        for ln in lines
    ] == [(amount, ref) for amount, ref, _ in rows]
    assert [ln.counterparty for ln in lines] == [name.strip() or None for _, _, name in rows]


def test_balance_row_markers_and_directions_match_whatever_their_case() -> None:
    data = (
        "Kind,date,amount,currency,direction\n"
        "OPEN,2026-11-20,10.00,EUR,CR\n"
        "line,2026-11-20,4.00,EUR,DR\n"
        "Close,2026-11-20,6.00,EUR,Cr\n"
    )
    mapping = CsvMapping(record_type="Kind", opening_value="Open", closing_value="CLOSE")
    (st,) = csv_format.parse(data.encode(), channel="c", mapping=mapping)
    assert st.opening is not None and st.closing is not None
    assert (st.opening.amount_minor, st.closing.amount_minor) == (1000, 600)
    assert [(ln.direction, ln.amount_minor) for ln in st.lines] == [(Direction.DEBIT, 400)]
